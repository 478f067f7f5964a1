"""FLOW_RETENTION_DAYS on the daemon's hourly housekeeping: whole daily partitions of
flow_aggregates past it are dropped (not DELETEd row by row), the days within it stay, and the
queries over a range that spans both answer from what is kept."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, time, timedelta

from ispmon.config import Settings
from ispmon.daemon import housekeeping
from ispmon.flows.aggregate import Bucket
from ispmon.services.flows import FlowService
from ispmon.store.database import Database
from ispmon.store.flows import FlowStore

RETENTION = 3


def noon(day_offset: int) -> datetime:
    today = datetime.now(UTC).date()
    return datetime.combine(today + timedelta(days=day_offset), time(12), UTC)


async def partitions(db: Database) -> set[str]:
    rows = await db.pool.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'flow_aggregates'"""
    )
    return {r["relname"] for r in rows}


def name(day_offset: int) -> str:
    return f"flow_aggregates_{noon(day_offset):%Y%m%d}"


async def test_expired_partitions_are_dropped_and_kept_days_answer_exactly(db: Database) -> None:
    store = FlowStore(db.pool)
    await db.pool.execute(
        "SELECT ispmon_ensure_daily_partitions('flow_aggregates', 'at', $1::date, 7)", noon(-6).date()
    )
    # One minute a day for a week, each day its own source /24 and bytes; one row older than any
    # partition (it lands in the default partition).
    days = list(range(-6, 1))
    buckets = []
    for d in [*days, -10]:
        b = Bucket(int(noon(d).timestamp()))
        b.counts[("r1", 1, 2, f"10.0.{-d}.0/24", "192.0.2.0/24", None, None, 6, 443)] = [
            1000 * (10 - d),
            10,
            1,
        ]
        buckets.append(b)
    assert await store.write(uuid.uuid4(), buckets)
    assert await db.pool.fetchval("SELECT count(*) FROM flow_aggregates_default") == 1
    await db.pool.execute(
        "INSERT INTO flow_batches (batch_id, written_at) VALUES ($1, now() - interval '2 days')", uuid.uuid4()
    )
    assert {name(d) for d in days} <= await partitions(db)

    task = asyncio.create_task(housekeeping(db, Settings(flow_retention_days=RETENTION)))
    try:
        # Its pass is done when the last of its flow statements (the batch ids') has run.
        for _ in range(600):
            if await db.pool.fetchval("SELECT count(*) FROM flow_batches") == 1:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    left = await partitions(db)
    # Days before today - RETENTION are gone whole; that day and the later ones stay.
    assert not {name(d) for d in (-6, -5, -4)} & left
    assert {name(d) for d in (-3, -2, -1, 0)} <= left
    assert "flow_aggregates_default" in left
    assert await db.pool.fetchval("SELECT count(*) FROM flow_aggregates_default") == 0
    assert await db.pool.fetchval("SELECT count(*) FROM flow_batches") == 1  # the recent one

    flows = FlowService(db)
    since, until = noon(-8), noon(1)
    top = await flows.top(since=since, until=until, by="src", limit=100)
    assert {i["key"]: i["bytes"] for i in top["items"]} == {
        f"10.0.{-d}.0/24": 1000 * (10 - d) for d in (-3, -2, -1, 0)
    }
    series = await flows.series(since=since, until=until, step=86400)
    assert [(p["at"].date(), p["bytes"]) for p in series["items"]] == [
        (noon(d).date(), 1000 * (10 - d)) for d in (-3, -2, -1, 0)
    ]
    # A range wholly in the pruned days answers empty, not an error.
    old = await flows.top(since=noon(-7), until=noon(-4), by="dst")
    assert old["items"] == []
