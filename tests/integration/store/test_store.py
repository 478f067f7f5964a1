"""Storage against a real PostgreSQL: migration, partitions, batched COPY, outages, retention."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from ispmon.availability.endpoints import build_endpoint
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.store.db import ensure_partitions, migrate
from ispmon.store.endpoints import EndpointRepo
from ispmon.store.history import HISTORY_COLUMNS, HistoryRepo, history_row
from ispmon.store.outages import OutageRepo
from ispmon.store.retention import drop_old_partitions
from ispmon.store.writer import BatchWriter


async def test_migrate_is_idempotent(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == 20
        assert await migrate(conn) == 20
        assert await conn.fetchval("SELECT count(*) FROM schema_version") == 20


async def test_status_history_is_partitioned_by_day(pool: asyncpg.Pool) -> None:
    today = datetime.now(UTC).date()
    parts = {
        r["relname"]
        for r in await pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'status_history'"
        )
    }
    assert f"status_history_{today:%Y%m%d}" in parts
    assert f"status_history_{today + timedelta(days=3):%Y%m%d}" in parts
    assert "status_history_default" in parts


async def test_rows_in_default_partition_move_when_their_day_is_created(pool: asyncpg.Pool) -> None:
    far = datetime(2031, 5, 17, 12, tzinfo=UTC)
    await pool.execute(
        "INSERT INTO status_history (endpoint_id, checked_at, status) VALUES ('a', $1, 'up')", far
    )
    assert await pool.fetchval("SELECT count(*) FROM status_history_default") == 1
    async with pool.acquire() as conn:
        assert await ensure_partitions(conn, today=date(2031, 5, 18)) >= 1
    assert await pool.fetchval("SELECT count(*) FROM status_history_default") == 0
    assert await pool.fetchval("SELECT count(*) FROM status_history_20310517") == 1


async def test_batch_writer_copies_rows_with_json_details(pool: asyncpg.Pool) -> None:
    writer = BatchWriter(pool, "status_history", HISTORY_COLUMNS, batch_size=100, flush_interval=0.05)
    writer.start()
    now = datetime.now(UTC)
    for i in range(250):
        result = (
            ProbeResult.up(float(i), status_code=200) if i % 2 else ProbeResult.down(ErrorKind.TIMEOUT, "t/o")
        )
        assert writer.submit(history_row("ep", now + timedelta(milliseconds=i), result))
    await writer.close()
    assert writer.stats.written == 250
    rows = await HistoryRepo(pool).history("ep", limit=1000)
    assert len(rows) == 250
    assert rows[0]["details"] == {"status_code": 200}
    assert rows[-1]["status"] == "down" and rows[-1]["error_kind"] == "timeout"


async def test_batch_writer_drops_and_counts_when_full_and_keeps_batch_when_db_fails(
    pool: asyncpg.Pool,
) -> None:
    writer = BatchWriter(pool, "no_such_table", ("a",), max_buffer=10, flush_interval=0.01)
    accepted = sum(writer.submit((i,)) for i in range(15))
    assert accepted == 10 and writer.stats.dropped == 5
    with pytest.raises(asyncpg.UndefinedTableError):
        await writer.flush()
    assert writer.backlog == 10  # the failed batch is kept for the retry


async def test_history_paging_by_cursor(pool: asyncpg.Pool) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "status_history",
            records=[history_row("ep", t0 + timedelta(seconds=i), ProbeResult.up(1.0)) for i in range(25)],
            columns=HISTORY_COLUMNS,
        )
    repo = HistoryRepo(pool)
    page1 = await repo.history("ep", limit=10)
    page2 = await repo.history("ep", limit=10, before_id=(page1[-1]["checked_at"], page1[-1]["id"]))
    page3 = await repo.history("ep", limit=10, before_id=(page2[-1]["checked_at"], page2[-1]["id"]))
    seen = [r["checked_at"] for r in page1 + page2 + page3]
    assert len(seen) == 25 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


async def test_only_one_open_outage_per_endpoint(pool: asyncpg.Pool) -> None:
    repo = OutageRepo(pool)
    now = datetime.now(UTC)
    kwargs = dict(
        started_at=now,
        declared_at=now,
        status="down",
        severity="minor",
        error_kind="timeout",
        error="x",
        failures=3,
        verified=True,
    )
    first, created = await repo.open("ep", **kwargs)
    assert created
    results = await asyncio.gather(*(repo.open("ep", **kwargs) for _ in range(5)))
    assert {r for r in results} == {(first, False)}
    assert await repo.count_open() == 1
    resolved = await repo.resolve(first, resolved_at=now + timedelta(seconds=90), resolution="auto")
    assert resolved is not None and resolved["duration_seconds"] == pytest.approx(90)
    assert await repo.resolve(first, resolved_at=now, resolution="auto") is None
    second, created = await repo.open("ep", **kwargs)
    assert created and second != first


async def test_config_sync_upserts_and_removes(pool: asyncpg.Pool) -> None:
    repo = EndpointRepo(pool)
    a = build_endpoint({"id": "a", "name": "A", "url": "http://127.0.0.1:1/"})
    b = build_endpoint({"id": "b", "name": "B", "url": "127.0.0.1:22", "protocol": "tcp"})
    await repo.sync_config([a, b])
    assert {r["id"] for r in await repo.all()} == {"a", "b"}
    api_only = build_endpoint({"id": "c", "name": "C", "url": "127.0.0.1", "protocol": "icmp"})
    await repo.insert(api_only, source="api")
    result = await repo.sync_config([a])
    assert result["removed"] == ["b"]
    assert {r["id"]: r["source"] for r in await repo.all()} == {"a": "config", "c": "api"}


async def test_retention_drops_old_partitions_only(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("SELECT ispmon_ensure_status_partitions('2020-01-01'::date, 3)")
        dropped = await drop_old_partitions(conn, retention_days=30, today=date(2020, 2, 1))
        assert dropped == ["status_history_20200101"]
        today = datetime.now(UTC).date()
        assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"status_history_{today:%Y%m%d}")
        assert await conn.fetchval("SELECT to_regclass('status_history_20200102') IS NOT NULL")


def test_history_row_is_pure() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    row = history_row(
        "x", at, ProbeResult(Status.DEGRADED, 12.5, ErrorKind.SLOW, "slow", {"a": 1}, attempts=2)
    )
    assert row == ("x", at, "degraded", 12.5, "slow", "slow", 2, {"a": 1}, None, None)
    row = history_row("x", at, ProbeResult(Status.UP, 1.0), "agent-1", "fra1")
    assert row[-2:] == ("agent-1", "fra1")


async def test_removing_an_endpoint_closes_its_open_outage(pool: asyncpg.Pool) -> None:
    repo, outages = EndpointRepo(pool), OutageRepo(pool)
    now = datetime.now(UTC)
    a = build_endpoint({"id": "a", "name": "A", "url": "http://127.0.0.1:1/"})
    b = build_endpoint({"id": "b", "name": "B", "url": "http://127.0.0.1:2/"})
    await repo.sync_config([a])
    await repo.insert(b)
    kwargs = dict(
        started_at=now,
        declared_at=now,
        status="down",
        severity="minor",
        error_kind=None,
        error=None,
        failures=3,
        verified=True,
    )
    oa, _ = await outages.open("a", **kwargs)
    ob, _ = await outages.open("b", **kwargs)
    await repo.delete("b")  # through the API
    await repo.sync_config([])  # removed from the config file
    for outage_id in (oa, ob):
        row = await outages.get(outage_id)
        assert row is not None and row["resolved_at"] is not None
        assert row["resolution"] == "manual" and row["resolution_notes"] == "endpoint removed"
    assert await outages.open_outages() == []
