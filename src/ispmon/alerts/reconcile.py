"""After a restart: make the alerts agree with the outages again.

An outage row and its alert are written in two transactions (the outage by the monitor, the alert
by the engine right after). A crash between the two leaves an open outage without its alert, or
an open alert whose outage was resolved while ispmon was down; both are repaired here, once, at
start. Everything else (notifications, escalation progress) is in the database already.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ispmon.alerts.state import OpenAlert, outage_details
from ispmon.models import Severity

if TYPE_CHECKING:
    from ispmon.alerts.rules import AlertRule
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.availability.monitor import Monitor


class Reconcilable(Protocol):
    """What reconcile needs of the alert engine (which calls it; typed here so the import runs one way)."""

    monitor: Monitor | None
    open: dict[int, OpenAlert]

    def outage_rules(self, spec: EndpointSpec, severity: Severity) -> Iterable[AlertRule]: ...

    async def open_alert_guarded(
        self,
        spec: EndpointSpec,
        rule: AlertRule,
        kind: str,
        outage_id: int | None,
        severity: str,
        started_at: datetime,
        details: dict[str, Any],
    ) -> None: ...

    async def outage_resolved(
        self,
        endpoint_id: str,
        outage_id: int,
        resolved_at: datetime,
        duration_seconds: float,
        how: str = ...,
    ) -> None: ...


async def reconcile(engine: Reconcilable) -> None:
    monitor = engine.monitor
    if monitor is None:
        return
    open_outages = {r["id"]: r for r in await monitor.outages.open_outages()}
    alerted = {a.outage_id for a in engine.open.values() if a.outage_id is not None}
    for outage_id, row in open_outages.items():
        runtime = monitor.runtimes.get(row["endpoint_id"])
        if outage_id in alerted or runtime is None:
            continue
        spec = runtime.spec
        details = outage_details(spec, row)
        for rule in engine.outage_rules(spec, Severity(row["severity"])):
            severity = rule.alert_severity(Severity(row["severity"])).value
            await engine.open_alert_guarded(
                spec, rule, "outage", outage_id, severity, row["started_at"], details
            )
    for alert in list(engine.open.values()):
        if alert.outage_id is None or alert.outage_id in open_outages:
            continue
        outage = await monitor.outages.get(alert.outage_id)
        if outage is None or outage["resolved_at"] is None:
            continue
        await engine.outage_resolved(
            alert.endpoint_id,
            alert.outage_id,
            outage["resolved_at"],
            outage["duration_seconds"] or 0.0,
            outage["resolution"] or "auto",
        )
