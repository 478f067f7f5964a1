"""The monitor: runs checks for the scheduler and turns results into history, state and outages.

For each due check: maintenance lookup -> probe (with retries) -> state machine -> history row on
the batched writer -> events (status change log lines, outage rows, verification re-checks).
Everything per endpoint lives in one slotted `EndpointRuntime`; nothing here blocks on the database
except the rare outage open/resolve, which needs the row id. Checks that failed for the monitor's
own resources (UNKNOWN, ignored by the state machine) are counted by `ResourceWatch`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.availability.compact import CompactSpec, compact
from ispmon.availability.confirm import LocationConfirmation
from ispmon.availability.endpoints import EndpointSpec, public_url, target_key
from ispmon.availability.maintenance import MaintenanceCalendar, MaintenanceWindowSpec
from ispmon.availability.outage_writes import OutageWrites
from ispmon.availability.outages import (
    EndpointState,
    Event,
    FalseAlarm,
    FlappingStarted,
    FlappingStopped,
    OpenOutage,
    OutageDeclared,
    OutagePolicy,
    OutageResolved,
    OutageSeverityChanged,
    Phase,
    StatusChanged,
    VerificationRequested,
    enter_maintenance,
    restore,
    transition,
)
from ispmon.availability.resource_watch import ResourceWatch
from ispmon.availability.scheduler import Scheduler
from ispmon.models import ProbeResult, Status
from ispmon.probes.base import ProbeContext, run_check
from ispmon.store.history import history_row
from ispmon.store.locations import LocationVerdicts
from ispmon.store.outages import OutageRepo
from ispmon.store.writer import BatchWriter

if TYPE_CHECKING:
    from ispmon.agents.registry import AgentRegistry

log = structlog.get_logger("ispmon.availability.monitor")


class EndpointRuntime:
    """Per-endpoint state in memory. Kept small: thousands of these live for the daemon's life."""

    __slots__ = ("last", "pending_declare", "pending_resolve", "pending_update", "spec", "stale", "state")

    def __init__(self, spec: EndpointSpec | CompactSpec, state: EndpointState) -> None:
        # The compact form, not the pydantic model: about a kilobyte less per endpoint (compact.py).
        self.spec = compact(spec)
        self.state = state
        # (checked_at, ProbeResult) of the newest check, for the status API.
        self.last: tuple[datetime, ProbeResult] | None = None
        # An OutageDeclared whose row could not be written yet (database down): retried next check.
        self.pending_declare: OutageDeclared | None = None
        # An OutageResolved (and the outage id) whose row could not be closed yet: retried next check.
        self.pending_resolve: tuple[OutageResolved, int | None] | None = None
        # Outage row changes (severity, status, flapping) that could not be written: (id, fields),
        # merged so the newest value of each field wins, retried before the next check.
        self.pending_update: tuple[int, dict[str, Any]] | None = None
        # Taken over from another agent: its state is re-read from the database before the next check.
        self.stale = False


