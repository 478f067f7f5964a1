"""Paging: what an open alert sends, and when (escalation steps, reminders, acknowledge, resolve).

The half of the alert engine that writes the outbox. `Paging` is mixed into `AlertEngine`, which
holds the state it works on (the open alerts, rules, policies, channels) and decides suppression;
every method here runs inside a transaction its caller opened, so an alert change and the
notifications it causes commit together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.alerts.escalation import DueNotification, EscalationPolicy, due_notifications
from ispmon.alerts.messages import Message
from ispmon.alerts.render import render
from ispmon.alerts.rules import AlertRule, ThresholdState
from ispmon.alerts.state import OpenAlert
from ispmon.store.notifications import NotificationDraft

if TYPE_CHECKING:
    import asyncpg

    from ispmon.alerts.channels import ChannelRegistry
    from ispmon.alerts.suppression import ConnectivityGuard
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.store.alerts import AlertRepo
    from ispmon.store.notifications import NotificationRepo

log = structlog.get_logger("ispmon.alerts")

# Pages after the first: pending ones stop when the alert is acknowledged or resolved.
LATER_PAGES = ["step", "reminder", "escalated"]
# Every page of a firing alert: pending ones stop once the alert is suppressed.
ESCALATING_EVENTS = ["declared", "breached", *LATER_PAGES]


class Paging:
    # Provided by AlertEngine.
    pool: asyncpg.Pool
    alerts: AlertRepo
    notifications: NotificationRepo
    channels: ChannelRegistry
    rules: dict[str, AlertRule]
    open: dict[int, OpenAlert]
    thresholds: dict[tuple[str, str], ThresholdState]
    guard: ConnectivityGuard
    link_base: str | None
    clock: Callable[[], datetime]
    wake_sender: Callable[[], None]
    leading: bool
    fence: Callable[[], bool]
    _lock: asyncio.Lock

    if TYPE_CHECKING:  # defined by AlertEngine; declared here for the type checker only

        def policy_for(self, rule: AlertRule | None, policy_id: str | None = None) -> EscalationPolicy: ...

        def suppression(self, spec: EndpointSpec | None, endpoint_id: str, now: datetime) -> str | None: ...

        def _spec(self, endpoint_id: str) -> EndpointSpec | None: ...

        async def refresh_open(self) -> None: ...

        async def lock_open(self, conn: asyncpg.Connection, alert_id: int) -> OpenAlert | None: ...

        def _forget(self, alert_id: int) -> None: ...

    async def _mark_outage(self, conn: asyncpg.Connection, alert: OpenAlert, reason: str | None) -> None:
        # Dependency and isolation say something about the outage itself (it was a consequence);
        # maintenance is already visible from the window, so the outage row is not marked for it.
        if alert.outage_id is not None and (reason is None or not reason.startswith("maintenance:")):
            await conn.execute(
                "UPDATE outages SET suppressed_by = coalesce($2, suppressed_by), updated_at = now() WHERE id = $1",
                alert.outage_id,
                reason,
            )

    def _paged(self, alert: OpenAlert) -> bool:
        return alert.last_step >= 0

    def _paged_channels(self, alert: OpenAlert) -> list[str]:
        policy = self.policy_for(self.rules.get(alert.rule_id), alert.policy_id)
        names: list[str] = []
        for step in policy.steps[: alert.last_step + 1]:
            names.extend(c for c in step.channels if c not in names)
        return names

    async def _escalate(self, conn: asyncpg.Connection, alert: OpenAlert, now: datetime) -> bool:
        """Enqueue the escalation steps and reminders that are due. True when something was."""
        if alert.notify_from is None or alert.suppressed_by is not None or alert.state != "firing":
            return False
        policy = self.policy_for(self.rules.get(alert.rule_id), alert.policy_id)
        due = due_notifications(
            policy, alert.notify_from, now, alert.last_step, alert.last_reminder, False, False
        )
        if not due:
            return False
        for item in due:
            await self._enqueue_due(conn, alert, item, now)
            if item.reminder:
                alert.last_reminder = item.reminder
            else:
                alert.last_step = item.step
        await self.alerts.update(
            conn, alert.id, last_step=alert.last_step, last_reminder=alert.last_reminder, last_notified_at=now
        )
        return True

    async def _enqueue_due(
        self, conn: asyncpg.Connection, alert: OpenAlert, item: DueNotification, now: datetime
    ) -> None:
        if item.reminder:
            event = "reminder"
        elif item.step == 0:
            event = "declared" if alert.kind == "outage" else "breached"
        else:
            event = "step"
        await self._enqueue(
            conn, alert, event, list(item.channels), now, tag=item.key, step=item.step, reminder=item.reminder
        )

    async def _enqueue(
        self,
        conn: asyncpg.Connection,
        alert: OpenAlert,
        event: str,
        channels: list[str],
        now: datetime,
        *,
        tag: str | None = None,
        step: int = 0,
        reminder: int = 0,
    ) -> None:
        rule = self.rules.get(alert.rule_id)
        message: Message = render(
            alert, event, now, link_base=self.link_base, rule=rule, step=step, reminder=reminder
        )
        drafts = []
        for name in channels:
            channel = self.channels.get(name)
            kinds = sorted(set(channel.kinds)) if channel is not None else ["undefined"]
            drafts.append(
                NotificationDraft(
                    idempotency_key=f"alert:{alert.id}:{event}:{tag or event}:{name}",
                    channel=name,
                    event=event,
                    step=step,
                    title=message.title,
                    body=message.body,
                    short_body=message.short,
                    notification_type=kinds[0] if len(kinds) == 1 else "mixed",
                    alert_id=alert.id,
                    outage_id=alert.outage_id,
                    endpoint_id=alert.endpoint_id,
                )
            )
        await self.notifications.enqueue(drafts, conn=conn)

    async def _resolve(
        self, alert: OpenAlert, at: datetime, event: str, updates: dict[str, Any] | None = None
    ) -> None:
        rule = self.rules.get(alert.rule_id)
        async with self.pool.acquire() as conn, conn.transaction():
            # The row as it is now (another agent may have paged further steps): its channels hear
            # of the resolution. Already resolved (by another agent): nothing is sent twice.
            locked = await self.lock_open(conn, alert.id)
            if locked is None:
                return
            alert = locked
            alert.details.update(updates or {})
            await self.alerts.update(conn, alert.id, state="resolved", resolved_at=at, details=alert.details)
            # Later steps and reminders no longer make sense; what was already due still goes out
            # (people learn the outage happened) and is followed by the resolution.
            await self.notifications.cancel_for_alert(alert.id, LATER_PAGES, conn=conn)
            notify = rule.notify_resolved if rule is not None else True
            if notify and self._paged(alert):
                alert.state = "resolved"
                await self._enqueue(conn, alert, event, self._paged_channels(alert), at)
        self._forget(alert.id)
        if alert.kind == "threshold":
            self.thresholds.pop((alert.rule_id, alert.endpoint_id), None)
        log.info("alert_resolved", alert_id=alert.id, endpoint_id=alert.endpoint_id, rule_id=alert.rule_id)

    # -- acknowledge, tick, reconcile ----------------------------------------------------------------------
    async def acknowledge(self, alert_id: int, by: str, note: str | None) -> Any:
        """Firing -> acknowledged: escalation stops; the channels already paged hear who took it.
        Returns the updated row, or None when the alert is not firing."""
        now = self.clock()
        async with self._lock, self.pool.acquire() as conn, conn.transaction():
            row = await self.alerts.acknowledge(conn, alert_id, by, note, now)
            if row is None:
                return None
            await self.notifications.cancel_for_alert(alert_id, LATER_PAGES, conn=conn)
            alert = OpenAlert.from_row(row)  # the row, not a copy: another agent may have paged on
            self.open[alert_id] = alert
            alert.state = "acknowledged"
            alert.details["acknowledged_by"] = by
            if self._paged(alert):
                await self._enqueue(conn, alert, "acknowledged", self._paged_channels(alert), now)
        log.info("alert_acknowledged", alert_id=alert_id, by=by)
        self.wake_sender()
        return row

    async def tick(self, now: datetime | None = None) -> None:
        """Retry failed writes and bring the open alerts up to date from the database (every
        agent); on the singleton lease's holder only (`leading`), re-check suppression and enqueue
        due escalation steps/reminders, each conditional on the alert's row being still open."""
        now = now or self.clock()
        retry, self._retry = self._retry, []
        for op in retry:
            await self._guarded("retry", op)
        woke = False
        async with self._lock:
            try:
                await self.refresh_open()
            except Exception as exc:
                log.error("alert_refresh_failed", error=str(exc), retry="next tick")
            for alert in list(self.open.values()):
                if not (self.leading and self.fence()):
                    break  # not (or no longer) the singleton lease's holder: another agent pages
                if alert.state == "resolved":
                    continue
                spec = self._spec(alert.endpoint_id)
                reason = self.suppression(spec, alert.endpoint_id, now)
                if reason == alert.suppressed_by and not self._has_due(alert, now):
                    continue  # nothing to write: no transaction, no row lock
                try:
                    async with self.pool.acquire() as conn, conn.transaction():
                        locked = await self.lock_open(conn, alert.id)
                        if locked is None:
                            continue  # resolved meanwhile by the endpoint's agent
                        if reason != locked.suppressed_by:
                            await self._resuppress(conn, locked, reason, now)
                        woke |= await self._escalate(conn, locked, now)
                except Exception as exc:
                    log.error("alert_tick_store_failed", alert_id=alert.id, error=str(exc))
        if woke:
            self.wake_sender()

    def _has_due(self, alert: OpenAlert, now: datetime) -> bool:
        if alert.notify_from is None or alert.suppressed_by is not None or alert.state != "firing":
            return False
        policy = self.policy_for(self.rules.get(alert.rule_id), alert.policy_id)
        return bool(
            due_notifications(
                policy, alert.notify_from, now, alert.last_step, alert.last_reminder, False, False
            )
        )

    async def _resuppress(
        self, conn: asyncpg.Connection, alert: OpenAlert, reason: str | None, now: datetime
    ) -> None:
        old = alert.suppressed_by
        alert.suppressed_by = reason
        fields: dict[str, Any] = {"suppressed_by": reason}
        if reason is not None:
            fields["was_suppressed"] = True
            # Pages not yet out would arrive late and be noise (the uplink or the parent is the cause).
            await self.notifications.cancel_for_alert(alert.id, ESCALATING_EVENTS, conn=conn)
            await self._mark_outage(conn, alert, reason)
        else:
            # Kept for the message: "paging was held while its parent ... was down".
            alert.details["held_by"] = old
            fields["details"] = alert.details
            if alert.notify_from is None or not self._paged(alert):
                # Still failing now that the cause is gone: a problem of its own; page from step 0.
                alert.notify_from = now
                fields["notify_from"] = now
        await self.alerts.update(conn, alert.id, **fields)
        log.info(
            "alert_suppression_changed", alert_id=alert.id, endpoint_id=alert.endpoint_id, old=old, new=reason
        )

    async def _connectivity_changed(self, isolated: bool) -> None:
        canaries = sorted(self.guard.canaries)
        if isolated:
            log.error(
                "monitor_isolated", canaries=canaries, action="alerts of other endpoints are suppressed"
            )
        else:
            log.warning("monitor_connectivity_restored", canaries=canaries)
        try:
            await self.alerts.record_connectivity(self.clock(), isolated, canaries)
        except Exception as exc:
            log.error("connectivity_store_failed", error=str(exc))
        await self.tick()
