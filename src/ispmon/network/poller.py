"""The SNMP poller: one loop per device on a fixed cadence, all sharing one SnmpClient and a bound.

Each device is spread over its interval (by a hash of its id: no burst at :00), polled at most
`concurrency` at a time, and never allowed to pile up: a poll that starts a whole interval late
skips the missed slots and counts them. A poll reads the counters of every interface, turns two
consecutive readings into a sample (`ispmon.network.counters`), queues the samples on the
interface_metrics `BatchWriter` and records the statuses and the last sample. Discovery runs at the
first poll, every `discovery_interval`, when sysUpTime goes back (a reboot may renumber ifIndex)
and when an unknown ifIndex shows up. One log line per state change (unreachable / reachable again,
rebooted, interfaces found), never one per poll; secrets are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.network.counters import Reading, Sample, rates, rebooted
from ispmon.network.devices import DeviceSpec
from ispmon.network.discovery import Counters, Discovered, discover, read_counters
from ispmon.network.events import NetEvent, device_transition, interface_transition
from ispmon.network.snmp import SnmpClient, SnmpError
from ispmon.store.interfaces import PollUpdate, metric_row, sample_dict

if TYPE_CHECKING:
    from ispmon.store.database import Database
    from ispmon.store.writer import BatchWriter

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Iface:
    """What the poller keeps of one interface between polls."""

    id: int
    key: str
    name: str
    if_type: int | None
    speed_bps: int | None
    high_speed_mbps: int | None
    selected: bool
    down_since: float | None = None
    # The newest poll's rates (None when that poll made none): read by the Prometheus scrape.
    sample: Sample | None = None


@dataclass(slots=True)
class PollerStats:
    polls: int = 0
    failures: int = 0
    interface_polls: int = 0
    samples: int = 0
    skipped_slots: int = 0
    no_sample: dict[str, int] = field(default_factory=dict)
    over_speed: int = 0
    lateness: list[float] = field(default_factory=list)  # seconds, the last 10,000 poll starts


@dataclass(slots=True)
class DeviceState:
    spec: DeviceSpec
    hc: bool = True
    reachable: bool | None = None
    error: str | None = None
    uptime: int | None = None
    uptime_at: float | None = None
    discovered_at: float | None = None
    unreachable_since: float | None = None
    loaded: bool = False
    by_index: dict[int, Iface] = field(default_factory=dict)
    readings: dict[int, Reading] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


Observer = Callable[["DeviceSpec", str | None, float, dict[str, float | None]], None]
SAMPLE_METRICS = (
    "in_bps", "out_bps", "in_pps", "out_pps", "in_util_pct", "out_util_pct",
    "in_errors_ps", "out_errors_ps", "in_discards_ps", "out_discards_ps",
)


def _dt(at: float | None) -> datetime | None:
    return datetime.fromtimestamp(at, UTC) if at is not None else None


class Poller:
    def __init__(
        self,
        db: Database,
        client: SnmpClient,
        writer: BatchWriter | None,
        *,
        concurrency: int = 100,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.client = client
        self.writer = writer
        self.clock = clock
        self.gate = asyncio.Semaphore(concurrency)
        self.devices: dict[str, DeviceState] = {}
        self.stats = PollerStats()
        self._running = False
        # Figures of each poll for the threshold alert rules: (device, ifName or None for the
        # device's own, Unix time, {metric: value}). Set by the daemon's wiring.
        self.observer: Observer | None = None

    def _observe(self, spec: DeviceSpec, interface: str | None, at: float, values: dict[str, float | None]) -> None:
        if self.observer is None:
            return
        try:
            self.observer(spec, interface, at, values)
        except Exception as exc:  # alerting must never stop polling
            log.error("network_alert_observe_failed", device_id=spec.id, error=str(exc)[:300])

    # -- the set of devices ------------------------------------------------------------------------
    def start(self, specs: list[DeviceSpec]) -> None:
        self._running = True
        for spec in specs:
            self.upsert(spec)

    def upsert(self, spec: DeviceSpec) -> None:
        """Add a device or replace its definition (a new address or credentials: discover afresh)."""
        old = self.devices.pop(spec.id, None)
        if old is not None and old.task is not None:
            old.task.cancel()
        state = DeviceState(spec=spec)
        if old is not None and old.spec.address == spec.address:
            state.readings, state.by_index, state.hc = old.readings, old.by_index, old.hc
        self.devices[spec.id] = state
        if self._running and spec.is_active:
            state.task = asyncio.create_task(self._loop(state), name=f"snmp:{spec.id}")

    def remove(self, device_id: str) -> None:
        state = self.devices.pop(device_id, None)
        if state is not None and state.task is not None:
            state.task.cancel()

    async def close(self) -> None:
        self._running = False
        tasks = [s.task for s in self.devices.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- scheduling --------------------------------------------------------------------------------
    async def _loop(self, state: DeviceState) -> None:
        loop = asyncio.get_running_loop()
        interval = state.spec.poll_interval
        offset = (zlib.crc32(state.spec.id.encode()) % 10_000) / 10_000 * interval
        next_at = loop.time() + offset
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            async with self.gate:
                lateness = loop.time() - next_at
                self.stats.lateness.append(lateness)
                if len(self.stats.lateness) > 10_000:
                    del self.stats.lateness[:5_000]
                try:
                    await self.poll(state, report=False)
                except Exception:  # a bug of ours: log it, keep polling this device and the others
                    log.exception("snmp_poll_crashed", device_id=state.spec.id)
            next_at += interval
            if loop.time() > next_at:
                missed = int((loop.time() - next_at) // interval) + 1
                self.stats.skipped_slots += missed
                next_at += missed * interval

    # -- one poll ----------------------------------------------------------------------------------
    async def poll_now(self, spec: DeviceSpec) -> dict[str, Any]:
        """Poll a device at once (the API's POST /devices/{id}/poll) and return what was read."""
        state = self.devices.get(spec.id)
        if state is None or state.spec != spec:
            state = DeviceState(spec=spec)
            if not self._running:
                # No daemon loop owns it (a Python user, the CLI): keep it so the next poll has a
                # previous reading to make rates from.
                self.devices[spec.id] = state
        return await self.poll(state)

    async def poll(self, state: DeviceState, report: bool = True) -> dict[str, Any]:
        """One poll; with ``report`` the answer lists every interface (the API's), else the daemon's
        loop, which reads nothing of it, is spared building it."""
        async with state.lock:
            return await self._poll(state, report)

    async def _poll(self, state: DeviceState, report: bool = True) -> dict[str, Any]:
        spec = state.spec
        self.stats.polls += 1
        if not state.loaded:
            # Where the last run left the device (an open unreachable spell keeps its start).
            row = await self.db.devices.get(spec.id)
            if row is not None and row["unreachable_since"] is not None:
                state.unreachable_since = row["unreachable_since"].timestamp()
            state.loaded = True
        discovered: Discovered | None = None
        try:
            if self._needs_discovery(state):
                discovered = await discover(self.client, spec)
                await self._apply_discovery(state, discovered)
            reading = await read_counters(self.client, spec, state.hc, self.clock)
            if state.uptime is not None and reading.uptime is not None and state.uptime_at is not None:
                if rebooted(state.uptime, reading.uptime, reading.at - state.uptime_at) and discovered is None:
                    log.info("device_rebooted", device_id=spec.id, uptime_cs=reading.uptime)
                    discovered = await discover(self.client, spec)
                    await self._apply_discovery(state, discovered)
            elif discovered is None and set(reading.counters) - set(state.by_index):
                discovered = await discover(self.client, spec)
                await self._apply_discovery(state, discovered)
        except SnmpError as exc:
            self.stats.failures += 1
            await self._unreachable(state, exc)
            return {"device_id": spec.id, "reachable": False, "error": exc.message, "error_kind": exc.kind,
                    "interfaces": []}
        state.uptime, state.uptime_at = reading.uptime, reading.at
        state.hc = reading.hc
        await self._reachable(state, reading.at)
        return await self._record(state, reading, discovered is not None, report)

    def _needs_discovery(self, state: DeviceState) -> bool:
        if state.discovered_at is None:
            return True
        return time.monotonic() - state.discovered_at >= state.spec.discovery_interval

    async def _apply_discovery(self, state: DeviceState, found: Discovered) -> None:
        rows = await self.db.interfaces.upsert_discovered(state.spec.id, found.interfaces)
        before = len(state.by_index)
        state.by_index = {
            r["if_index"]: Iface(r["id"], r["key"], r["name"], r["if_type"], r["speed_bps"], r["high_speed_mbps"],
                                 r["selected"], r["down_since"].timestamp() if r["down_since"] else None)
            for r in rows
        }
        state.hc = found.hc
        state.discovered_at = time.monotonic()
        ids = {i.id for i in state.by_index.values()}
        state.readings = {k: v for k, v in state.readings.items() if k in ids}
        await self.db.devices.record_poll(
            state.spec.id, datetime.now(UTC), reachable=True, system=found.system, discovered=True,
            unreachable_since=_dt(state.unreachable_since),
        )
        if len(rows) != before:
            selected = sum(1 for i in state.by_index.values() if i.selected)
            log.info("device_discovered", device_id=state.spec.id, interfaces=len(rows), selected=selected)

    async def _unreachable(self, state: DeviceState, exc: SnmpError) -> None:
        changed = state.reachable is not False or state.error != exc.message
        state.reachable, state.error = False, exc.message
        if changed:
            # Once per state change (and per new reason), not once per failed poll.
            log.warning("device_unreachable", device_id=state.spec.id, kind=exc.kind, error=exc.message)
        state.readings.clear()  # the next answer starts a new pair: no rate across the gap
        events, state.unreachable_since = device_transition(
            state.spec.id, False, state.unreachable_since, self.clock(), exc.message
        )
        await self.db.interfaces.record_events(events)
        self._observe(state.spec, None, self.clock(), {"device_unreachable": 1.0})
        await self.db.devices.record_poll(
            state.spec.id, datetime.now(UTC), reachable=False, error=exc.message,
            unreachable_since=_dt(state.unreachable_since),
        )

    async def _reachable(self, state: DeviceState, at: float) -> None:
        events, state.unreachable_since = device_transition(state.spec.id, True, state.unreachable_since, at)
        if events:
            log.info("device_reachable", device_id=state.spec.id, duration_s=events[0].data["duration_s"])
            await self.db.interfaces.record_events(events)
        state.reachable, state.error = True, None
        self._observe(state.spec, None, at, {"device_unreachable": 0.0})
        system = {"sys_uptime": state.uptime}
        await self.db.devices.record_poll(
            state.spec.id, datetime.now(UTC), reachable=True, system=system
        )

    async def _record(self, state: DeviceState, reading: Counters, discovered: bool, report: bool) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        at = datetime.fromtimestamp(reading.at, UTC)  # every sample of this poll has this time
        at_iso = at.isoformat()
        rows: list[tuple[Any, ...]] = []
        events: list[NetEvent] = []
        updates: list[PollUpdate] = []
        for index, iface in state.by_index.items():
            if not iface.selected:
                continue
            values = reading.counters.get(index)
            self.stats.interface_polls += 1
            current = None
            if values is not None:
                current = Reading(
                    at=reading.at,
                    counters=values,
                    hc=reading.hc,
                    uptime=reading.uptime,
                    discontinuity=reading.discontinuity.get(index),
                    high_speed_mbps=iface.high_speed_mbps,
                    speed_bps=iface.speed_bps,
                    if_type=iface.if_type,
                )
            previous = state.readings.get(iface.id)
            sample_json: dict[str, Any] | None = None
            reason: str | None = None
            if current is not None and previous is not None:
                result = rates(previous, current)
                if result.sample is not None:
                    self.stats.samples += 1
                    self.stats.over_speed += len(result.sample.over_speed)
                    sample_json = sample_dict(result.sample, at_iso)
                    row = metric_row(iface.id, result.sample, at)
                    if self.writer is None:
                        rows.append(row)
                    else:
                        self.writer.submit(row)
                else:
                    reason = str(result.reason)
                    self.stats.no_sample[reason] = self.stats.no_sample.get(reason, 0) + 1
            iface.sample = result.sample if sample_json is not None else None
            if current is not None:
                state.readings[iface.id] = current
            admin, oper = reading.admin.get(index), reading.oper.get(index)
            changes, iface.down_since = interface_transition(
                state.spec.id, iface.id, iface.name, admin, oper, iface.down_since, reading.at
            )
            for event in changes:  # one line per state change, never one per poll
                log.info(event.kind, device_id=state.spec.id, interface=iface.name, **event.data)
            events.extend(changes)
            figures: dict[str, float | None] = (
                {m: getattr(result.sample, m) for m in SAMPLE_METRICS} if sample_json is not None else {}
            )
            if admin is not None and oper is not None:
                figures["interface_down"] = 1.0 if admin == "up" and oper != "up" else 0.0
            if figures:
                self._observe(state.spec, iface.name, reading.at, figures)
            updates.append((iface.id, admin, oper, sample_json, _dt(iface.down_since)))
            if not report:
                continue
            items.append(
                {
                    "id": iface.id,
                    "name": iface.name,
                    "if_index": index,
                    "admin_status": reading.admin.get(index),
                    "oper_status": reading.oper.get(index),
                    "counters": values,
                    "rates": sample_json,
                    "no_sample": reason,
                }
            )
        if rows:  # no writer (no daemon): one COPY for this poll's samples
            await self.db.interfaces.write_metrics(rows)
        await self.db.interfaces.record_poll(updates)
        await self.db.interfaces.record_events(events)
        return {
            "device_id": state.spec.id,
            "reachable": True,
            "polled_at": at_iso,
            "sys_uptime": reading.uptime,
            "counters": "64-bit" if reading.hc else "32-bit",
            "discovered": discovered,
            "interfaces": items,
        }
