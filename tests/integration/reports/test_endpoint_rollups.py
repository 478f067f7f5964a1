"""Endpoint rollups in the real PostgreSQL: downtime and maintenance seconds from a scripted
timeline, percentiles from merged histograms, re-runs that change nothing, a crash between the
buckets and the progress, and checks and outages that arrive late."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.reports.histogram import HALF_WIDTH
from ispmon.store import endpoint_rollups
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS, history_row
from tests.integration.reports.timeline import (
    DAY,
    DOWNTIME,
    MAINTENANCE_S,
    START,
    H,
    nearest_rank,
    script_day,
)

NOW = START + 2 * DAY


async def _snapshot(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    rows = await pool.fetch("SELECT * FROM endpoint_rollups ORDER BY step_s, endpoint_id, bucket")
    return [tuple(r) for r in rows]


async def test_hours_and_days_hold_downtime_maintenance_and_checks(db: Database) -> None:
    await script_day(db)
    await endpoint_rollups.rollup(db.pool, NOW)
    day = await db.pool.fetchrow(
        "SELECT * FROM endpoint_rollups WHERE step_s = 86400 AND endpoint_id = 'web' AND bucket = $1", START
    )
    assert day["downtime_s"] == DOWNTIME
    assert day["maintenance_s"] == MAINTENANCE_S
    assert day["outages"] == 2
    assert day["checks"] == 1440
    assert day["maintenance"] == 60  # the mute window's checks
    assert day["down"] == 30 + 15  # 01:00-01:30 and 04:00-04:15
    assert day["up"] == 1440 - 60 - 45
    hours = await db.pool.fetch(
        "SELECT bucket, downtime_s, maintenance_s FROM endpoint_rollups"
        " WHERE step_s = 3600 AND endpoint_id = 'web' AND (downtime_s > 0 OR maintenance_s > 0) ORDER BY bucket"
    )
    assert [(r["bucket"], r["downtime_s"], r["maintenance_s"]) for r in hours] == [
        (START + H, 1800.0, 0.0),
        (START + 3 * H, 0.0, 3600.0),  # 03:30-04:00 is in an outage, but inside maintenance
        (START + 4 * H, 900.0, 0.0),
    ]


async def test_a_days_percentiles_come_from_the_hours_within_the_bound(db: Database) -> None:
    times = await script_day(db)
    await endpoint_rollups.rollup(db.pool, NOW)
    row = await db.pool.fetchrow(
        "SELECT rt_count, rt_sum_ms, rt_bins, rt_counts FROM endpoint_rollups"
        " WHERE step_s = 86400 AND endpoint_id = 'web' AND bucket = $1",
        START,
    )
    assert row["rt_count"] == len(times) == sum(row["rt_counts"])
    assert row["rt_sum_ms"] == pytest.approx(sum(times))
    from ispmon.reports.histogram import percentile

    hist = dict(zip(row["rt_bins"], row["rt_counts"], strict=True))
    for pct in (50, 95, 99):
        exact = nearest_rank(times, pct)
        got = percentile(hist, pct)
        assert got is not None and abs(got - exact) / exact <= HALF_WIDTH, (pct, got, exact)


async def test_rerunning_changes_nothing_and_a_reset_gives_the_same_rows(db: Database) -> None:
    await script_day(db)
    await endpoint_rollups.rollup(db.pool, NOW)
    first = await _snapshot(db.pool)
    assert await endpoint_rollups.rollup(db.pool, NOW) == []
    await db.pool.execute("DELETE FROM endpoint_rollup_progress")
    await endpoint_rollups.rollup(db.pool, NOW)
    assert await _snapshot(db.pool) == first


async def test_a_crash_before_the_progress_moves_leaves_nothing_half_done(db: Database) -> None:
    await script_day(db)
    # A real failure inside the rollup's transaction, at its last statement (the progress write).
    await db.pool.execute(
        """CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'crash'; END $$;
           CREATE TRIGGER crash BEFORE INSERT OR UPDATE ON endpoint_rollup_progress
           FOR EACH ROW EXECUTE FUNCTION crash()"""
    )
    with pytest.raises(asyncpg.RaiseError):
        await endpoint_rollups.rollup(db.pool, NOW)
    assert await db.pool.fetchval("SELECT count(*) FROM endpoint_rollups") == 0
    await db.pool.execute("DROP TRIGGER crash ON endpoint_rollup_progress")
    await endpoint_rollups.rollup(db.pool, NOW)
    assert await db.pool.fetchval(
        "SELECT downtime_s FROM endpoint_rollups WHERE step_s = 86400 AND endpoint_id = 'web'"
    ) == DOWNTIME


async def test_late_checks_and_a_late_outage_are_rolled_up_again(db: Database) -> None:
    await script_day(db)
    first_now = START + DAY + 30 * timedelta(minutes=1) + timedelta(minutes=5)
    await endpoint_rollups.rollup(db.pool, first_now)  # hours up to 00:00 of day 2 are final
    late_at = START + DAY - timedelta(minutes=30)  # 23:30, written after the hour was rolled up
    await db.pool.copy_records_to_table(
        "status_history",
        records=[history_row("dns", late_at, ProbeResult(Status.DOWN, None, ErrorKind.TIMEOUT, "late"))],
        columns=HISTORY_COLUMNS,
    )
    await db.pool.execute(
        """INSERT INTO outages (endpoint_id, started_at, declared_at, resolved_at, status, severity)
           VALUES ('dns', $1, $2, $3, 'down', 'low')""",
        late_at,
        late_at + timedelta(minutes=40),
        late_at + timedelta(minutes=10),
    )
    await endpoint_rollups.rollup(db.pool, START + 2 * DAY)
    hour = await db.pool.fetchrow(
        "SELECT checks, down, downtime_s, outages FROM endpoint_rollups"
        " WHERE step_s = 3600 AND endpoint_id = 'dns' AND bucket = $1",
        START + 23 * H,
    )
    assert (hour["checks"], hour["down"], hour["downtime_s"], hour["outages"]) == (61, 1, 600.0, 1)
    day = await db.pool.fetchrow(
        "SELECT downtime_s, outages FROM endpoint_rollups WHERE step_s = 86400 AND endpoint_id = 'dns'"
    )
    assert (day["downtime_s"], day["outages"]) == (600.0, 1)


async def test_retention_drops_old_buckets_only(db: Database) -> None:
    await script_day(db)
    await endpoint_rollups.rollup(db.pool, NOW)
    assert await endpoint_rollups.drop_old(db.pool, 400, NOW) == 0
    assert await endpoint_rollups.drop_old(db.pool, 1, START + DAY + 12 * H) > 0
    assert await db.pool.fetchval("SELECT min(bucket) FROM endpoint_rollups") >= START + 12 * H
