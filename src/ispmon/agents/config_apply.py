"""Applying another agent's configuration changes: re-read the changed rows from PostgreSQL and make
the same in-memory updates the local API path makes (monitor.replace / remove, the maintenance
calendar, engine.configure, the channel registry, the NAS directory, the poller, the flow decoder
and the customers' prefix table).

Every update compares what is stored with what is held, so applying a change twice, or one that
this agent's memory already reflects, changes nothing: the listener and the backstop may both
deliver a change, and a full re-read after a reconnect is always safe.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from ispmon.agents.config_changes import Plan
from ispmon.alerts.channels import ChannelError, parse_channel
from ispmon.availability.compact import CompactSpec
from ispmon.availability.endpoints import build_endpoint
from ispmon.network.devices import build_device
from ispmon.services.maintenance import MaintenanceService
from ispmon.services.usage import UsageService
from ispmon.store.flows import FlowStore
from ispmon.store.notifications import ChannelRepo
from ispmon.validation import error_list, format_errors

if TYPE_CHECKING:
    from ispmon.alerts.wiring import Alerting
    from ispmon.availability.endpoints import EndpointDefaults
    from ispmon.availability.monitor import Monitor
    from ispmon.flows.attribution import PrefixTable
    from ispmon.flows.decode import FlowDecoder
    from ispmon.network.poller import Poller
    from ispmon.store.database import Database
    from ispmon.usage.nas import NasDirectory

log = structlog.get_logger("ispmon.agents.config")


async def reconcile_endpoints(monitor: Monitor, specs: list[CompactSpec]) -> tuple[int, int]:
    """Make the monitor run exactly `specs`: remove the others, replace those that differ. Returns
    (changed, removed). Shared by a config reload and a whole re-read of another agent's change."""
    wanted = {spec.id for spec in specs}
    removed = [e for e in monitor.runtimes if e not in wanted]
    for endpoint_id in removed:
        monitor.remove(endpoint_id)
    changed = 0
    for spec in specs:
        current = monitor.runtimes[spec.id].spec if spec.id in monitor.runtimes else None
        if current != spec:
            # Keeps its place on the cadence unless the interval changed; a new target starts
            # from unknown (the store closed the old target's outage).
            await monitor.replace(spec)
            changed += 1
    return changed, len(removed)