class Monitor(LocationConfirmation, OutageWrites):
    def __init__(
        self,
        *,
        ctx: ProbeContext,
        policy: OutagePolicy,
        history: BatchWriter,
        events: BatchWriter,
        outages: OutageRepo,
        max_concurrency: int = 500,
        resource_quiet: float = 30.0,
        agents: AgentRegistry | None = None,
        history_repo: Any = None,
    ) -> None:
        self.ctx = ctx
        self.policy = policy
        self.history = history
        self.events = events
        self.outages = outages
        self.runtimes: dict[str, EndpointRuntime] = {}
        self.calendar = MaintenanceCalendar([])
        # Several agents: this agent checks only the endpoints it owns (agents/ownership.py), on
        # the wall-clock grid they all share, and re-reads an endpoint's state when it gains it.
        self.agents = agents
        self.history_repo = history_repo
        self.agent_id = agents.agent_id if agents is not None else None
        self.location = agents.location if agents is not None else None
        self.verdicts = LocationVerdicts(outages.pool) if agents is not None else None
        self._refreshing: asyncio.Future[None] | None = None
        self.scheduler = Scheduler(
            self._scheduled,
            max_concurrency=max_concurrency,
            wall_clock=agents.db_time if agents is not None else None,
        )
        if agents is not None:
            agents.listeners.append(self.rebalance)
        # Checks that failed for our own resources (UNKNOWN, no outage): counted, logged per change.
        self.resources = ResourceWatch(resource_quiet)
        self._locks: dict[str, asyncio.Lock] = {}
        # The alert engine (ispmon.alerts.engine.AlertEngine), when alerting is wired in.
        self.alerts: Any = None
        # Called with (spec, event, result) for each event (never per check): the dashboard's hub.
        self.watchers: list[Callable[[EndpointSpec, Event, ProbeResult], None]] = []

    # -- registry ----------------------------------------------------------------------------------
    def load(
        self,
        specs: Iterable[EndpointSpec | CompactSpec],
        open_outages: dict[str, OpenOutage],
        last: dict[str, Status],
    ) -> None:
        """Initial load after start or restart: resume open outages without opening them again."""
        for spec in specs:
            state = restore(open_outages.get(spec.id), last.get(spec.id), self.policy)
            self.runtimes[spec.id] = EndpointRuntime(spec, state)
            if spec.is_active and self.owns(spec):
                self.scheduler.add(spec.id, spec.check_interval)

    def upsert(self, definition: EndpointSpec | CompactSpec) -> None:
        """An endpoint created or changed (API, config): takes effect without a restart."""
        spec = compact(definition)
        runtime = self.runtimes.get(spec.id)
        was_canary = runtime is not None and runtime.spec.canary
        # Keep the endpoint's place on its cadence unless the schedule itself changed (a rename or a
        # new pattern must not move its next check by up to an interval).
        reschedule = (
            runtime is None
            or spec.id not in self.scheduler
            or runtime.spec.check_interval != spec.check_interval
        )
        if runtime is None:
            self.runtimes[spec.id] = EndpointRuntime(spec, EndpointState())
        else:
            runtime.spec = spec
        if not spec.is_active or not self.owns(spec):
            self.scheduler.remove(spec.id)
        elif reschedule:
            if runtime is not None and spec.id not in self.scheduler:
                runtime.stale = True  # checked elsewhere until now
            self.scheduler.add(spec.id, spec.check_interval)
        if self.alerts is not None and (spec.canary or was_canary):
            self.alerts.endpoints_changed()

    async def replace(self, spec: EndpointSpec | CompactSpec) -> None:
        """An endpoint created or changed (API PUT, config reload), as `upsert`; and when its target
        (protocol, url, port) changed, what was known about the old target is dropped: the status
        is unknown again and failures are counted afresh against the new one.

        The store closes the old target's open outage in the same transaction as the change
        (resolution manual, notes 'target changed'); here its alerts are resolved with it."""
        runtime = self.runtimes.get(spec.id)
        if runtime is not None and target_key(runtime.spec) != target_key(spec):
            outage_id = runtime.state.outage_id
            runtime.state = EndpointState()
            runtime.last = None
            runtime.pending_declare = runtime.pending_resolve = runtime.pending_update = None
            log.info(
                "endpoint_target_changed",
                endpoint_id=spec.id,
                old=public_url(runtime.spec.protocol, runtime.spec.url),
                new=public_url(spec.protocol, spec.url),
                outage_resolved=outage_id,
            )
            if self.alerts is not None:
                self.alerts.target_changed(spec.id)
                if outage_id is not None:
                    await self._outage_closed_by_store(spec.id, outage_id)
        self.upsert(spec)

    def remove(self, endpoint_id: str) -> None:
        runtime = self.runtimes.pop(endpoint_id, None)
        self.scheduler.remove(endpoint_id)
        if self.alerts is not None and runtime is not None and runtime.spec.canary:
            self.alerts.endpoints_changed()
        # The lock stays: a check of this id may still be running, and an endpoint re-created with
        # the same id must wait for it rather than overlap it.

    # -- ownership ---------------------------------------------------------------------------------
    def owns(self, spec: EndpointSpec | CompactSpec) -> bool:
        return self.agents is None or self.agents.owns(spec.id, spec.locations)

    def rebalance(self) -> None:
        """The agents of this location changed: schedule what this agent owns now, drop the rest.
        A gained endpoint starts on the shared grid's next point; the state of all those gained is
        read in one go (two queries) before their first checks."""
        gained: list[str] = []
        lost = added = 0
        scheduler = self.scheduler
        alone = self.agents is not None and self.agents.settle == 0
        since = self.agents.changed_at if self.agents is not None and not alone else None
        for endpoint_id, runtime in self.runtimes.items():
            spec = runtime.spec
            wanted = spec.is_active and self.owns(spec)
            if wanted and endpoint_id not in scheduler:
                # From the grid point at or after the change: applied late (a busy loop), the
                # check the previous owner no longer ran is run now instead of being lost.
                scheduler.add(endpoint_id, spec.check_interval, since=since)
                if not alone:  # alone, nobody else can have checked it since it was loaded
                    runtime.stale = True
                    gained.append(endpoint_id)
                added += 1
            elif not wanted and endpoint_id in scheduler:
                scheduler.remove(endpoint_id)
                lost += 1
        if added or lost:
            log.info("endpoints_rebalanced", gained=added, lost=lost, owned=len(scheduler))
        if gained:
            self._refreshing = asyncio.ensure_future(self._refresh_many(gained))

    async def _refresh_many(self, endpoint_ids: list[str], *, scheduled_only: bool = True) -> None:
        try:
            rows = await self.outages.open_outages(endpoint_ids)
            latest = (
                await self.history_repo.latest(endpoint_ids, self.location)
                if self.history_repo is not None
                else {}
            )
        except Exception as exc:  # each is read on its own before its check instead
            log.warning("endpoint_states_read_failed", endpoints=len(endpoint_ids), error=str(exc))
            return
        open_by_id = {r["endpoint_id"]: OpenOutage.from_record(r) for r in rows}
        for endpoint_id in endpoint_ids:
            runtime = self.runtimes.get(endpoint_id)
            if runtime is None or not runtime.stale or (scheduled_only and endpoint_id not in self.scheduler):
                continue
            row = latest.get(endpoint_id)
            last = (
                Status(row["status"])
                if row is not None and row["status"] in Status.__members__.values()
                else None
            )
            runtime.state = restore(open_by_id.get(endpoint_id), last, self.policy)
            runtime.pending_declare = runtime.pending_resolve = runtime.pending_update = None
            runtime.stale = False

    async def _refresh(self, runtime: EndpointRuntime) -> None:
        """Read what the previous owner left (open outage, last status) before checking; on a
        database error it is checked with what it knows and read again at the next check."""
        await self._refresh_many([runtime.spec.id], scheduled_only=False)

    def set_maintenance(self, windows: list[MaintenanceWindowSpec]) -> None:
        self.calendar = MaintenanceCalendar(windows)

    def outage_resolved_elsewhere(self, endpoint_id: str) -> None:
        """An operator resolved the open outage through the API: start counting afresh."""
        runtime = self.runtimes.get(endpoint_id)
        if runtime is not None:
            runtime.state = EndpointState(status=runtime.state.status)
            runtime.pending_declare = None

    # -- running checks ----------------------------------------------------------------------------
    async def _scheduled(self, endpoint_id: str, due: float) -> None:
        runtime = self.runtimes.get(endpoint_id)
        if runtime is None:
            return
        if self.agents is not None:
            # A membership change due now whose timer the busy loop has not run yet: apply it
            # first, so an endpoint handed over is not checked here as well as by its new owner.
            self.agents.poke()
            if endpoint_id not in self.scheduler:
                return
        try:
            await self.check(runtime)
        except Exception:
            # A bug in our code must not stop this endpoint's schedule or the daemon.
            log.error("check_failed", endpoint_id=endpoint_id, exc_info=True)

    async def check_now(self, endpoint_id: str) -> tuple[datetime, ProbeResult] | None:
        """An on-demand check (API / CLI): goes through the state machine like a scheduled one."""
        runtime = self.runtimes.get(endpoint_id)
        if runtime is None:
            return None
        await self.check(runtime)
        # Someone asked for this result: make it visible in the history right away.
        try:
            await self.history.flush()
        except Exception as exc:  # the flusher task retries; the check itself succeeded
            log.warning("history_flush_failed", error=str(exc))
        return runtime.last

    async def check(self, runtime: EndpointRuntime) -> None:
        spec = runtime.spec
        # One check at a time per endpoint, so an on-demand check and a scheduled one cannot interleave
        # their state transitions.
        lock = self._locks.get(spec.id)
        if lock is None:
            lock = self._locks[spec.id] = asyncio.Lock()
        async with lock:
            if runtime.stale:
                refreshing = self._refreshing
                if refreshing is not None and not refreshing.done():
                    await asyncio.shield(refreshing)
                if runtime.stale:
                    await self._refresh(runtime)
            await self._replay_pending(runtime)
            now = datetime.now(UTC)
            mode = self.calendar.mode_for(spec.id, spec.tags, now)
            if mode == "skip":
                state, events = enter_maintenance(runtime.state, now)
                result = ProbeResult(Status.MAINTENANCE, details={"maintenance": "skip"})
                await self._apply(runtime, now, result, state, events)
                return
            result = await run_check(spec, self.ctx, budget=spec.check_interval)
            self.resources.observe(spec.id, result)
            if runtime.spec is not spec and target_key(runtime.spec) != target_key(spec):
                return  # the target changed while it was probed: this result is about the old one
            state, events = transition(runtime.state, result, now, self.policy, spec.criticality, mode)
            if mode == "mute":
                # Recorded as MAINTENANCE so availability figures leave the window out; what the
                # probe saw stays in the details.
                result = ProbeResult(
                    Status.MAINTENANCE,
                    result.response_time_ms,
                    result.error_kind,
                    result.error,
                    {**result.details, "maintenance": "mute", "probe_status": result.status.value},
                    result.attempts,
                )
            await self._apply(runtime, now, result, state, events)
            # Verification: immediate re-checks before an outage is declared (avoids false alarms
            # from one lost packet or one slow response).
            for event in events:
                if isinstance(event, VerificationRequested):
                    await self._verify(runtime, event.checks, mode)

    async def _verify(self, runtime: EndpointRuntime, checks: int, mode: Any) -> None:
        spec = runtime.spec
        for _ in range(checks):
            if runtime.state.phase is not Phase.VERIFYING:
                return
            result = await run_check(spec, self.ctx, budget=spec.check_interval)
            self.resources.observe(spec.id, result)
            result.details["verification"] = True
            now = datetime.now(UTC)
            state, events = transition(runtime.state, result, now, self.policy, spec.criticality, mode)
            await self._apply(runtime, now, result, state, events)

    async def _apply(
        self,
        runtime: EndpointRuntime,
        now: datetime,
        result: ProbeResult,
        state: EndpointState,
        events: list[Event],
    ) -> None:
        spec = runtime.spec
        previous_outage_id = runtime.state.outage_id
        runtime.state = state
        runtime.last = (now, result)
        self.history.submit(history_row(spec.id, now, result, self.agent_id, self.location))
        if self.alerts is not None:
            self.alerts.observe(spec, now, result)
        for event in events:
            await self._handle(runtime, event, result, previous_outage_id)
        if (
            self.verdicts is not None
            and state.phase is Phase.OUTAGE
            and self._confirmed(spec)
            and not any(isinstance(e, OutageDeclared) for e in events)
        ):
            await self._verdict(runtime, None)  # still DOWN here: the verdict stays current

    async def _handle(
        self, runtime: EndpointRuntime, event: Event, result: ProbeResult, previous_outage_id: int | None
    ) -> None:
        spec = runtime.spec
        for watch in self.watchers:
            watch(spec, event, result)
        outage_id = runtime.state.outage_id or previous_outage_id
        if isinstance(event, StatusChanged):
            log.info(
                "status_changed",
                endpoint_id=spec.id,
                old=event.old.value,
                new=event.new.value,
                error_kind=result.error_kind.value if result.error_kind else None,
                error=result.error,
            )
        elif isinstance(event, OutageDeclared | OutageResolved) and self._confirmed(spec):
            await self._verdict(runtime, event)  # opened or resolved from every location's verdict
            return
        elif isinstance(event, OutageDeclared):
            await self._open_outage(runtime, event)
            return  # _open_outage records the event with its id
        elif isinstance(event, OutageResolved):
            if runtime.pending_declare is not None:
                # Declared and over before its row could be written: keep both halves, so the
                # outage still reaches the history (and availability figures) once the database
                # is back: the next check opens it, then closes it with this resolution time.
                runtime.pending_resolve = (event, None)
            else:
                await self._resolve_outage(runtime, event, outage_id)
            return
        elif isinstance(event, OutageSeverityChanged):
            log.warning(
                "outage_escalated",
                endpoint_id=spec.id,
                outage_id=outage_id,
                old=event.old.value,
                new=event.new.value,
                reason=event.reason,
            )
            if outage_id is not None:
                status = runtime.state.outage_status
                await self._update_outage(
                    runtime,
                    outage_id,
                    {"severity": event.new.value, "status": status.value if status else None},
                )
                if self.alerts is not None:
                    await self.alerts.outage_escalated(spec, event, outage_id)
        elif isinstance(event, FlappingStarted | FlappingStopped):
            log.warning(event.kind, endpoint_id=spec.id, changes=event.changes)
            if outage_id is not None:
                await self._update_outage(
                    runtime, outage_id, {"flapping": isinstance(event, FlappingStarted)}
                )
        elif isinstance(event, FalseAlarm):
            log.info("outage_false_alarm", endpoint_id=spec.id, failures=event.failures)
        elif isinstance(event, VerificationRequested):
            log.info("outage_verifying", endpoint_id=spec.id, checks=event.checks)
        self.events.submit((spec.id, event.occurred_at, event.kind, outage_id, event.as_dict()))

    # -- introspection -----------------------------------------------------------------------------
    def checks_here(self, endpoint_id: str) -> bool:
        """Whether this agent's state of the endpoint is current: it checks it (alone, or as the
        owner among several agents), or it is inactive here as everywhere."""
        if self.agents is None or endpoint_id in self.scheduler:
            return True
        runtime = self.runtimes.get(endpoint_id)
        return runtime is not None and not runtime.spec.is_active

    def current_status(self, endpoint_id: str) -> Status:
        """The endpoint's status as this monitor sees it; UNKNOWN when it does not run it. (What
        `snapshot` says in "status", without building the rest: a list reads it for every row.)"""
        runtime = self.runtimes.get(endpoint_id)
        return runtime.state.status if runtime is not None else Status.UNKNOWN

    def snapshot(self, endpoint_id: str) -> dict[str, Any] | None:
        runtime = self.runtimes.get(endpoint_id)
        if runtime is None:
            return None
        state = runtime.state
        out: dict[str, Any] = {
            "status": state.status.value,
            "phase": state.phase.value,
            "consecutive_failures": state.consecutive_failures,
            "consecutive_successes": state.consecutive_successes,
            "flapping": state.flapping,
            "outage_id": state.outage_id,
        }
        if runtime.last is not None:
            at, result = runtime.last
            out["last_check"] = {"checked_at": at.isoformat(), **result.as_dict()}
        return out

    def stats(self) -> dict[str, Any]:
        p50, p99 = self.scheduler.lag_percentiles(0.5, 0.99)
        return {
            "endpoints": len(self.runtimes),
            "scheduler": {
                **dataclasses.asdict(self.scheduler.stats),
                "lag_p50_ms": p50 * 1000,
                "lag_p99_ms": p99 * 1000,
            },
            "writer": dataclasses.asdict(self.history.stats) | {"backlog": self.history.backlog},
            "resources": self.resources.stats(),
        }

    async def run(self) -> None:
        await self.scheduler.run()

    async def close(self) -> None:
        await self.scheduler.close()
