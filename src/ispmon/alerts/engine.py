"""The alert engine: turns outage events and check results into alerts and outbox notifications.

Inputs: outage declared / escalated / resolved (from the monitor, once the outage row is stored),
every check result (threshold rules, canaries), acknowledgements (API), and a clock tick.
Outputs: rows in ``alerts`` and ``notifications``, always written in one transaction, so an alert
never exists without its notifications nor the other way round. The sender delivers the outbox.

Paging (what an alert sends, and when) is in `ispmon.alerts.paging`; the threshold-like inputs from
the other domains (SNMP polls, quota passes, flow minutes) in `ispmon.alerts.inputs`. Every open alert is also
held in memory (`OpenAlert`), so a tick does no database work unless something is due. A database
error is logged and the operation retried at the next tick; on start `reconcile` repairs what a
crash between an outage row and its alert could have left behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.alerts.escalation import EscalationPolicy, simple_policy
from ispmon.alerts.inputs import ThresholdInputs
from ispmon.alerts.paging import Paging
from ispmon.alerts.reconcile import reconcile
from ispmon.alerts.render import render
from ispmon.alerts.rules import (
    DEFAULT_RULE_ID,
    AlertRule,
    ThresholdBreached,
    ThresholdState,
    default_route,
    metric_value,
)
from ispmon.alerts.shared import SharedAlerts
from ispmon.alerts.state import OpenAlert, now_utc, outage_details
from ispmon.alerts.suppression import ConnectivityGuard, down_ancestor
from ispmon.models import ProbeResult, Severity, Status

if TYPE_CHECKING:
    import asyncpg

    from ispmon.alerts.channels import ChannelRegistry
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.availability.monitor import Monitor
    from ispmon.availability.outage_events import OutageDeclared, OutageSeverityChanged
    from ispmon.store.alerts import AlertRepo
    from ispmon.store.notifications import NotificationRepo

log = structlog.get_logger("ispmon.alerts")

TICK_INTERVAL = 5.0


class AlertEngine(ThresholdInputs, Paging, SharedAlerts):
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        alerts: AlertRepo,
        notifications: NotificationRepo,
        channels: ChannelRegistry,
        default_channels: list[str],
        link_base: str | None,
        wake_sender: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.pool = pool
        self.alerts = alerts
        self.notifications = notifications
        self.channels = channels
        self.default_channels = default_channels
        self.link_base = link_base
        self.wake_sender = wake_sender
        self.clock = clock
        self.monitor: Monitor | None = None
        self.default_rule = default_route()
        self.rules: dict[str, AlertRule] = {DEFAULT_RULE_ID: self.default_rule}
        self._outage_rules: tuple[AlertRule, ...] = ()
        self.policies: dict[str, EscalationPolicy] = {}
        self.open: dict[int, OpenAlert] = {}
        self._versions: dict[int, datetime] = {}
        self.down_elsewhere: frozenset[str] = frozenset()  # open DOWN outages, from the database
        # Escalation steps, reminders and re-suppression are written by one agent at a time (the
        # singleton lease's holder sets this); every agent opens and resolves its own endpoints'.
        self.leading = True
        self.fence: Callable[[], bool] = lambda: True  # the lease still valid by this agent's clock
        self.thresholds: dict[tuple[str, str], ThresholdState] = {}
        self.guard = ConnectivityGuard()
        self._threshold_rules: tuple[AlertRule, ...] = ()
        self._quota_rules: tuple[AlertRule, ...] = ()
        self._matching: dict[str, tuple[EndpointSpec, tuple[AlertRule, ...]]] = {}
        # The latest of each SNMP device / interface subject: its `parent` endpoint is where the
        # dependency walk starts for its alerts (they have no runtime in the monitor).
        self._subjects: dict[str, Any] = {}
        self._retry: list[Callable[[], Awaitable[None]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None

    # -- configuration ---------------------------------------------------------------------------
    def configure(self, rules: list[AlertRule], policies: dict[str, EscalationPolicy]) -> None:
        """The rules (config file + API) and escalation policies in effect. The default route is
        always there too: outages that no rule matches page ALERT_NOTIFICATION_CHANNELS."""
        self.rules = {}
        for rule in rules:
            if rule.id == DEFAULT_RULE_ID:
                # The id names the default route in alerts rows; the API refuses it, and a rule
                # taking it would make those rows ambiguous.
                log.error("alert_rule_id_reserved", rule_id=rule.id, effect="ignored; give it another id")
                continue
            self.rules[rule.id] = rule
        self.rules[DEFAULT_RULE_ID] = self.default_rule
        self._outage_rules = tuple(
            r for r in self.rules.values() if r.kind == "outage" and r.enabled and r is not self.default_rule
        )
        self.policies = dict(policies)
        self._threshold_rules = tuple(r for r in self.rules.values() if r.kind == "threshold" and r.enabled)
        self._quota_rules = tuple(r for r in self.rules.values() if r.kind == "quota" and r.enabled)
        self._matching: dict[str, tuple[EndpointSpec, tuple[AlertRule, ...]]] = {}

    def endpoints_changed(self) -> None:
        """Endpoints were loaded, created, changed or removed: the canary set may be different."""
        if self.monitor is not None:
            runtimes = self.monitor.runtimes
            self.set_canaries([i for i, r in runtimes.items() if r.spec.canary and r.spec.is_active])

    def set_canaries(self, canaries: list[str]) -> None:
        change = self.guard.set_canaries(canaries)
        if change is not None:
            self._spawn(self._connectivity_changed(change))

    def undefined_channels(self) -> list[str]:
        """Channel names that rules, policies or ALERT_NOTIFICATION_CHANNELS use but nobody defined."""
        used = set(self.default_channels)
        for rule in self.rules.values():
            used.update(rule.channels or [])
        for policy in self.policies.values():
            for step in policy.steps:
                used.update(step.channels)
        return sorted(name for name in used if self.channels.get(name) is None)

    def policy_for(self, rule: AlertRule | None, policy_id: str | None = None) -> EscalationPolicy:
        if policy_id and policy_id in self.policies:
            return self.policies[policy_id]
        if rule is not None and rule.escalation and rule.escalation in self.policies:
            return self.policies[rule.escalation]
        channels = (rule.channels if rule is not None and rule.channels is not None else None) or list(
            self.default_channels
        )
        return simple_policy(channels)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, tick_interval: float = TICK_INTERVAL) -> None:
        await self.load()
        await self.reconcile()
        self._runner = asyncio.create_task(self._run(tick_interval), name="alert-engine")

    async def load(self) -> None:
        self.open, self._versions = {}, {}
        for row in await self.alerts.open_alerts():
            self._remember(OpenAlert.from_row(row), row["updated_at"])
        for alert in self.open.values():
            rule = self.rules.get(alert.rule_id)
            if alert.kind == "threshold" and rule is not None and rule.kind in ("threshold", "quota", "flow"):
                # Resume "firing", so the first in-range values after a restart clear it.
                self.thresholds[(rule.id, alert.endpoint_id)] = ThresholdState(
                    count=rule.for_checks or 1, since=alert.started_at, firing=True
                )

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception:
                log.error("alert_tick_failed", exc_info=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, what: str, op: Callable[[], Awaitable[None]]) -> None:
        """Run a database operation; on failure keep it for the next tick (nothing is lost)."""
        try:
            async with self._lock:
                await op()
        except Exception as exc:
            log.error("alert_store_failed", operation=what, error=str(exc), retry="next tick")
            self._retry.append(op)

    # -- inputs from the monitor ---------------------------------------------------------------------
    def observe(self, spec: EndpointSpec, now: datetime, result: ProbeResult) -> None:
        """Every check result. Cheap when there is nothing to do: this runs thousands of times a second."""
        if spec.canary:
            change = self.guard.observe(spec.id, result.status is Status.DOWN)
            if change is not None:
                self._spawn(self._connectivity_changed(change))
        if not self._threshold_rules:
            return
        # The rules that match this endpoint, cached per definition (a changed endpoint is a new
        # frozen spec object, and configure() clears the cache).
        cached = self._matching.get(spec.id)
        if cached is None or cached[0] is not spec:
            cached = (spec, tuple(r for r in self._threshold_rules if r.matches(spec.id, spec.tags)))
            self._matching[spec.id] = cached
        self.feed(spec, cached[1], now, lambda metric: metric_value(metric, result))

    def target_changed(self, endpoint_id: str) -> None:
        """The endpoint probes another target now: counts towards a threshold breach start again.
        A firing threshold alert stays, so the new target's first value in range clears it."""
        for key in [k for k, state in self.thresholds.items() if k[1] == endpoint_id and not state.firing]:
            del self.thresholds[key]

    async def outage_declared(self, spec: EndpointSpec, event: OutageDeclared, outage_id: int) -> None:
        await self._guarded("outage_declared", lambda: self._declared(spec, event, outage_id))

    async def outage_escalated(
        self, spec: EndpointSpec, event: OutageSeverityChanged, outage_id: int
    ) -> None:
        await self._guarded("outage_escalated", lambda: self._escalated(spec, event, outage_id))

    async def outage_resolved(
        self,
        endpoint_id: str,
        outage_id: int,
        resolved_at: datetime,
        duration_seconds: float,
        how: str = "auto",
    ) -> None:
        await self._guarded(
            "outage_resolved",
            lambda: self._outage_over(endpoint_id, outage_id, resolved_at, duration_seconds, how),
        )

    # -- outage alerts ------------------------------------------------------------------------------
    def outage_rules(self, spec: EndpointSpec, severity: Severity) -> list[AlertRule]:
        """The rules an outage of this endpoint at this severity pages through: every enabled
        outage rule that matches it, or, when none does, the default route (never nothing)."""
        matching = [
            r for r in self._outage_rules if r.matches(spec.id, spec.tags) and r.severity_matches(severity)
        ]
        return matching or [self.default_rule]

    def _log_if_unrouted(self, spec: EndpointSpec, outage_id: int | None) -> None:
        """The default route took an outage: say so once (at its alert's creation) when its
        channels, ALERT_NOTIFICATION_CHANNELS, are not all defined; if none is, nobody is paged."""
        undefined = [c for c in self.default_channels if self.channels.get(c) is None]
        if not undefined and self.default_channels:
            return
        paged = [c for c in self.default_channels if c not in undefined]
        (log.warning if paged else log.error)(
            "alert_default_channels_undefined",
            endpoint_id=spec.id,
            outage_id=outage_id,
            rule_id=DEFAULT_RULE_ID,
            channels=undefined,
            paged=paged,
            effect="no rule matches this outage and ALERT_NOTIFICATION_CHANNELS names channels nobody "
            "defined ([channels] in the config file or POST /channels/)"
            + ("" if paged else ": nobody is paged"),
        )

    async def _declared(self, spec: EndpointSpec, event: OutageDeclared, outage_id: int) -> None:
        details = {
            "endpoint_name": spec.name,
            "status": event.status.value,
            "error_kind": event.error_kind,
            "error": event.error,
            "failures": event.failures,
            "verified": event.verified,
        }
        for rule in self.outage_rules(spec, event.severity):
            await self._open_alert(
                spec,
                rule,
                "outage",
                outage_id,
                rule.alert_severity(event.severity).value,
                event.started_at,
                details,
            )

    async def _escalated(self, spec: EndpointSpec, event: OutageSeverityChanged, outage_id: int) -> None:
        now = self.clock()
        # From the rows: the outage may have been opened by another agent, and its alerts paged on.
        existing = {a.rule_id: a for a in await self.open_of_outage(outage_id)}
        rules = self.outage_rules(spec, event.new)
        if DEFAULT_RULE_ID in existing and all(r is not self.default_rule for r in rules):
            # Routed by default at first, and now in a rule's min_severity range: that rule starts
            # paging, and those already paged by default still hear of the escalation.
            rules.append(self.default_rule)
        for rule in rules:
            alert = existing.get(rule.id)
            if alert is None:
                # The outage escalated into this rule's range (min_severity): it starts paging now.
                row = await self.monitor.outages.get(outage_id) if self.monitor is not None else None
                details = outage_details(spec, row)
                started = row["started_at"] if row is not None else now
                severity = rule.alert_severity(event.new).value
                await self._open_alert(spec, rule, "outage", outage_id, severity, started, details)
                continue
            if rule.alert_severity(event.new).value == alert.severity:
                continue  # the rule fixes its own severity: nothing changed for this alert
            async with self.pool.acquire() as conn, conn.transaction():
                locked = await self.lock_open(conn, alert.id)
                if locked is None:
                    continue  # resolved meanwhile by another agent: nothing to say
                alert = locked
                alert.severity = rule.alert_severity(event.new).value
                await self.alerts.update(conn, alert.id, severity=alert.severity)
                if rule.notify_escalated and alert.state == "firing" and self._paged(alert):
                    await self._enqueue(
                        conn, alert, "escalated", self._paged_channels(alert), now, tag=alert.severity
                    )
        self.wake_sender()

    async def _outage_over(
        self, endpoint_id: str, outage_id: int, resolved_at: datetime, duration: float, how: str
    ) -> None:
        # From the rows, not memory: the alert may have been opened by the agent that owned the
        # endpoint before this one.
        for alert in await self.open_of_outage(outage_id):
            await self._resolve(
                alert, resolved_at, "resolved", {"duration_seconds": duration, "resolution": how}
            )
        self.wake_sender()

    # -- threshold alerts -----------------------------------------------------------------------------
    async def _breached(self, spec: EndpointSpec, rule: AlertRule, event: ThresholdBreached) -> None:
        details = {
            "endpoint_name": spec.name,
            "metric": rule.metric,
            "above": rule.above,
            "below": rule.below,
            "value": event.value,
            "peak": event.peak,
            "checks": event.checks,
        }
        severity = (rule.severity or Severity.MINOR).value
        await self._open_alert(spec, rule, "threshold", None, severity, event.since, details)

    async def _cleared(self, spec: EndpointSpec, rule: AlertRule, event: Any) -> None:
        for alert in await self.open_of_rule(rule.id, spec.id):
            updates = {"value": event.value, "peak": event.peak, "duration_seconds": event.duration_seconds}
            await self._resolve(alert, event.cleared_at, "cleared", updates)
        self.wake_sender()

    # -- the common path --------------------------------------------------------------------------
    def suppression(self, spec: EndpointSpec | None, endpoint_id: str, now: datetime) -> str | None:
        """Why nobody should be paged for this endpoint now, or None."""
        if self.guard.isolated and not (spec is not None and spec.canary):
            return "self_connectivity"
        monitor = self.monitor
        if monitor is None:
            return None
        parent = down_ancestor(endpoint_id, self._parent_of, self._is_down)
        if parent is not None:
            return f"dependency:{parent}"
        if spec is not None:
            window = monitor.calendar.suppressing(spec.id, spec.tags, now)
            if window is not None:
                return f"maintenance:{window}"
        return None

    def _parent_of(self, endpoint_id: str) -> str | None:
        runtime = self.monitor.runtimes.get(endpoint_id) if self.monitor else None
        if runtime is not None:
            return runtime.spec.parent
        subject = self._subjects.get(endpoint_id)  # a device's or interface's alert
        return subject.parent if subject is not None else None

    def _is_down(self, endpoint_id: str) -> bool:
        runtime = self.monitor.runtimes.get(endpoint_id) if self.monitor else None
        if runtime is None:
            return False
        if (
            self.monitor is not None
            and not self.monitor.owns(runtime.spec)
            and endpoint_id in self.down_elsewhere
        ):
            # Another agent checks it and its outage row says DOWN (read at each tick): the holder's
            # re-suppression agrees with the owner's view even before this copy of the state does.
            return True
        state = runtime.state
        return state.status is Status.DOWN or (
            state.outage_id is not None and state.outage_status is Status.DOWN
        )

    def _spec(self, endpoint_id: str) -> EndpointSpec | None:
        runtime = self.monitor.runtimes.get(endpoint_id) if self.monitor else None
        return runtime.spec if runtime is not None else None

    async def open_alert_guarded(
        self,
        spec: EndpointSpec,
        rule: AlertRule,
        kind: str,
        outage_id: int | None,
        severity: str,
        started_at: datetime,
        details: dict[str, Any],
    ) -> None:
        await self._guarded(
            "open_alert", lambda: self._open_alert(spec, rule, kind, outage_id, severity, started_at, details)
        )

    async def _open_alert(
        self,
        spec: EndpointSpec,
        rule: AlertRule,
        kind: str,
        outage_id: int | None,
        severity: str,
        started_at: datetime,
        details: dict[str, Any],
    ) -> None:
        now = self.clock()
        suppressed = self.suppression(spec, spec.id, now)
        policy = self.policy_for(rule)
        async with self.pool.acquire() as conn, conn.transaction():
            row, created = await self.alerts.open(
                conn,
                endpoint_id=spec.id,
                rule_id=rule.id,
                kind=kind,
                outage_id=outage_id,
                severity=severity,
                state="firing",
                title="",
                message="",
                details=details,
                suppressed_by=suppressed,
                was_suppressed=suppressed is not None,
                started_at=started_at,
                notify_from=None if suppressed else now,
                escalation_policy=policy.id if rule.escalation else None,
            )
            alert = OpenAlert.from_row(row)
            self.open[alert.id] = alert
            if not created:
                return
            first = render(
                alert,
                "declared" if kind == "outage" else "breached",
                now,
                link_base=self.link_base,
                rule=self.rules.get(alert.rule_id),
            )
            await self.alerts.update(conn, alert.id, title=first.title, message=first.body)
            if suppressed is not None:
                await self._mark_outage(conn, alert, suppressed)
            else:
                await self._escalate(conn, alert, now)
        log.warning(
            "alert_opened",
            alert_id=alert.id,
            endpoint_id=spec.id,
            rule_id=rule.id,
            kind=kind,
            severity=severity,
            outage_id=outage_id,
            suppressed_by=suppressed,
        )
        if rule is self.default_rule:
            self._log_if_unrouted(spec, outage_id)
        self.wake_sender()

    async def reconcile(self) -> None:
        await reconcile(self)
