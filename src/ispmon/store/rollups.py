"""Interface rollups: 5-minute, 1-hour and 1-day buckets of interface_metrics, and reading them.

Per bucket and per rate (`ROLLUP_FIELDS`, in and out): min, average (weighted by each sample's
interval), max and the 95th percentile, nearest rank (``percentile_disc``, as carriers bill):

* 5 minutes from the raw samples (p95 of the raw samples in the bucket);
* 1 hour and 1 day from the 5-minute rows (min of the minima, max of the maxima, the average
  weighted by the seconds covered, p95 of the 5-minute averages — the billing figure).

Incremental and idempotent: ``interface_rollup_progress`` says, per step, up to where buckets are
final. One run recomputes the buckets in [done_until - reroll, end) with INSERT ... ON CONFLICT DO
UPDATE (a bucket is replaced, never added to: re-running never double counts) and moves
done_until in the same transaction (a crash mid-rollup leaves the previous state, and the next run
does the same work again). The reroll window takes in samples written late (a BatchWriter queue
drained after a database outage). Buckets are aligned on UTC midnight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from ispmon.store.interfaces import METRIC_FIELDS

log = structlog.get_logger(__name__)

ROLLUP_FIELDS = METRIC_FIELDS[:10]  # the rates; octets are summed
STEPS = {"5m": 300, "1h": 3600, "1d": 86400}
STEP_NAMES = {v: k for k, v in STEPS.items()}
STATS = ("min", "avg", "max", "p95")
ORIGIN = "'2000-01-01 00:00:00+00'::timestamptz"
# A 5-minute bucket is rolled up once it ended this long ago (samples reach the table through a
# BatchWriter within seconds).
SETTLE_S = 120
# How far back each run recomputes (late samples), per step.
REROLL_S = {300: 3600, 3600: 7200, 86400: 86400}
# At most this much source time per transaction (bounded work; a backlog takes several).
SPAN_S = {300: 86400, 3600: 7 * 86400, 86400: 60 * 86400}

ROLLUP_COLUMNS = tuple(f"{f}_{s}" for f in ROLLUP_FIELDS for s in STATS)


def _from_raw() -> str:
    parts = []
    for f in ROLLUP_FIELDS:
        v = f"{f}::float8"
        parts += [
            f"min({v})",
            f"sum({v} * interval_s) FILTER (WHERE {f} IS NOT NULL)"
            f" / nullif(sum(interval_s) FILTER (WHERE {f} IS NOT NULL), 0)",
            f"max({v})",
            f"percentile_disc(0.95) WITHIN GROUP (ORDER BY {v})",
        ]
    return f"""SELECT 300, interface_id, date_bin('300 seconds', at, {ORIGIN}), count(*), sum(interval_s),
                      sum(in_octets), sum(out_octets), {", ".join(parts)}
               FROM interface_metrics WHERE at >= $1 AND at < $2
               GROUP BY interface_id, 3"""


def _from_5m(step: int) -> str:
    parts = []
    for f in ROLLUP_FIELDS:
        parts += [
            f"min({f}_min)",
            f"sum({f}_avg * seconds) FILTER (WHERE {f}_avg IS NOT NULL)"
            f" / nullif(sum(seconds) FILTER (WHERE {f}_avg IS NOT NULL), 0)",
            f"max({f}_max)",
            f"percentile_disc(0.95) WITHIN GROUP (ORDER BY {f}_avg)",
        ]
    return f"""SELECT {step}, interface_id, date_bin('{step} seconds', bucket, {ORIGIN}), sum(samples), sum(seconds),
                      sum(in_octets), sum(out_octets), {", ".join(parts)}
               FROM interface_rollups WHERE step_s = 300 AND bucket >= $1 AND bucket < $2
               GROUP BY interface_id, 3"""


def _upsert(select: str) -> str:
    columns = ("step_s", "interface_id", "bucket", "samples", "seconds", "in_octets", "out_octets", *ROLLUP_COLUMNS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns[3:])
    return f"""INSERT INTO interface_rollups ({", ".join(columns)}) {select}
               ON CONFLICT (step_s, interface_id, bucket) DO UPDATE SET {updates}"""


_SQL = {300: _upsert(_from_raw()), 3600: _upsert(_from_5m(3600)), 86400: _upsert(_from_5m(86400))}


def floor_to(at: datetime, step: int) -> datetime:
    """The start of `at`'s bucket of `step` seconds (aligned on UTC midnight)."""
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step, UTC)


