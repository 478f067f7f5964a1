"""Endpoint rollups: status history, outages and maintenance per endpoint in 1-hour, 1-day and
1-week buckets (UTC; weeks from Monday), and their retention.

* 1 hour from the raw rows: checks by status and the response-time histogram (UP and DEGRADED
  checks: a failed check's time says nothing about the service's speed) from status_history;
  downtime and maintenance seconds from the outages table and the maintenance windows
  (`ispmon.reports.timeline`); outages that started in the hour.
* 1 day from the hours, 1 week from the days (sums; histograms added bin by bin): a long report
  reads few rows per endpoint.

Incremental and idempotent like `ispmon.store.rollups`: ``endpoint_rollup_progress`` says, per
step, up to where buckets are final. One run replaces the buckets of [done_until - reroll, end)
(DELETE, then COPY: a bucket is replaced, never added to) and moves done_until in the same
transaction, so a crash mid-run leaves the previous state and the next run does the work again.
The reroll window takes in checks written late and outages declared after their start.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from ispmon.availability.maintenance import MaintenanceWindowSpec, applies_to
from ispmon.reports.histogram import SQL_BIN
from ispmon.reports.timeline import Interval, occurrences, per_bucket, subtract, union

log = structlog.get_logger(__name__)

HOUR, DAY, WEEK = 3600, 86400, 604800
STEPS = (HOUR, DAY, WEEK)
FINER = {DAY: HOUR, WEEK: DAY}
ORIGIN = "'2000-01-01 00:00:00+00'::timestamptz"
# Weeks start on Mondays (2000-01-03; 1970-01-05 is 4 days after the epoch).
ORIGINS = {HOUR: ORIGIN, DAY: ORIGIN, WEEK: "'2000-01-03 00:00:00+00'::timestamptz"}
_OFFSET = {WEEK: 4 * 86400}
SETTLE_S = 120  # an hour is rolled up once it ended this long ago
REROLL_S = {HOUR: 7200, DAY: DAY, WEEK: WEEK}
SPAN_S = {HOUR: DAY, DAY: 60 * DAY, WEEK: 52 * WEEK}  # at most this much source time per transaction
COLUMNS = (
    "step_s", "endpoint_id", "bucket", "checks", "up", "degraded", "down", "maintenance", "unknown",
    "downtime_s", "maintenance_s", "outages", "rt_count", "rt_sum_ms", "rt_bins", "rt_counts",
)  # fmt: skip
_COUNTS = ("checks", "up", "degraded", "down", "maintenance", "unknown")

_CHECKS_SQL = f"""
WITH h AS (
    SELECT endpoint_id, date_bin('3600 seconds', checked_at, {ORIGIN}) AS b, status, response_time_ms
    FROM status_history WHERE checked_at >= $1 AND checked_at < $2),
c AS (
    SELECT endpoint_id, b, count(*) AS checks,
           count(*) FILTER (WHERE status = 'up') AS up,
           count(*) FILTER (WHERE status = 'degraded') AS degraded,
           count(*) FILTER (WHERE status = 'down') AS down,
           count(*) FILTER (WHERE status = 'maintenance') AS maintenance,
           count(*) FILTER (WHERE status NOT IN ('up', 'degraded', 'down', 'maintenance')) AS unknown
    FROM h GROUP BY 1, 2),
r AS (
    SELECT endpoint_id, b, {SQL_BIN} AS bin, count(*) AS n, sum(response_time_ms::float8) AS s
    FROM h WHERE response_time_ms IS NOT NULL AND status IN ('up', 'degraded') GROUP BY 1, 2, 3),
ra AS (
    SELECT endpoint_id, b, sum(n) AS rt_count, sum(s) AS rt_sum,
           array_agg(bin ORDER BY bin) AS bins, array_agg(n::int ORDER BY bin) AS counts
    FROM r GROUP BY 1, 2)
SELECT c.*, coalesce(ra.rt_count, 0) AS rt_count, coalesce(ra.rt_sum, 0) AS rt_sum,
       coalesce(ra.bins, '{{}}') AS bins, coalesce(ra.counts, '{{}}') AS counts
FROM c LEFT JOIN ra USING (endpoint_id, b)"""

def _merge_sql(step: int, finer: int) -> str:
    """The `step` buckets of [$1, $2) from the `finer` ones: sums, histograms added bin by bin."""
    b = f"date_bin('{step} seconds', bucket, {ORIGINS[step]})"
    return f"""
INSERT INTO endpoint_rollups ({", ".join(COLUMNS)})
WITH d AS (
    SELECT endpoint_id, {b} AS b, {", ".join(f"sum({c})::int AS {c}" for c in _COUNTS)},
           sum(downtime_s) AS downtime_s, sum(maintenance_s) AS maintenance_s, sum(outages)::int AS outages,
           sum(rt_count)::int AS rt_count, sum(rt_sum_ms) AS rt_sum_ms
    FROM endpoint_rollups WHERE step_s = {finer} AND bucket >= $1 AND bucket < $2 GROUP BY 1, 2),
