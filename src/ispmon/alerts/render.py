"""The message for an open alert at one moment of its life (declared, step, reminder, resolved, ...).

Glue between the engine's `OpenAlert` (what is stored) and the pure formatters in `messages`; it takes
the rule and the link base it needs, not the engine.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ispmon.alerts.messages import Message, outage_message, threshold_message

if TYPE_CHECKING:
    from ispmon.alerts.rules import AlertRule
    from ispmon.alerts.state import OpenAlert


def _suppressed_note(reason: str | None) -> str | None:
    if reason is None:
        return None
    kind, _, what = reason.partition(":")
    if kind == "dependency":
        return f"paging was held while its parent {what} was down"
    if kind == "maintenance":
        return f"paging was held during maintenance window {what}"
    return "paging was held while the monitoring host had lost its own connectivity"


def render(
    alert: OpenAlert,
    event: str,
    now: datetime,
    *,
    link_base: str,
    rule: AlertRule | None = None,
    step: int = 0,
    reminder: int = 0,
) -> Message:
    d: dict[str, Any] = alert.details
    name = d.get("endpoint_name") or alert.endpoint_id
    if alert.kind == "outage":
        if event == "acknowledged" and d.get("acknowledged_by"):
            note: str | None = f"acknowledged by {d['acknowledged_by']}"
        else:
            held = alert.suppressed_by or d.get("held_by")
            note = _suppressed_note(held) if event in ("declared", "step") else None
        return outage_message(
            event,  # type: ignore[arg-type]
            endpoint_id=alert.endpoint_id,
            endpoint_name=name,
            severity=alert.severity,
            status="up" if event == "resolved" else str(d.get("status") or "down"),
            error_kind=d.get("error_kind"),
            error=d.get("error"),
            started_at=alert.started_at,
            now=now,
            duration_seconds=d.get("duration_seconds") if event == "resolved" else None,
            outage_id=alert.outage_id,
            alert_id=alert.id,
            link_base=link_base,
            step=step,
            reminder=reminder,
            suppressed_note=note,
        )
    # The formatter has no "acknowledged" wording for thresholds: its reminder text, retitled.
    acknowledged = event == "acknowledged"
    held = alert.suppressed_by or d.get("held_by")
    message = threshold_message(
        "reminder" if acknowledged else event,  # type: ignore[arg-type]
        rule_id=alert.rule_id,
        rule_name=rule.name if rule is not None else None,
        metric=str(d.get("metric") or "value"),
        above=d.get("above"),
        below=d.get("below"),
        value=d.get("value"),
        peak=d.get("peak"),
        checks=int(d.get("checks") or 1),
        endpoint_id=alert.endpoint_id,
        endpoint_name=name,
        severity=alert.severity,
        since=alert.started_at,
        now=now,
        duration_seconds=d.get("duration_seconds") if event == "cleared" else None,
        alert_id=alert.id,
        link_base=link_base,
        step=step,
        reminder=reminder,
        suppressed_note=_suppressed_note(held) if event in ("breached", "step") else None,
    )
    return _retitle_acknowledged(alert, message) if acknowledged else message


def _retitle_acknowledged(alert: OpenAlert, base: Message) -> Message:
    by = alert.details.get("acknowledged_by") or "someone"
    head = f"[{alert.severity.upper()}] ACKNOWLEDGED by {by}: "
    title = head + base.title.split("] ", 1)[-1].split(" (reminder")[0]
    lead = f"Acknowledged by {by}; no more reminders are sent."
    body = lead + "\n" + base.body.split("\n", 1)[1]
    short = title if len(title) <= 160 else title[:159] + "…"
    return Message(title=title, body=body, short=short)