@dataclass(frozen=True, slots=True)
class RollupRun:
    step_s: int
    start: datetime
    end: datetime
    rows: int


async def _done_until(conn: asyncpg.Connection, step: int) -> datetime | None:
    return await conn.fetchval("SELECT done_until FROM interface_rollup_progress WHERE step_s = $1", step)


async def rollup_once(conn: asyncpg.Connection, step: int, now: datetime) -> RollupRun | None:
    """One transaction of `step`'s rollup: the next span of closed buckets (and the reroll window
    before it). None when there is nothing new to roll up."""
    async with conn.transaction():
        # One roller per step at a time (two daemons on one database, or a manual run).
        await conn.execute("SELECT pg_advisory_xact_lock(7011, $1)", step)
        done = await _done_until(conn, step)
        if step == 300:
            limit = floor_to(now - timedelta(seconds=SETTLE_S), 300)
            if done is None:
                first = await conn.fetchval("SELECT min(at) FROM interface_metrics")
                done = floor_to(first, 300) if first is not None else None
        else:
            finer = await _done_until(conn, 300)
            limit = floor_to(finer, step) if finer is not None else None
            if done is None:
                first = await conn.fetchval("SELECT min(bucket) FROM interface_rollups WHERE step_s = 300")
                done = floor_to(first, step) if first is not None else None
        if done is None or limit is None or limit <= done:
            return None
        end = min(limit, done + timedelta(seconds=SPAN_S[step]))
        start = done - timedelta(seconds=REROLL_S[step])
        status = await conn.execute(_SQL[step], start, end)
        await conn.execute(
            """INSERT INTO interface_rollup_progress (step_s, done_until) VALUES ($1, $2)
               ON CONFLICT (step_s) DO UPDATE SET done_until = EXCLUDED.done_until, updated_at = now()""",
            step,
            end,
        )
    return RollupRun(step, start, end, int(status.split()[-1]))


async def rollup(pool: asyncpg.Pool, now: datetime | None = None, max_runs: int = 100) -> list[RollupRun]:
    """Catch every step up to `now` (5 minutes first: the coarser steps are made from it)."""
    now = now or datetime.now(UTC)
    runs: list[RollupRun] = []
    async with pool.acquire() as conn:
        for step in (300, 3600, 86400):
            for _ in range(max_runs):
                run = await rollup_once(conn, step, now)
                if run is None:
                    break
                runs.append(run)
    return runs


async def drop_old_rollups(pool: asyncpg.Pool, retention_days: dict[int, int], now: datetime | None = None) -> int:
    """Delete each step's buckets older than its retention ({step_s: days}); returns rows deleted."""
    now = now or datetime.now(UTC)
    deleted = 0
    for step, days in retention_days.items():
        status = await pool.execute(
            "DELETE FROM interface_rollups WHERE step_s = $1 AND bucket < $2", step, now - timedelta(days=days)
        )
        deleted += int(status.split()[-1])
    if deleted:
        log.info("interface_rollups_pruned", rows=deleted)
    return deleted


async def rollup_rows(
    pool: asyncpg.Pool, interface_id: int, step: int, since: datetime, until: datetime, limit: int
) -> list[asyncpg.Record]:
    """One interface's buckets of `step` starting in [since, until), oldest first."""
    return await pool.fetch(
        f"""SELECT bucket AS at, samples, seconds, in_octets, out_octets, {", ".join(ROLLUP_COLUMNS)}
            FROM interface_rollups WHERE step_s = $1 AND interface_id = $2 AND bucket >= $3 AND bucket < $4
            ORDER BY bucket LIMIT $5""",
        step,
        interface_id,
        since,
        until,
        limit,
    )


def rollup_dict(row: asyncpg.Record) -> dict[str, object]:
    """A rollup bucket as JSON: each rate's average under its own name (as a raw sample has it),
    with ``<rate>_min``, ``<rate>_max`` and ``<rate>_p95`` beside it."""
    out: dict[str, object] = {
        "at": row["at"].isoformat(),
        "samples": row["samples"],
        "seconds": row["seconds"],
        "in_octets": int(row["in_octets"]) if row["in_octets"] is not None else None,
        "out_octets": int(row["out_octets"]) if row["out_octets"] is not None else None,
    }
    for f in ROLLUP_FIELDS:
        out[f] = row[f"{f}_avg"]
        for s in ("min", "max", "p95"):
            out[f"{f}_{s}"] = row[f"{f}_{s}"]
    return out


