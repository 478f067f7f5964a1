"""Alert messages: a title and body for mail/chat, and a short variant (≤ 160 characters) for SMS.

The short text keeps the most useful part when it has to give something up: severity, what
happened, the endpoint's name and for how long always survive (the name is shortened first),
the error and the link are appended only as far as they fit. Text from targets (error strings,
endpoint names) can be long or multi-line: whitespace is collapsed in the title and the short
text, and the error is cut to 500 characters in the body.

``step`` is the escalation step's index as `DueNotification.step` has it (0-based); messages show
it counted from 1, so index 1 (the 15-minute step of 0/15/60) reads "escalation step 2".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

SHORT_LIMIT = 160
ERROR_LIMIT = 500
# Below this many free characters an error fragment says nothing useful ("timeout: c…").
_MIN_ERROR_ROOM = 16

OutageEvent = Literal["declared", "escalated", "reminder", "step", "resolved", "acknowledged"]
ThresholdEvent = Literal["breached", "cleared", "reminder", "step"]


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    short: str

    def __post_init__(self) -> None:
        if len(self.short) > SHORT_LIMIT:
            raise ValueError(f"short text is {len(self.short)} characters, more than {SHORT_LIMIT}")


def format_duration(seconds: float) -> str:
    """45s, 12m, 1h 05m, 2d 03h: two units at most, rounded down, never negative."""
    total = max(int(seconds), 0)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600:02d}h"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    return text[: limit - 1].rstrip() + "…"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _fit_short(head: str, name: str, tail: str, extras: Sequence[str]) -> str:
    """head + name + tail always (the name shortened to make room); then extras while they fit.

    The first extra (the error) may be cut with "…"; later ones (links) are all or nothing.
    """
    name = _clip(name, max(SHORT_LIMIT - len(head) - len(tail), 1))
    text = head + name + tail
    for index, extra in enumerate(extras):
        room = SHORT_LIMIT - len(text)
        if len(extra) <= room:
            text += extra
        elif index == 0 and room >= _MIN_ERROR_ROOM:
            text += _clip(extra, room)
        else:
            break
    return _clip(text, SHORT_LIMIT)


def _links(link_base: str | None, outage_id: int | None, alert_id: int | None) -> list[tuple[str, str]]:
    if not link_base:
        return []
    base = link_base.rstrip("/")
    out = []
    if outage_id is not None:
        out.append(("Outage", f"{base}/outages/{outage_id}"))
    if alert_id is not None:
        out.append(("Alert", f"{base}/alerts/{alert_id}"))
    return out


def _body_error(error_kind: str | None, error: str | None) -> str | None:
    if not error_kind and not error:
        return None
    text = _clip((error or "").strip(), ERROR_LIMIT)
    # Continuation lines are indented so the body stays "Key: value" per line; blank ones dropped.
    text = "\n  ".join(line.strip() for line in text.splitlines() if line.strip())
    if error_kind and text:
        return f"{error_kind}: {text}"
    return error_kind or text


def outage_message(
    event: OutageEvent,
    *,
    endpoint_id: str,
    endpoint_name: str,
    severity: str,
    status: str,
    error_kind: str | None,
    error: str | None,
    started_at: datetime,
    now: datetime,
    duration_seconds: float | None,
    outage_id: int | None,
    alert_id: int | None,
    link_base: str | None,
    step: int = 0,
    reminder: int = 0,
    suppressed_note: str | None = None,
) -> Message:
    """The message for one outage alert. `duration_seconds` None: measured from started_at to now."""
    name = _one_line(endpoint_name) or endpoint_id
    sev = str(severity).upper()
    word = str(status).upper()
    duration = format_duration(
        duration_seconds if duration_seconds is not None else (now - started_at).total_seconds()
    )
    labels: dict[str, tuple[str, str, str]] = {
        # event: (title word, short tail, first body line)
        "declared": (word, f" for {duration}", f"{name} is {word}."),
        "step": (
            f"STILL {word}",
            f" after {duration} (step {step + 1})",
            f"{name} is still {word} after {duration} (escalation step {step + 1}).",
        ),
        "reminder": (
            f"STILL {word}",
            f" after {duration} (reminder {reminder})",
            f"{name} is still {word} after {duration} (reminder {reminder}).",
        ),
        "escalated": (
            f"ESCALATED {word}",
            f" for {duration}",
            f"The outage of {name} rose to severity {sev} after {duration}.",
        ),
        "resolved": (
            "RESOLVED",
            f" after {duration}",
            f"{name} is back: the outage is RESOLVED after {duration}.",
        ),
        "acknowledged": (
            "ACKNOWLEDGED",
            f", {word} for {duration}",
            f"The outage of {name} was acknowledged; no more reminders are sent.",
        ),
    }
    if event not in labels:
        raise ValueError(f"unknown outage alert event {event!r}")
    title_word, short_tail, lead = labels[event]
    title = f"[{sev}] {title_word}: {name} ({endpoint_id})"
    if event == "resolved":
        title += f" after {duration}"

    lines = [lead, "", f"Endpoint: {name} ({endpoint_id})", f"Status: {status}", f"Severity: {severity}"]
    body_error = _body_error(error_kind, error)
    if body_error:
        lines.append(f"Error: {body_error}")
    lines += [f"Since: {_iso(started_at)}", f"Duration: {duration}"]
    links = _links(link_base, outage_id, alert_id)
    lines += [f"{label}: {url}" for label, url in links]
    if suppressed_note:
        lines.append(f"Note: {suppressed_note.strip()}")

    extras = []
    if body_error and event != "resolved":
        extras.append(" - " + _one_line(body_error))
    extras += [f" {url}" for _, url in links[:1]]
    short = _fit_short(f"[{sev}] {title_word} ", name, short_tail, extras)
    return Message(title=_clip(_one_line(title), 300), body="\n".join(lines), short=short)


def _limit_text(above: float | None, below: float | None) -> tuple[str, str]:
    """("> 500", "above 500") for the operator form and the body's wording."""
    if above is not None:
        return f"> {_number(above)}", f"above {_number(above)}"
    return f"< {_number(below)}", f"below {_number(below)}"