hb AS (
    SELECT endpoint_id, b, bin, sum(n)::int AS n
    FROM (SELECT endpoint_id, {b} AS b, unnest(rt_bins) AS bin, unnest(rt_counts) AS n FROM endpoint_rollups
          WHERE step_s = {finer} AND bucket >= $1 AND bucket < $2) AS u
    GROUP BY 1, 2, 3),
ha AS (
    SELECT endpoint_id, b, array_agg(bin ORDER BY bin) AS bins, array_agg(n ORDER BY bin) AS counts
    FROM hb GROUP BY 1, 2)
SELECT {step}, d.endpoint_id, d.b, {", ".join(f"d.{c}" for c in _COUNTS)}, d.downtime_s, d.maintenance_s,
       d.outages, d.rt_count, d.rt_sum_ms, coalesce(ha.bins, '{{}}'), coalesce(ha.counts, '{{}}')
FROM d LEFT JOIN ha USING (endpoint_id, b)"""


_MERGE_SQL = {DAY: _merge_sql(DAY, HOUR), WEEK: _merge_sql(WEEK, DAY)}


def floor_to(at: datetime, step: int) -> datetime:
    """The start of `at`'s bucket (hours and days from UTC midnight, weeks from Monday)."""
    epoch = int(at.timestamp())
    return datetime.fromtimestamp(epoch - (epoch - _OFFSET.get(step, 0)) % step, UTC)


@dataclass(frozen=True, slots=True)
class RollupRun:
    step_s: int
    start: datetime
    end: datetime
    rows: int


async def _done_until(conn: asyncpg.Connection, step: int) -> datetime | None:
    return await conn.fetchval("SELECT done_until FROM endpoint_rollup_progress WHERE step_s = $1", step)


async def _windows(conn: asyncpg.Connection) -> list[MaintenanceWindowSpec]:
    out = []
    for row in await conn.fetch("SELECT spec FROM maintenance_windows ORDER BY id"):
        try:
            out.append(MaintenanceWindowSpec.model_validate(row["spec"]))
        except ValueError as exc:  # a row no longer valid (older rules): left out, said once per run
            log.warning("maintenance_window_unreadable", error=str(exc)[:200])
    return out


async def hourly_rows(conn: asyncpg.Connection, start: datetime, end: datetime, now: datetime) -> list[tuple[Any, ...]]:
    """The 1-hour rows of [start, end) (both on the hour), as COLUMNS tuples."""
    rows: dict[tuple[str, datetime], dict[str, Any]] = {}

    def row(endpoint_id: str, bucket: datetime) -> dict[str, Any]:
        found = rows.get((endpoint_id, bucket))
        if found is None:
            found = rows[(endpoint_id, bucket)] = {"downtime_s": 0.0, "maintenance_s": 0.0, "outages": 0}
        return found

    for r in await conn.fetch(_CHECKS_SQL, start, end):
        row(r["endpoint_id"], r["b"]).update(
            {c: r[c] for c in _COUNTS},
            rt_count=r["rt_count"],
            rt_sum_ms=r["rt_sum"],
            rt_bins=r["bins"],
            rt_counts=r["counts"],
        )
    outage_rows = await conn.fetch(
        """SELECT endpoint_id, started_at, coalesce(resolved_at, $3) AS ended_at FROM outages
           WHERE started_at < $2 AND (resolved_at IS NULL OR resolved_at > $1)""",
        start, end, max(now, end),
    )  # fmt: skip
    outages: dict[str, list[Interval]] = defaultdict(list)
    for o in outage_rows:
        outages[o["endpoint_id"]].append((o["started_at"], o["ended_at"]))
        if start <= o["started_at"] < end:
            row(o["endpoint_id"], floor_to(o["started_at"], HOUR))["outages"] += 1
    windows = await _windows(conn)
    maintenance: dict[str, list[Interval]] = {}
    if windows:
        spans = [(w, occurrences(w, start, end)) for w in windows]
        spans = [(w, s) for w, s in spans if s]
        if spans:
            known = {r["id"]: r["tags"] for r in await conn.fetch("SELECT id, tags FROM endpoints")}
            for endpoint_id in set(known) | {k[0] for k in rows} | set(outages):
                tags = known.get(endpoint_id, ())
                mine = [i for w, s in spans if applies_to(w, endpoint_id, tags) for i in s]
                if mine:
                    maintenance[endpoint_id] = union(mine)
    for endpoint_id, intervals in maintenance.items():
        for bucket, seconds in per_bucket(intervals, start, end, HOUR).items():
            row(endpoint_id, bucket)["maintenance_s"] = seconds
    for endpoint_id, intervals in outages.items():
        down = subtract(union(intervals), maintenance.get(endpoint_id, []))
        for bucket, seconds in per_bucket(down, start, end, HOUR).items():
            row(endpoint_id, bucket)["downtime_s"] = seconds
    return [_record(endpoint_id, bucket, v) for (endpoint_id, bucket), v in rows.items()]


