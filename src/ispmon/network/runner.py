"""The daemon's SNMP polling: the config file's devices synced, one engine, the writer, the poller.

`NetworkPolling.start` is all `ispmon run` calls, and `close` at shutdown (poller loops, then
the writer's last batch, then the engine's dispatcher), so daemon.py stays one line per phase.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from ispmon.alerts.network import device_subject, interface_subject
from ispmon.network.devices import DeviceSpec, build_device
from ispmon.network.poller import Poller
from ispmon.network.snmp import SnmpClient
from ispmon.store import rollups
from ispmon.store.interfaces import METRIC_COLUMNS
from ispmon.store.writer import BatchWriter

if TYPE_CHECKING:
    from ispmon.alerts.engine import AlertEngine
    from ispmon.config import LoadedConfig, Settings
    from ispmon.store.database import Database

log = structlog.get_logger(__name__)

ROLLUP_INTERVAL = 60.0


async def rollup_loop(db: Database, settings: Settings) -> None:
    """Every minute: roll interface_metrics up into the 5m / 1h / 1d buckets now closed, and prune
    each step past its retention. A failure is logged and retried next time (nothing is lost:
    the progress only moves with the buckets it covers)."""
    retention = {
        300: settings.interface_rollup_5m_retention_days,
        3600: settings.interface_rollup_1h_retention_days,
        86400: settings.interface_rollup_1d_retention_days,
    }
    failing = False
    while True:
        try:
            await rollups.rollup(db.pool)
            await rollups.drop_old_rollups(db.pool, retention)
            if failing:
                log.info("interface_rollup_recovered")
            failing = False
        except Exception as exc:
            if not failing:  # once per state change, not once a minute
                log.error("interface_rollup_failed", error=str(exc)[:300])
            failing = True
        await asyncio.sleep(ROLLUP_INTERVAL)


def alert_observer(
    engine: AlertEngine,
) -> Callable[[DeviceSpec, str | None, float, dict[str, float | None]], None]:
    """The poller's figures into the alert engine's threshold rules, as device / interface subjects."""

    def observe(spec: DeviceSpec, interface: str | None, at: float, values: dict[str, float | None]) -> None:
        tags = tuple(spec.tags)
        subject = (
            device_subject(spec.id, spec.name, tags, spec.parent)
            if interface is None
            else interface_subject(spec.id, spec.name, tags, interface, spec.parent)
        )
        engine.observe_network(subject, datetime.fromtimestamp(at, UTC), values)

    return observe


class NetworkPolling:
    def __init__(
        self,
        poller: Poller,
        writer: BatchWriter,
        client: SnmpClient,
        rollup_task: asyncio.Task[None] | None = None,
        db: Database | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.poller = poller
        self.writer = writer
        self.client = client
        self.rollup_task = rollup_task
        self.db = db
        self.settings = settings

    @classmethod
    async def start(
        cls, db: Database, config: LoadedConfig, alerts: AlertEngine | None = None, *, poll: bool = True
    ) -> NetworkPolling:
        """Sync the file's devices and build the poller; with `poll`, start polling and the rollups
        (else `resume` does, on the agent that holds the singleton lease: one poll per device)."""
        settings = config.settings
        if config.path is not None:
            # As endpoints: only with a file, so a start without --config keeps the file's devices.
            result = await db.devices.sync_config(config.devices)
            for device_id in result["taken_over"]:
                log.warning("config_takes_over_device", device_id=device_id, path=str(config.path))
            if result["removed"] or config.devices:
                log.info("devices_synced", devices=result["synced"], removed=result["removed"] or None)
        writer = BatchWriter(
            db.pool, "interface_metrics", METRIC_COLUMNS, max_buffer=settings.ispmon_write_queue_size
        )
        client = SnmpClient()
        poller = Poller(db, client, writer, concurrency=settings.snmp_max_concurrency)
        if alerts is not None:
            poller.observer = alert_observer(alerts)
        writer.start()
        polling = cls(poller, writer, client, None, db, settings)
        if poll:
            await polling.resume()
        return polling

    async def resume(self) -> None:
        """Poll every active device (read afresh: another agent may have changed them) and roll up."""
        assert self.db is not None and self.settings is not None
        specs = []
        for row in await self.db.devices.all():
            try:
                specs.append(build_device(row["spec"]))
            except ValueError as exc:  # a row written by another version: skip it, say so once
                log.error("device_definition_invalid", device_id=row["id"], error=str(exc)[:300])
        self.poller.start([s for s in specs if s.is_active])
        if specs:
            log.info("snmp_polling_started", devices=len(specs))
        if self.rollup_task is None:
            self.rollup_task = asyncio.create_task(
                rollup_loop(self.db, self.settings), name="interface_rollups"
            )

    async def pause(self) -> None:
        """Stop polling and rolling up (the devices stay known, for the API's poll-now)."""
        task, self.rollup_task = self.rollup_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.poller.close()

    async def close(self) -> None:
        await self.pause()
        await self.writer.close()
        with contextlib.suppress(Exception):
            self.client.close()
