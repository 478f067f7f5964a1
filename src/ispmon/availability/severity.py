"""Outage severity: how bad an outage is, from its status, the endpoint's criticality and its age.

Rules (the README copies this table):

1. Base severity by the outage's worst status and the endpoint's criticality:

   ============  ==========  ==========
   criticality   DOWN        DEGRADED
   ============  ==========  ==========
   critical      critical    major
   high          major       minor
   medium        minor       warning
   low           warning     warning
   ============  ==========  ==========

2. Escalation by duration: +1 step (warning → minor → major → critical) for each threshold in
   ``OutagePolicy.escalate_after`` (default 30 min and 4 h) the outage's duration has reached,
   counted from the first failing check. Escalation is capped at **critical** for a DOWN outage and
   at **major** for a DEGRADED one: a slow service is never paged as critical just for being slow
   for a long time.
3. Severity never drops while an outage is open: when the status goes DOWN → DEGRADED the outage
   keeps its worst status and severity. It rises (an ``OutageSeverityChanged`` event, reason
   "status" or "duration") when the worst status gets worse or a duration threshold passes.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ispmon.models import SEVERITY_ORDER, Criticality, Severity, Status

BASE_SEVERITY: dict[tuple[Status, Criticality], Severity] = {
    (Status.DOWN, Criticality.CRITICAL): Severity.CRITICAL,
    (Status.DEGRADED, Criticality.CRITICAL): Severity.MAJOR,
    (Status.DOWN, Criticality.HIGH): Severity.MAJOR,
    (Status.DEGRADED, Criticality.HIGH): Severity.MINOR,
    (Status.DOWN, Criticality.MEDIUM): Severity.MINOR,
    (Status.DEGRADED, Criticality.MEDIUM): Severity.WARNING,
    (Status.DOWN, Criticality.LOW): Severity.WARNING,
    (Status.DEGRADED, Criticality.LOW): Severity.WARNING,
}

# The most an outage of this status can escalate to by duration alone.
SEVERITY_CAP: dict[Status, Severity] = {Status.DOWN: Severity.CRITICAL, Status.DEGRADED: Severity.MAJOR}

_RANK: dict[Severity, int] = {sev: i for i, sev in enumerate(SEVERITY_ORDER)}


class EscalationPolicy(Protocol):
    """Anything with `escalate_after` (an `OutagePolicy`); a Protocol keeps this module import-free."""

    @property
    def escalate_after(self) -> Sequence[float]: ...


def severity_rank(severity: Severity) -> int:
    """0 for warning up to 3 for critical, so severities compare with < and max()."""
    return _RANK[severity]


def max_severity(a: Severity | None, b: Severity) -> Severity:
    if a is None:
        return b
    return a if _RANK[a] >= _RANK[b] else b


def worse_status(a: Status | None, b: Status) -> Status:
    """The worse of two failing statuses (DOWN beats DEGRADED); `a` may be None (nothing seen yet)."""
    if a is Status.DOWN or b is Status.DOWN:
        return Status.DOWN
    return b if a is None else a


def severity_for(
    status: Status, criticality: Criticality, duration_seconds: float, policy: EscalationPolicy
) -> Severity:
    """The severity of an outage whose worst status is `status` after `duration_seconds`.

    Raises ValueError for a status that cannot be an outage (UP, MAINTENANCE, UNKNOWN).
    """
    base = BASE_SEVERITY.get((status, Criticality(criticality)))
    if base is None:
        raise ValueError(f"status: {status!s} is not an outage status (only down or degraded)")
    steps = sum(1 for threshold in policy.escalate_after if duration_seconds >= threshold)
    cap = max(_RANK[base], _RANK[SEVERITY_CAP[status]])
    return SEVERITY_ORDER[min(_RANK[base] + steps, cap)]