def _record(endpoint_id: str, bucket: datetime, v: dict[str, Any]) -> tuple[Any, ...]:
    counts = tuple(v.get(c, 0) for c in _COUNTS)
    rt = (v.get("rt_count", 0), v.get("rt_sum_ms", 0.0), v.get("rt_bins", []), v.get("rt_counts", []))
    return (HOUR, endpoint_id, bucket, *counts, v["downtime_s"], v["maintenance_s"], v["outages"], *rt)


async def rollup_once(conn: asyncpg.Connection, step: int, now: datetime) -> RollupRun | None:
    """One transaction of `step`'s rollup: the next span of closed buckets (and the reroll window
    before it; for days, also the days whose hours were rewritten since). None when there is
    nothing new to roll up."""
    async with conn.transaction():
        # One roller at a time for both steps (several agents on one database, or a manual run):
        # a daily run must not clear a dirty mark an hourly run is setting.
        await conn.execute("SELECT pg_advisory_xact_lock(7015, 0)")
        progress = await conn.fetchrow(
            "SELECT done_until, dirty_from FROM endpoint_rollup_progress WHERE step_s = $1", step
        )
        done = progress["done_until"] if progress else None
        dirty = progress["dirty_from"] if progress else None
        if step == HOUR:
            limit = floor_to(now - timedelta(seconds=SETTLE_S), HOUR)
            if done is None:
                first = await conn.fetchval("SELECT min(checked_at) FROM status_history")
                done = floor_to(first, HOUR) if first is not None else None
        else:
            finer = await _done_until(conn, FINER[step])
            limit = floor_to(finer, step) if finer is not None else None
            if done is None:
                first = await conn.fetchval("SELECT min(bucket) FROM endpoint_rollups WHERE step_s = $1", FINER[step])
                done = floor_to(first, step) if first is not None else None
        if done is None or limit is None:
            return None
        if limit > done:
            end = min(limit, done + timedelta(seconds=SPAN_S[step]))
            start = done - timedelta(seconds=REROLL_S[step])
        elif dirty is not None and floor_to(dirty, step) < done:
            end = done
        else:
            return None
        if dirty is not None:
            start = min(start, floor_to(dirty, step)) if limit > done else floor_to(dirty, step)
        await conn.execute(
            "DELETE FROM endpoint_rollups WHERE step_s = $1 AND bucket >= $2 AND bucket < $3", step, start, end
        )
        if step == HOUR:
            records = await hourly_rows(conn, start, end, now)
            if records:
                await conn.copy_records_to_table("endpoint_rollups", records=records, columns=COLUMNS)
            count = len(records)
        else:
            status = await conn.execute(_MERGE_SQL[step], start, end)
            count = int(status.split()[-1])
        coarser = {HOUR: DAY, DAY: WEEK}.get(step)
        if coarser is not None:  # the buckets above the ones rewritten must be made again
            await conn.execute(
                """UPDATE endpoint_rollup_progress SET dirty_from = least(coalesce(dirty_from, $2), $2)
                   WHERE step_s = $1""",
                coarser,
                start,
            )
        await conn.execute(
            """INSERT INTO endpoint_rollup_progress (step_s, done_until) VALUES ($1, $2)
               ON CONFLICT (step_s) DO UPDATE SET done_until = EXCLUDED.done_until, dirty_from = NULL,
                                                  updated_at = now()""",
            step,
            max(end, done),
        )
    return RollupRun(step, start, end, count)


async def rollup(pool: asyncpg.Pool, now: datetime | None = None, max_runs: int = 100) -> list[RollupRun]:
    """Catch every step up to `now` (hours first: days are made from them, weeks from days)."""
    now = now or datetime.now(UTC)
    runs: list[RollupRun] = []
    async with pool.acquire() as conn:
        for step in STEPS:
            for _ in range(max_runs):
                run = await rollup_once(conn, step, now)
                if run is None:
                    break
                runs.append(run)
    return runs


async def drop_old(pool: asyncpg.Pool, retention_days: int, now: datetime | None = None) -> int:
    """Delete buckets older than ROLLUP_RETENTION_DAYS; returns rows deleted."""
    now = now or datetime.now(UTC)
    status = await pool.execute("DELETE FROM endpoint_rollups WHERE bucket < $1", now - timedelta(days=retention_days))
    deleted = int(status.split()[-1])
    if deleted:
        log.info("endpoint_rollups_pruned", rows=deleted)
    return deleted