def threshold_message(
    event: ThresholdEvent,
    *,
    rule_id: str,
    rule_name: str | None,
    metric: str,
    above: float | None,
    below: float | None,
    value: float | None,
    peak: float | None,
    checks: int,
    endpoint_id: str,
    endpoint_name: str,
    severity: str,
    since: datetime,
    now: datetime,
    duration_seconds: float | None,
    alert_id: int | None,
    link_base: str | None,
    step: int = 0,
    reminder: int = 0,
    suppressed_note: str | None = None,
) -> Message:
    """The message for one threshold alert, e.g. "[MINOR] web-1: response_time_ms 812 > 500 for 3 checks"."""
    name = _one_line(endpoint_name) or endpoint_id
    sev = str(severity).upper()
    duration = format_duration(
        duration_seconds if duration_seconds is not None else (now - since).total_seconds()
    )
    op, wording = _limit_text(above, below)
    checks_text = f"{checks} check" if checks == 1 else f"{checks} checks"
    measured = f"{metric} {_number(value)} {op}"
    details: dict[str, tuple[str, str]] = {
        # event: (what follows "name: " in title and short, first body line)
        "breached": (
            f"{measured} for {checks_text}",
            f"{metric} on {name} is {_number(value)}, {wording}, for {checks_text}.",
        ),
        "step": (
            f"{measured} for {duration} (step {step + 1})",
            f"{metric} on {name} is still {wording} after {duration} (escalation step {step + 1}).",
        ),
        "reminder": (
            f"{measured} for {duration} (reminder {reminder})",
            f"{metric} on {name} is still {wording} after {duration} (reminder {reminder}).",
        ),
        "cleared": (
            f"{metric} back to {_number(value)} after {duration}, peak {_number(peak)}",
            f"{metric} on {name} is back to {_number(value)} (limit: {wording}) after {duration};"
            f" the peak was {_number(peak)}.",
        ),
    }
    if event not in details:
        raise ValueError(f"unknown threshold alert event {event!r}")
    what, lead = details[event]
    prefix = f"[{sev}] CLEARED " if event == "cleared" else f"[{sev}] "
    title = f"{prefix}{name}: {what}"

    rule = f"{_one_line(rule_name)} ({rule_id})" if rule_name else rule_id
    lines = [
        lead,
        "",
        f"Rule: {rule}",
        f"Endpoint: {name} ({endpoint_id})",
        f"Metric: {metric}",
        f"Value: {_number(value)}",
        f"Threshold: {wording}",
        f"Peak: {_number(peak)}",
        f"Checks: {checks}",
        f"Severity: {severity}",
        f"Since: {_iso(since)}",
        f"Duration: {duration}",
    ]
    if suppressed_note:  # paged late (a device behind a parent that was down): say why
        lines.append(f"Note: {suppressed_note.strip()}")
    links = _links(link_base, None, alert_id)
    lines += [f"{label}: {url}" for label, url in links]
    short = _fit_short(prefix, name, f": {what}", [f" {url}" for _, url in links])
    return Message(title=_clip(title, 300), body="\n".join(lines), short=short)


def test_message(channel: str, now: datetime) -> Message:
    """What ``ispmon notify-test`` sends, so a channel can be checked end to end."""
    at = _iso(now)
    return Message(
        title=f"[TEST] ispmon notification test ({channel})",
        body=(
            f"This is a test message from ispmon through the channel {channel!r}, sent at {at}.\n"
            "If you can read it, alerts sent through this channel reach you."
        ),
        short=_clip(f"[TEST] ispmon test via {channel} at {at}", SHORT_LIMIT),
    )


# Not a pytest test despite its name (pytest would collect it when imported into a test module).
test_message.__test__ = False  # type: ignore[attr-defined]
