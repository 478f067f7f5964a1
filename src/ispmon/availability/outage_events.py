"""Events reported by the outage state machine (`ispmon.availability.outages.transition`).

Frozen value objects without the endpoint id (the caller attaches it). `kind` names the event in
logs and in the ``endpoint_events`` table; `as_dict()` is its JSON-safe body.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from ispmon.models import Severity, Status


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


@dataclass(frozen=True, slots=True)
class Event:
    """Base of everything `transition` reports. The caller attaches the endpoint id."""

    kind: ClassVar[str] = "event"
    time_field: ClassVar[str] = "at"  # which field holds the instant the event happened

    @property
    def occurred_at(self) -> datetime:
        value: datetime = getattr(self, self.time_field)
        return value

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: enums as their values, datetimes as ISO 8601 strings; includes "kind"."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            out[f.name] = _json_safe(getattr(self, f.name))
        return out


@dataclass(frozen=True, slots=True)
class StatusChanged(Event):
    kind: ClassVar[str] = "status_changed"
    old: Status
    new: Status
    at: datetime


@dataclass(frozen=True, slots=True)
class VerificationRequested(Event):
    """Run `checks` immediate re-checks and feed each result back through `transition`."""

    kind: ClassVar[str] = "verification_requested"
    checks: int
    at: datetime


@dataclass(frozen=True, slots=True)
class FalseAlarm(Event):
    kind: ClassVar[str] = "false_alarm"
    at: datetime
    failures: int


@dataclass(frozen=True, slots=True)
class OutageDeclared(Event):
    kind: ClassVar[str] = "outage_declared"
    time_field: ClassVar[str] = "declared_at"
    started_at: datetime
    declared_at: datetime
    status: Status
    severity: Severity
    error_kind: str | None
    error: str | None
    failures: int
    verified: bool


@dataclass(frozen=True, slots=True)
class OutageSeverityChanged(Event):
    kind: ClassVar[str] = "outage_severity_changed"
    old: Severity | None
    new: Severity
    at: datetime
    reason: str  # "status" (it got worse) or "duration" (an escalate_after threshold passed)
    outage_id: int | None = None


@dataclass(frozen=True, slots=True)
class OutageResolved(Event):
    """The outage is over. It ended at `resolved_at`, the first UP check of the recovering run, just
    as it started at the first failing check; `decided_at` is the check that completed the run
    (OUTAGE_RECOVERY_THRESHOLD UP checks in a row), when this event happens. `duration_seconds`
    is `resolved_at - started_at`: what SLA figures count."""

    kind: ClassVar[str] = "outage_resolved"
    time_field: ClassVar[str] = "decided_at"
    started_at: datetime
    resolved_at: datetime
    duration_seconds: float
    severity: Severity
    status: Status
    decided_at: datetime
    outage_id: int | None = None  # the state after resolution no longer has it


@dataclass(frozen=True, slots=True)
class FlappingStarted(Event):
    kind: ClassVar[str] = "flapping_started"
    at: datetime
    changes: int


@dataclass(frozen=True, slots=True)
class FlappingStopped(Event):
    kind: ClassVar[str] = "flapping_stopped"
    at: datetime
    changes: int
