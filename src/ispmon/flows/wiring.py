"""`FlowCollection`: the flows domain in the daemon. At start the file's ``[[flow_exporters]]``
replace their 'config' rows, every declared exporter and the customers' prefixes are loaded, and
the collector binds (``FLOW_ADDRESS``:``FLOW_PORT``; port 0: no listener). `close` writes what is
in memory and unbinds, before the pool closes. With an alert engine, flow alert rules watch the
buckets as they are flushed (`ispmon.flows.alerting`)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncpg
import structlog

from ispmon.errors import StartupError
from ispmon.flows.aggregate import Aggregator
from ispmon.flows.alerting import FlowWatch
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.collector import Collector
from ispmon.flows.decode import FlowDecoder
from ispmon.flows.raw import RawKeeper
from ispmon.flows.shared import DomainShare
from ispmon.store.flow_domains import ExporterAgentStore, FlowDomainStore
from ispmon.store.flow_records import FlowRecordStore
from ispmon.store.flows import FlowStore

if TYPE_CHECKING:
    from ispmon.alerts.engine import AlertEngine
    from ispmon.config import LoadedConfig
    from ispmon.store.database import Database

log = structlog.get_logger("ispmon.flows")

REFRESH_SECONDS = 60.0  # customers' prefixes are reloaded this often (they change through the API)


@dataclass
class FlowCollection:
    decoder: FlowDecoder
    collector: Collector | None = None
    refresher: asyncio.Task[None] | None = None
    table: PrefixTable | None = None  # the customers' prefixes, reloaded when another agent changes them

    @classmethod
    async def start(
        cls, db: Database, config: LoadedConfig, alerts: AlertEngine | None = None
    ) -> FlowCollection:
        store = FlowStore(db.pool)
        settings = config.settings
        if config.path is not None:
            removed = await store.sync_config([e.model_dump() for e in config.flow_exporters])
            log.info("flow_config_synced", exporters=len(config.flow_exporters), removed=removed or None)
        decoder = FlowDecoder(retention_seconds=settings.flow_retention_days * 86400)
        for row in await store.exporters():
            decoder.declare(row["id"], row["address"], row["sampling"])
        flows = cls(decoder)
        if not settings.flow_port:
            return flows
        await store.ensure_partitions()
        table = flows.table = PrefixTable(await store.customer_prefixes())
        aggregator = Aggregator(table, settings.flow_max_keys)

        async def write(batch_id, buckets):  # type: ignore[no-untyped-def]
            await store.ensure_partitions()
            return await store.write(batch_id, buckets)

        share = DomainShare(
            decoder,
            FlowDomainStore(db.pool),
            settings.ispmon_agent_id,
            agents=ExporterAgentStore(db.pool),
            flush_every=settings.flow_flush_interval,
        )
        flows.collector = Collector(
            decoder, aggregator, write, flush_every=settings.flow_flush_interval, share=share
        )
        if settings.flow_raw_hours:
            records = FlowRecordStore(db.pool)
            hours = settings.flow_raw_hours

            async def upkeep() -> None:
                await records.upkeep(hours)

            flows.collector.raw = RawKeeper(records.write, settings.flow_raw_max_queued, upkeep)
            log.info("flow_raw_keeping", hours=hours, max_queued=settings.flow_raw_max_queued)
        if alerts is not None:
            flows.collector.watch = FlowWatch(alerts, decoder, aggregator)
        try:
            await flows.collector.start(settings.flow_address, settings.flow_port, settings.flow_rcvbuf)
        except OSError as exc:
            raise StartupError(
                f"FLOW_ADDRESS/FLOW_PORT: cannot listen on {settings.flow_address}:{settings.flow_port}: "
                f"{exc.strerror or exc}"
            ) from None
        flows.refresher = asyncio.create_task(_refresh(store, table), name="flow-prefixes")
        return flows

    async def close(self) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        if self.collector is not None:
            await self.collector.close()


async def _refresh(store: FlowStore, table: PrefixTable) -> None:
    while True:
        await asyncio.sleep(REFRESH_SECONDS)
        try:
            table.load(await store.customer_prefixes())
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("flow_prefix_refresh_failed", error=str(exc))
