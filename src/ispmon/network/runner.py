"""The daemon's SNMP polling: the config file's devices synced, one engine, the writer, the poller.

`NetworkPolling.start` is all `ispmon run` calls, and `close` at shutdown (poller loops, then
the writer's last batch, then the engine's dispatcher), so daemon.py stays one line per phase.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import structlog

from ispmon.network.devices import build_device
from ispmon.network.poller import Poller
from ispmon.network.snmp import SnmpClient
from ispmon.store.interfaces import METRIC_COLUMNS
from ispmon.store.writer import BatchWriter

if TYPE_CHECKING:
    from ispmon.config import LoadedConfig
    from ispmon.store.database import Database

log = structlog.get_logger(__name__)


class NetworkPolling:
    def __init__(self, poller: Poller, writer: BatchWriter, client: SnmpClient) -> None:
        self.poller = poller
        self.writer = writer
        self.client = client

    @classmethod
    async def start(cls, db: Database, config: LoadedConfig) -> NetworkPolling:
        settings = config.settings
        if config.path is not None:
            # As endpoints: only with a file, so a start without --config keeps the file's devices.
            result = await db.devices.sync_config(config.devices)
            for device_id in result["taken_over"]:
                log.warning("config_takes_over_device", device_id=device_id, path=str(config.path))
            if result["removed"] or config.devices:
                log.info("devices_synced", devices=result["synced"], removed=result["removed"] or None)
        writer = BatchWriter(db.pool, "interface_metrics", METRIC_COLUMNS, max_buffer=settings.ispmon_write_queue_size)
        client = SnmpClient()
        poller = Poller(db, client, writer, concurrency=settings.snmp_max_concurrency)
        specs = []
        for row in await db.devices.all():
            try:
                specs.append(build_device(row["spec"]))
            except ValueError as exc:  # a row written by another version: skip it, say so once
                log.error("device_definition_invalid", device_id=row["id"], error=str(exc)[:300])
        writer.start()
        poller.start([s for s in specs if s.is_active])
        if specs:
            log.info("snmp_polling_started", devices=len(specs))
        return cls(poller, writer, client)

    async def close(self) -> None:
        await self.poller.close()
        await self.writer.close()
        with contextlib.suppress(Exception):
            self.client.close()