def _before(step: int, whole: bool, time: str, hi: str) -> str:
    """`time` (a row's) is before `hi`; with `whole`, the whole rollup bucket is: `hi` is where a
    finer source starts, and a bucket straddling it holds samples that source counts already."""
    return f"{time} + interval '{step} seconds' <= {hi}" if whole and step else f"{time} < {hi}"


async def _first(
    pool: asyncpg.Pool, step: int, interface_id: int, lo: datetime, hi: datetime, whole: bool
) -> datetime | None:
    if step == 0:
        return await pool.fetchval(
            "SELECT min(at) FROM interface_metrics WHERE interface_id = $1 AND at >= $2 AND at < $3",
            interface_id, lo, hi,
        )
    return await pool.fetchval(
        "SELECT min(bucket) FROM interface_rollups WHERE step_s = $1 AND interface_id = $2 AND bucket >= $3"
        f" AND {_before(step, whole, 'bucket', '$4')}",
        step, interface_id, lo, hi,
    )


def _part(step: int, bucket_s: int, n: int, whole: bool) -> str:
    """Per-`bucket_s` averages in and out of one source over [$lo, $hi) (parameters n, n + 1)."""
    width = max(bucket_s, step)
    if step == 0:
        table, time, weight, cond, suffix = "interface_metrics", "at", "interval_s", "", ""
    else:
        table, time, weight, cond, suffix = "interface_rollups", "bucket", "seconds", f"step_s = {step} AND ", "_avg"
    cols = ", ".join(
        f"sum({f}{suffix} * {weight}) FILTER (WHERE {f}{suffix} IS NOT NULL)"
        f" / nullif(sum({weight}) FILTER (WHERE {f}{suffix} IS NOT NULL), 0) AS {f}"
        for f in ("in_bps", "out_bps")
    )
    before = _before(step, whole, time, f"${n + 1}")
    return f"""SELECT {step} AS source, date_bin('{width} seconds', {time}, {ORIGIN}) AS b, {cols}
               FROM {table} WHERE {cond}interface_id = $1 AND {time} >= ${n} AND {before} GROUP BY 2"""


async def percentile_finest(
    pool: asyncpg.Pool, interface_id: int, since: datetime, until: datetime, percentile: float, bucket_s: int
) -> tuple[asyncpg.Record, dict[str, int]]:
    """The `percentile` (nearest rank) of per-`bucket_s` average rates in and out over [since, until),
    from the finest data there is for each part of the range: raw samples where they are kept, then
    5-minute, 1-hour and 1-day rollups for what retention has already dropped (a coarser bucket
    counts as one value). A source is used from the start of the coarser bucket holding its first
    value (retention drops whole days, so that bucket is whole), and a coarser source only for its
    buckets that end by then (one straddling it holds samples the finer source counts: a new
    interface's first hour and day). Returns the figures and how many buckets each source gave."""
    parts: list[tuple[int, datetime, datetime]] = []
    hi = until
    steps = (0, 300, 3600, 86400)
    for i, step in enumerate(steps):
        if hi <= since:
            break
        first = await _first(pool, step, interface_id, since, hi, hi < until)
        if first is None:
            continue
        lo = since if first <= since or i == len(steps) - 1 else max(since, floor_to(first, steps[i + 1]))
        if lo < hi:
            parts.append((step, lo, hi))
            hi = lo
    args: list[object] = [interface_id]
    selects = []
    for step, lo, hi in parts:
        selects.append(_part(step, bucket_s, len(args) + 1, hi < until))
        args += [lo, hi]
    empty = "SELECT 0 AS source, now() AS b, NULL::float8 AS in_bps, NULL::float8 AS out_bps WHERE false"
    union = " UNION ALL ".join(selects) or empty
    pct = len(args) + 1
    row = await pool.fetchrow(
        f"""WITH buckets AS ({union})
            SELECT count(*) AS buckets,
                   percentile_disc(${pct}::float8) WITHIN GROUP (ORDER BY in_bps) AS in_bps,
                   percentile_disc(${pct}::float8) WITHIN GROUP (ORDER BY out_bps) AS out_bps,
                   max(in_bps) AS in_max_bps, max(out_bps) AS out_max_bps
            FROM buckets""",
        *args,
        percentile / 100,
    )
    counts = await pool.fetch(f"WITH buckets AS ({union}) SELECT source, count(*) AS n FROM buckets GROUP BY 1", *args)
    names = {0: "raw", **STEP_NAMES}
    return row, {names[r["source"]]: r["n"] for r in counts}
