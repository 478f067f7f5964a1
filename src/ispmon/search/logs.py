"""System logs for ``<prefix>-system-logs-*``: the lines the daemon logs (its structured events and
``LoggingService().info(...)`` calls) are captured by a logging handler into a bounded in-memory
queue and written to PostgreSQL (``system_logs``) in batches; the feed sends them from there.

Logging never waits: `emit` appends to a deque and, when it is full, drops the line and counts it
(`LogCapture.dropped`, in /search/status). Lines pass the same redaction as the log output
(`ispmon.logging.redact_secrets`), so no secret reaches the table or Elasticsearch. The daemon logs
state changes, never one line per check, and the feed's client libraries (elastic_transport,
elasticsearch) are not captured: while Elasticsearch is down they log per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from ispmon.logging import redact_secrets

log = structlog.get_logger("ispmon.search")

_EXCLUDED = ("elastic_transport", "elasticsearch", "asyncpg")
_COLUMNS = ("at", "level", "logger", "event", "data")
PRUNE_EVERY = 3600.0


def _render(logger: Any, name: str, event_dict: dict[str, Any]) -> str:
    return json.dumps(event_dict, default=str, separators=(",", ":"))


class LogCapture(logging.Handler):
    """A root handler that queues each line (as its JSON) without ever blocking."""

    def __init__(self, max_lines: int = 10_000, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.lines: deque[str] = deque()
        self.max_lines = max_lines
        self.dropped = 0
        self.captured = 0
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                    structlog.stdlib.ExtraAdder(),
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    redact_secrets,
                    _render,
                ],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_EXCLUDED):
            return
        if len(self.lines) >= self.max_lines:
            self.dropped += 1
            return
        try:
            self.lines.append(self.format(record))
            self.captured += 1
        except Exception:
            self.dropped += 1

    def take(self, n: int) -> list[str]:
        out = []
        while self.lines and len(out) < n:
            out.append(self.lines.popleft())
        return out


def line_to_row(line: str) -> tuple[datetime, str, str | None, str, dict[str, Any]]:
    data = json.loads(line)
    at_text = data.pop("timestamp", None)
    try:
        at = datetime.fromisoformat(str(at_text).replace("Z", "+00:00")) if at_text else datetime.now(UTC)
    except ValueError:
        at = datetime.now(UTC)
    level = str(data.pop("level", "info")).lower()
    logger = data.pop("logger", None)
    event = str(data.pop("event", ""))[:10_000]
    return at, level, logger, event, data


class LogWriter:
    """Moves captured lines to ``system_logs`` every `interval` seconds; prunes old ones hourly."""

    def __init__(
        self, pool: asyncpg.Pool, capture: LogCapture, retention_days: int, interval: float = 1.0
    ) -> None:
        self.pool = pool
        self.capture = capture
        self.retention_days = retention_days
        self.interval = interval
        self.written = 0
        self._pruned = 0.0

    async def flush(self) -> int:
        lines = self.capture.take(5000)
        if not lines:
            return 0
        rows = []
        for line in lines:
            try:
                rows.append(line_to_row(line))
            except ValueError:
                self.capture.dropped += 1
        try:
            await self.pool.copy_records_to_table("system_logs", records=rows, columns=_COLUMNS)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            # The database is away: put the lines back while there is room (the rest are counted).
            room = self.capture.max_lines - len(self.capture.lines)
            self.capture.lines.extendleft(reversed(lines[:room]))
            self.capture.dropped += max(0, len(lines) - room)
            return 0
        self.written += len(rows)
        return len(rows)

    async def prune(self) -> None:
        await self.pool.execute(
            "DELETE FROM system_logs WHERE at < now() - make_interval(days => $1)", self.retention_days
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()
            if loop.time() - self._pruned > PRUNE_EVERY:
                self._pruned = loop.time()
                with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
                    await self.prune()

    def stats(self) -> dict[str, int]:
        return {
            "captured": self.capture.captured,
            "queued": len(self.capture.lines),
            "dropped": self.capture.dropped,
            "written": self.written,
        }


def install(max_lines: int) -> LogCapture:
    capture = LogCapture(max_lines)
    logging.getLogger().addHandler(capture)
    return capture


def uninstall(capture: LogCapture) -> None:
    logging.getLogger().removeHandler(capture)
