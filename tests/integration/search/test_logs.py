"""System logs: LoggingService lines and the daemon's events reach system_logs (redacted), never
blocking logging; a full queue drops and counts."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import asyncpg
import pytest
import structlog

from ispmon.logging import configure_logging
from ispmon.search.logs import LogWriter, install, uninstall
from ispmon.services.logging_service import LoggingService


@pytest.fixture(autouse=True)
def daemon_logging() -> Iterator[None]:
    """Logging configured as the daemon does; the test session's configuration restored after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("info", "json", stream=io.StringIO())
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**saved)


async def test_logging_service_lines_reach_the_table_redacted(pool: asyncpg.Pool) -> None:
    capture = install(max_lines=100)
    try:
        LoggingService().info("User login successful", {"user": "alice", "password": "hunter2"})
        LoggingService().error("Payment gateway unreachable", {"url": "https://u:secret@pay.example/x"})
        structlog.get_logger("ispmon.availability").info(
            "outage_declared", endpoint_id="web-1", severity="high"
        )
        logging.getLogger("elastic_transport.node").warning("per-request noise, not captured")
        writer = LogWriter(pool, capture, retention_days=30)
        assert await writer.flush() == 3
    finally:
        uninstall(capture)
    rows = await pool.fetch("SELECT level, logger, event, data FROM system_logs ORDER BY id")
    assert [r["event"] for r in rows] == [
        "User login successful",
        "Payment gateway unreachable",
        "outage_declared",
    ]
    assert rows[0]["data"]["user"] == "alice" and rows[0]["data"]["password"] == "[redacted]"
    assert "secret" not in rows[1]["data"]["url"] and rows[1]["level"] == "error"
    assert rows[2]["data"]["severity"] == "high"


async def test_a_full_queue_drops_and_counts_without_blocking(pool: asyncpg.Pool) -> None:
    capture = install(max_lines=100)
    try:
        for i in range(150):
            LoggingService().info("line", {"i": i})
        writer = LogWriter(pool, capture, retention_days=30)
        assert writer.stats()["dropped"] == 50 and writer.stats()["queued"] == 100
        assert await writer.flush() == 100
    finally:
        uninstall(capture)
    assert await pool.fetchval("SELECT count(*) FROM system_logs") == 100