@dataclass
class DaemonTargets:
    """What one agent holds in memory of the shared configuration; absent parts are skipped."""

    db: Database
    defaults: EndpointDefaults
    load_specs: Callable[[], Awaitable[list[CompactSpec]]]
    monitor: Monitor | None = None
    alerting: Alerting | None = None
    nas_directory: NasDirectory | None = None
    poller: Poller | None = None
    flow_decoder: FlowDecoder | None = None
    prefixes: PrefixTable | None = None

    async def apply(self, plan: Plan) -> dict[str, Any]:
        """Apply `plan`; what changed, per kind (for the log line)."""
        done: dict[str, Any] = {}
        started = time.monotonic()
        for kind, keys in sorted(plan.kinds.items()):
            result = await getattr(self, f"_{kind}")(keys)
            if result is not None:
                done[kind] = result
        done["ms"] = round((time.monotonic() - started) * 1000, 1)
        return done

    # -- one method per kind: `keys` None means the whole kind --------------------------------------
    async def _endpoints(self, keys: frozenset[str] | None) -> Any:
        if self.monitor is None:
            return None
        if keys is None:
            changed, removed = await reconcile_endpoints(self.monitor, await self.load_specs())
            return {"changed": changed, "removed": removed}
        changed = removed = 0
        for endpoint_id in sorted(keys):
            row = await self.db.endpoints.get(endpoint_id)
            spec = self._spec(endpoint_id, row["spec"]) if row is not None else None
            if spec is None:
                if endpoint_id in self.monitor.runtimes:
                    self.monitor.remove(endpoint_id)
                    removed += 1
                continue
            runtime = self.monitor.runtimes.get(endpoint_id)
            if runtime is None or runtime.spec != spec:
                await self.monitor.replace(spec)
                changed += 1
        return {"changed": changed, "removed": removed}

    def _spec(self, endpoint_id: str, stored: dict[str, Any]) -> CompactSpec | None:
        try:
            return CompactSpec(build_endpoint(stored, self.defaults, stored=True))
        except ValidationError as exc:  # written by another version: as at start, it is not run
            log.error(
                "endpoint_invalid_in_database", endpoint_id=endpoint_id, error=format_errors(error_list(exc))
            )
            return None

    async def _maintenance(self, keys: frozenset[str] | None) -> Any:
        if self.monitor is None:
            return None
        windows = await MaintenanceService(self.db).windows()
        self.monitor.set_maintenance(windows)
        return {"windows": len(windows)}

    async def _alert_rules(self, keys: frozenset[str] | None) -> Any:
        if self.alerting is None:
            return None
        service = self.alerting.service
        rules = await service.all_rules()
        self.alerting.engine.configure(rules, service.policies)
        return {"rules": len(rules)}

    async def _alert_channels(self, keys: frozenset[str] | None) -> Any:
        if self.alerting is None:
            return None
        registry = self.alerting.registry
        config_names = {c.name for c in registry.all() if c.source == "config"}
        channels = []
        for name, urls in await ChannelRepo(self.db.pool).all():
            if name in config_names:  # the file's channel of that name wins, as at start
                continue
            try:
                channels.append(parse_channel(name, urls, source="api"))
            except ChannelError as exc:
                log.error("alert_channel_invalid_in_database", channel=name, error=str(exc))
        registry.replace_source("api", channels)
        return {"channels": len(channels)}

    async def _customers(self, keys: frozenset[str] | None) -> Any:
        # The quota pass finds changed customers by their updated_at on its own; what is held in
        # memory is the flow collector's prefix table.
        if self.prefixes is None:
            return None
        prefixes = await FlowStore(self.db.pool).customer_prefixes()
        self.prefixes.load(prefixes)
        return {"prefixes": len(prefixes)}

    async def _nas_clients(self, keys: frozenset[str] | None) -> Any:
        if self.nas_directory is None:
            return None
        await UsageService(self.db, self.nas_directory).refresh_directory()
        return {"nas": len(self.nas_directory)}

    async def _devices(self, keys: frozenset[str] | None) -> Any:
        if self.poller is None:
            return None
        poller = self.poller
        rows = (
            await self.db.devices.all()
            if keys is None
            else [r for k in sorted(keys) if (r := await self.db.devices.get(k)) is not None]
        )
        present = {r["id"] for r in rows}
        gone = [
            d for d in (poller.devices if keys is None else keys) if d not in present and d in poller.devices
        ]
        for device_id in gone:
            poller.remove(device_id)
        changed = 0
        for row in rows:
            try:
                spec = build_device(row["spec"])
            except ValueError as exc:
                log.error("device_definition_invalid", device_id=row["id"], error=str(exc)[:300])
                continue
            state = poller.devices.get(spec.id)
            if state is None and not spec.is_active:
                continue  # not polled, as at start
            if state is None or state.spec != spec:
                poller.upsert(spec)  # a new address or credentials: discovered afresh
                changed += 1
        return {"changed": changed, "removed": len(gone)}

    async def _flow_exporters(self, keys: frozenset[str] | None) -> Any:
        if self.flow_decoder is None:
            return None
        decoder = self.flow_decoder
        rows = {
            r["id"]: r for r in await FlowStore(self.db.pool).exporters() if keys is None or r["id"] in keys
        }
        held = {s.exporter_id: s for s in decoder.exporters.values()}
        changed = removed = 0
        for exporter_id in held:
            if (keys is None or exporter_id in keys) and exporter_id not in rows:
                decoder.forget(exporter_id)
                removed += 1
        for exporter_id, row in rows.items():
            state = held.get(exporter_id)
            if state is not None and state.address == row["address"] and state.sampling == row["sampling"]:
                continue  # unchanged: its templates stay
            decoder.forget(exporter_id)
            decoder.declare(exporter_id, row["address"], row["sampling"])
            changed += 1
        return {"changed": changed, "removed": removed}
