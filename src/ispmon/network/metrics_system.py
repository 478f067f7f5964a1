"""The daemon's own host metrics: psutil's CPU, memory, disk and load every ISPMON_SYSTEM_METRICS_INTERVAL
seconds into system_metrics (host = this host's name), through a batched writer; and the metric
tables' daily partitions and retention, hourly.

One task (`record_system_metrics`) that the daemon starts and cancels; cancelling it flushes what
is buffered. An interval of 0 records nothing but keeps the partition upkeep.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import structlog

from ispmon.store.metrics import SYSTEM_COLUMNS, MetricsRepo
from ispmon.store.writer import BatchWriter

if TYPE_CHECKING:
    import asyncpg

    from ispmon.config import Settings

log = structlog.get_logger(__name__)

UPKEEP_INTERVAL = 3600.0


def sample(disk_path: Path, host: str, now: datetime) -> tuple[Any, ...]:
    """One system_metrics row. CPU is the share busy since the previous call (psutil keeps it)."""
    return (
        now,
        host,
        psutil.cpu_percent(interval=None),
        psutil.virtual_memory().percent,
        psutil.disk_usage(str(disk_path)).percent,
        os.getloadavg()[0],
    )


def disk_of(state_dir: Path) -> Path:
    """The file system the embedded database grows on; / when the state directory is not made yet."""
    return state_dir if state_dir.exists() else Path("/")


class SystemMetricsRecorder:
    """`run()` is the task: sample every interval, submit to the batched writer, flush when cancelled."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, *, host: str | None = None, flush_interval: float = 5.0
    ) -> None:
        self.interval = settings.ispmon_system_metrics_interval
        self.retention_days = settings.cleanup_retention_days
        self.host = host or socket.gethostname()
        self.disk = disk_of(settings.ispmon_state_dir)
        self.repo = MetricsRepo(pool)
        # A sample a minute needs no haste: rows wait up to flush_interval and go in one COPY.
        self.writer = BatchWriter(
            pool, "system_metrics", SYSTEM_COLUMNS, max_buffer=10_000, flush_interval=flush_interval
        )
        self._failing = False

    async def run(self) -> None:
        self.writer.start()
        log.info("system_metrics_started", interval=self.interval or None, host=self.host, disk=str(self.disk))
        psutil.cpu_percent(interval=None)  # the first call has no previous one to compare with
        next_upkeep = 0.0
        try:
            while True:
                if time.monotonic() >= next_upkeep:
                    next_upkeep = time.monotonic() + UPKEEP_INTERVAL
                    await self._upkeep()
                if self.interval:
                    await asyncio.sleep(self.interval)
                    await self._sample()
                else:
                    await asyncio.sleep(UPKEEP_INTERVAL)
        finally:
            await self.writer.close()

    async def _upkeep(self) -> None:
        try:
            await self.repo.ensure_partitions()
            await self.repo.drop_old(self.retention_days)
        except Exception as exc:  # the database may be down for a while: try again next hour
            log.error("metric_partitions_failed", error=str(exc))

    async def _sample(self) -> None:
        try:
            row = await asyncio.to_thread(sample, self.disk, self.host, datetime.now(UTC))
        except (OSError, psutil.Error) as exc:
            if not self._failing:  # one line per change, not one per sample
                log.warning("system_metrics_unavailable", error=str(exc))
            self._failing = True
            return
        if self._failing:
            log.info("system_metrics_available")
            self._failing = False
        self.writer.submit(row)


async def record_system_metrics(pool: asyncpg.Pool, settings: Settings) -> None:
    """The daemon's task (cancel it to stop; what is buffered is written first)."""
    await SystemMetricsRecorder(pool, settings).run()
