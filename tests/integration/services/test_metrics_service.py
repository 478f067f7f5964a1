"""MetricsService as the seed writes it, the daemon's own host sampler, and the metric partitions,
against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from ispmon.config import Settings
from ispmon.network.metrics_system import SystemMetricsRecorder
from ispmon.services import InvalidInput, MetricsService, ServiceError
from ispmon.store.database import Database
from ispmon.store.metrics import MetricsRepo

SEED_NETWORK = {"interface": "eth0", "bandwidth_usage": 75.5, "packet_loss": 0.2, "latency": 15.3}
SEED_SYSTEM = {"cpu_usage": 42.0, "memory_usage": 61.5, "disk_usage": 70.1, "load_average": 0.8}


async def test_the_seeds_lines_run_as_written(db_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_dsn)
    svc = MetricsService()
    try:
        network = await svc.record_network_metric(
            {"interface": "eth0", "bandwidth_usage": 75.5, "packet_loss": 0.2, "latency": 15.3}
        )
        system = await svc.record_system_metric(SEED_SYSTEM | {"device": "bras-1"})
        # Written at once: another connection sees them.
        other = await Database.connect(db_dsn, apply_schema=False, max_size=1)
        try:
            assert await other.pool.fetchval("SELECT count(*) FROM network_metrics") == 1
            row = await other.pool.fetchrow("SELECT * FROM system_metrics")
        finally:
            await other.close()
        assert row["host"] == "bras-1" and row["id"] == system["id"]
        assert network["interface"] == "eth0" and network["latency"] == pytest.approx(15.3)
        assert [r["id"] for r in await svc.list_network_metrics(interface="eth0")] == [network["id"]]
    finally:
        await svc.close()


async def test_no_arguments_finds_the_running_embedded_server(
    pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.environ.get("DATABASE_URL"):
        pytest.fail("this test reads the embedded server of the suite; run it without DATABASE_URL")
    # The suite's embedded server listens in <state dir>/postgres, which its URL names.
    socket_dir = Path(parse_qs(urlsplit(pg_server_dsn).query)["host"][0])
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ISPMON_STATE_DIR", str(socket_dir.parent))
    async with MetricsService() as svc:
        stored = await svc.record_system_metric(SEED_SYSTEM | {"host": "embedded-probe"})
        assert (await svc.list_system_metrics(host="embedded-probe"))[0]["id"] == stored["id"]


async def test_no_database_is_an_error_that_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("ISPMON_STATE_DIR", str(tmp_path))
    with pytest.raises(ServiceError) as exc:
        await MetricsService().record_system_metric(SEED_SYSTEM)
    assert exc.value.field == "DATABASE_URL" and "not running" in exc.value.message


async def test_invalid_records_name_the_key_and_write_nothing(db: Database) -> None:
    svc = MetricsService(db)
    with pytest.raises(InvalidInput) as exc:
        await svc.record_network_metric(SEED_NETWORK | {"jitter": 1.0})
    assert exc.value.errors()[0]["field"] == "jitter"
    with pytest.raises(InvalidInput) as exc:
        await svc.record_system_metric(SEED_SYSTEM | {"disk_usage": 100.01})
    assert exc.value.errors()[0]["field"] == "disk_usage"
    assert await db.pool.fetchval("SELECT count(*) FROM network_metrics") == 0
    assert await db.pool.fetchval("SELECT count(*) FROM system_metrics") == 0


async def test_partitions_are_made_ahead_and_old_ones_dropped(db: Database) -> None:
    repo = MetricsRepo(db.pool)
    old = date(2026, 1, 10)
    # A row of a day without a partition waits in the default partition ...
    at = datetime(2026, 1, 11, 12, tzinfo=UTC)
    await repo.insert("network_metrics", (at, None, "eth0", 1.0, None, None))
    # (insert made today's partitions; this makes 2026-01-09 .. 2026-01-13 and moves the row)
    assert await repo.ensure_partitions(today=old) == 10
    assert await db.pool.fetchval("SELECT count(*) FROM network_metrics_20260111") == 1
    assert await db.pool.fetchval("SELECT count(*) FROM network_metrics_default") == 0
    # 30 days kept: the days before 2026-01-10 go, 2026-01-10 on stays.
    dropped = await repo.drop_old(retention_days=30, today=old + timedelta(days=30))
    assert dropped == ["network_metrics_20260109", "system_metrics_20260109"]
    assert await db.pool.fetchval("SELECT count(*) FROM network_metrics") == 1
    dropped = await repo.drop_old(retention_days=30, today=old + timedelta(days=32))
    assert "network_metrics_20260111" in dropped
    assert await db.pool.fetchval("SELECT count(*) FROM network_metrics") == 0


async def test_the_daemons_sampler_records_this_host_and_flushes_when_stopped(db: Database) -> None:
    settings = Settings(ispmon_system_metrics_interval=1)
    recorder = SystemMetricsRecorder(db.pool, settings, host="mon-1", flush_interval=60)
    task = asyncio.create_task(recorder.run())
    for _ in range(200):  # one sample taken, still buffered (flushes every 60 s)
        if recorder.writer.backlog:
            break
        await asyncio.sleep(0.05)
    assert recorder.writer.backlog == 1
    assert await db.pool.fetchval("SELECT count(*) FROM system_metrics") == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await db.pool.fetch("SELECT * FROM system_metrics")
    assert len(rows) == 1, "the buffered sample is written at shutdown, not lost"
    row = rows[0]
    assert row["host"] == "mon-1"
    for key in ("cpu_usage", "memory_usage", "disk_usage"):
        assert 0 <= row[key] <= 100, key
    assert row["load_average"] >= 0 and row["memory_usage"] > 0 and row["disk_usage"] > 0
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert await db.pool.fetchval("SELECT to_regclass($1) IS NOT NULL", f"system_metrics_{today}")


def test_interval_zero_or_at_least_one_second() -> None:
    assert Settings(ispmon_system_metrics_interval=0).ispmon_system_metrics_interval == 0
    with pytest.raises(ValueError, match="at least 1 second"):
        Settings(ispmon_system_metrics_interval=0.5)
