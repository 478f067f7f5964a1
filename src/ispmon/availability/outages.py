"""The per-endpoint outage state machine: check results in, new state and events out.

``transition(state, result, now, policy) -> (state, events)`` is pure: no clock, no I/O. The
scheduler keeps one `EndpointState` per endpoint, feeds every check result through it and acts on
the events (log, store, notify). Restarts resume from the database through `restore`.

Phases::

    OK --(detection_threshold failing checks)--> VERIFYING --(verification_checks more fail)--> OUTAGE
     ^                                              | an UP check: FalseAlarm                   |
     +----------------------------------------------+                                           |
     +------------------------(recovery_threshold UP checks in a row): OutageResolved ----------+

* A failing check is DOWN or DEGRADED. The outage starts at the first failing check of the run
  (not when it is declared), and its status is the worst seen (DOWN beats DEGRADED).
* Symmetrically, it ends at the first UP check of the recovering run (not when the resolution is
  decided, `recovery_threshold` UP checks later): `resolved_at` and `duration_seconds` count to
  that check, and a failing check in between starts the run afresh. Severity escalation by
  duration, while recovering, is judged at that first UP check too, so a resolved outage never
  carries a severity its own duration does not justify.
* With verification disabled (or verification_checks = 0) the outage is declared at the threshold.
* Severity (table, escalation by duration, caps) is documented in `ispmon.availability.severity`; in short:
  base by (status, criticality), +1 step per `escalate_after` threshold passed, capped at critical
  for DOWN and major for DEGRADED, never dropping while the outage is open.
* Flapping: the last `flap_window` outcomes are kept as bits; `flap_threshold` or more up<->failing
  changes start flapping, `flap_threshold // 2` or fewer stop it. Flapping is reported only; it
  does not hold back or close outages.
* Maintenance "mute" (the probe ran): the effective status is MAINTENANCE, failures do not count
  and no outage opens; an already open outage still resolves on UP checks and stays open on
  failures, but does not escalate (the failures are expected). Muted outcomes are not added to the
  flap history, for the same reason. "skip" (the probe did not run): `enter_maintenance`.
* A result whose status is neither UP, DEGRADED nor DOWN carries no information about the target
  and leaves the state unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from ispmon.availability.outage_events import (
    Event,
    FalseAlarm,
    FlappingStarted,
    FlappingStopped,
    OutageDeclared,
    OutageResolved,
    OutageSeverityChanged,
    StatusChanged,
    VerificationRequested,
)
from ispmon.availability.severity import max_severity, severity_for, worse_status
from ispmon.models import Criticality, ProbeResult, Severity, Status

__all__ = [
    "EndpointState",
    "Event",
    "FalseAlarm",
    "FlappingStarted",
    "FlappingStopped",
    "OpenOutage",
    "OutageDeclared",
    "OutagePolicy",
    "OutageResolved",
    "OutageSeverityChanged",
    "Phase",
    "StatusChanged",
    "VerificationRequested",
    "enter_maintenance",
    "flap_changes",
    "restore",
    "severity_for",
    "transition",
    "with_outage_id",
]

MaintenanceMode = Literal["skip", "mute"]
_CHECK_STATUSES = frozenset({Status.UP, Status.DEGRADED, Status.DOWN})


class Phase(StrEnum):
    OK = "ok"
    VERIFYING = "verifying"
    OUTAGE = "outage"


@dataclass(frozen=True, slots=True)
class OutagePolicy:
    detection_threshold: int = 3  # OUTAGE_DETECTION_THRESHOLD consecutive failing checks
    verification_enabled: bool = True  # OUTAGE_VERIFICATION_ENABLED
    verification_checks: int = 2  # immediate re-checks that must ALL fail before declaring
    recovery_threshold: int = 2  # consecutive UP checks to resolve
    flap_window: int = 20  # last N check outcomes considered for flapping
    flap_threshold: int = 6  # >= this many changes in the window start flapping; <= half stop it
    escalate_after: tuple[float, ...] = (1800.0, 14400.0)  # seconds; severity rises one step at each

    def __post_init__(self) -> None:
        if self.detection_threshold < 1:
            raise ValueError("detection_threshold: must be at least 1")
        if self.verification_checks < 0:
            raise ValueError("verification_checks: must not be negative")
        if self.recovery_threshold < 1:
            raise ValueError("recovery_threshold: must be at least 1")
        if self.flap_window < 2:
            raise ValueError("flap_window: must be at least 2")
        if not 1 <= self.flap_threshold < self.flap_window:
            # A window of N outcomes holds at most N-1 changes; a higher threshold could never fire.
            raise ValueError(f"flap_threshold: must be from 1 to flap_window - 1 ({self.flap_window - 1})")
        steps = list(self.escalate_after)
        if any(t <= 0 for t in steps) or steps != sorted(steps):
            raise ValueError("escalate_after: must be positive seconds in ascending order")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> OutagePolicy:
        """Build from `ispmon.config.Settings` (duck-typed, so this module stays import-free)."""
        values: dict[str, Any] = {
            "detection_threshold": settings.outage_detection_threshold,
            "verification_enabled": settings.outage_verification_enabled,
            "verification_checks": settings.outage_verification_checks,
            "recovery_threshold": settings.outage_recovery_threshold,
            "flap_threshold": settings.outage_flap_threshold,
        }
        values.update(overrides)
        flap_window = values.get("flap_window", OutagePolicy().flap_window)
        # OUTAGE_FLAP_THRESHOLD may be up to 50; widen the window so such a threshold can fire.
        values["flap_window"] = max(flap_window, values["flap_threshold"] * 2 + 1)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class EndpointState:
    status: Status = Status.UNKNOWN  # the effective status users see
    phase: Phase = Phase.OK
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    verifications_left: int = 0
    first_failure_at: datetime | None = None  # first failing check of the current run = outage start
    outage_id: int | None = None  # set by the I/O layer after it stores the outage
    outage_started_at: datetime | None = None
    outage_status: Status | None = None  # worst status seen in the outage (DOWN > DEGRADED)
    severity: Severity | None = None
    last_error_kind: str | None = None  # of the latest check; None after an UP check
    last_error: str | None = None
    flap_bits: int = 0  # bit i = 1 if the i-th most recent outcome was failing
    flap_len: int = 0
    flapping: bool = False
    last_change_at: datetime | None = None
    run_status: Status | None = None  # worst status of the current failing run, before it is declared
    # First UP check of the current recovering run while an outage is open (None when the latest
    # check failed): the outage's end if the run reaches recovery_threshold.
    recovering_since: datetime | None = None


# `replace(state, **upd)` builds the keyword call, walks `fields()` and runs the frozen __init__:
# about half the cost of a whole transition, paid by every check. `_updated` writes the slots
# straight through their descriptors, in straight-line code generated once from the field list
# (as dataclasses generates __init__): about a quarter of replace's time (bench/bookkeeping.py).
def _make_updated() -> Any:
    names = [f.name for f in fields(EndpointState)]
    env: dict[str, Any] = {"_new": object.__new__, "_cls": EndpointState}
    lines = ["def _updated(state, upd):", "    new = _new(_cls)", "    get = upd.get"]
    for name in names:
        env[f"_set_{name}"] = getattr(EndpointState, name).__set__
        lines.append(f"    _set_{name}(new, get({name!r}, state.{name}))")
    lines.append("    return new")
    exec("\n".join(lines), env)  # the code is built from our own field names, nothing else
    updated: Any = env["_updated"]
    updated.__doc__ = "`dataclasses.replace(state, **upd)`, faster; `upd` holds field names only."
    return updated


_updated = _make_updated()


@dataclass(frozen=True, slots=True)
class OpenOutage:
    """An outage the database says is still open, used by `restore` after a restart.

    `recovery_checks` and `recovering_since` describe the UP checks recorded since the outage's
    latest failing check (the recovering run the restart interrupted), so that the run's count and
    its first UP time, which is the outage's end, survive the restart.
    """

    id: int
    started_at: datetime
    status: Status
    severity: Severity
    recovery_checks: int = 0
    recovering_since: datetime | None = None

    @classmethod
    def from_record(cls, row: Any) -> OpenOutage:
        """From a mapping with id, started_at, status and severity (e.g. an asyncpg Record), and
        optionally recovery_checks and recovering_since (`OutageRepo.open_outages` adds them)."""
        keys = set(row.keys())
        checks = row["recovery_checks"] if "recovery_checks" in keys else 0
        since = row["recovering_since"] if "recovering_since" in keys else None
        return cls(
            row["id"],
            row["started_at"],
            Status(row["status"]),
            Severity(row["severity"]),
            int(checks or 0) if since is not None else 0,
            since if checks else None,
        )


def flap_changes(bits: int, length: int) -> int:
    """Number of up<->failing changes between adjacent outcomes among the `length` most recent."""
    if length < 2:
        return 0
    # Bit i of bits ^ (bits >> 1) is 1 when outcome i differs from outcome i+1.
    return ((bits ^ (bits >> 1)) & ((1 << (length - 1)) - 1)).bit_count()


@dataclass(slots=True)
class _Step:
    """One transition in progress: the old state, the field updates so far and the events."""

    state: EndpointState
    now: datetime
    policy: OutagePolicy
    criticality: Criticality
    upd: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def finish(self) -> tuple[EndpointState, list[Event]]:
        return (_updated(self.state, self.upd) if self.upd else self.state), self.events

    def set_status(self, status: Status) -> None:
        if status is not self.state.status:
            self.events.append(StatusChanged(self.state.status, status, self.now))
            self.upd.update(status=status, last_change_at=self.now)

    def reset_candidate(self, successes: int) -> None:
        self.upd.update(
            phase=Phase.OK,
            consecutive_failures=0,
            consecutive_successes=successes,
            verifications_left=0,
            first_failure_at=None,
            run_status=None,
            recovering_since=None,
        )

    def declare(self, run_status: Status, started: datetime, failures: int, verified: bool) -> None:
        sev = severity_for(run_status, self.criticality, (self.now - started).total_seconds(), self.policy)
        self.upd.update(
            phase=Phase.OUTAGE,
            verifications_left=0,
            consecutive_successes=0,
            outage_id=None,
            outage_started_at=started,
            outage_status=run_status,
            severity=sev,
        )
        kind, error = self.upd.get("last_error_kind"), self.upd.get("last_error")
        self.events.append(
            OutageDeclared(started, self.now, run_status, sev, kind, error, failures, verified)
        )

    def escalate(self, new_status: Status) -> None:
        s = self.state
        old_status = s.outage_status or new_status
        started = s.outage_started_at or s.first_failure_at or self.now
        # While recovering, the outage would end at the run's first UP check: judge its duration
        # there, or a resolved outage could carry a severity its own duration does not justify.
        until = self.upd.get("recovering_since", s.recovering_since) or self.now
        duration = (until - started).total_seconds()
        crit, policy = self.criticality, self.policy
        by_duration = max_severity(s.severity, severity_for(old_status, crit, duration, policy))
        target = max_severity(by_duration, severity_for(new_status, crit, duration, policy))
        if target is not s.severity:
            reason = "status" if target is not by_duration else "duration"
            self.events.append(OutageSeverityChanged(s.severity, target, self.now, reason, s.outage_id))
            self.upd["severity"] = target
        if new_status is not s.outage_status:
            self.upd["outage_status"] = new_status

    def recovering_since(self) -> datetime:
        """The first UP check of the recovering run this (UP) check belongs to."""
        s = self.state
        return s.recovering_since if s.consecutive_successes and s.recovering_since else self.now

    def resolve(self) -> None:
        """This UP check completes the recovering run: the outage ended at the run's first UP check."""
        s = self.state
        started = s.outage_started_at or s.first_failure_at or self.now
        ended = max(self.recovering_since(), started)
        status = s.outage_status or Status.DOWN
        severity = s.severity or severity_for(status, self.criticality, 0.0, self.policy)
        duration = (ended - started).total_seconds()
        self.events.append(OutageResolved(started, ended, duration, severity, status, self.now, s.outage_id))
        self.upd.update(outage_id=None, outage_started_at=None, outage_status=None, severity=None)
        self.reset_candidate(successes=s.consecutive_successes + 1)

    def record_flap(self, failing: bool) -> None:
        s, window = self.state, self.policy.flap_window
        bits = ((s.flap_bits << 1) | failing) & ((1 << window) - 1)
        length = min(s.flap_len + 1, window)
        changes = flap_changes(bits, length)
        self.upd.update(flap_bits=bits, flap_len=length)
        if not s.flapping and changes >= self.policy.flap_threshold:
            self.upd["flapping"] = True
            self.events.append(FlappingStarted(self.now, changes))
        elif s.flapping and changes <= self.policy.flap_threshold // 2:
            self.upd["flapping"] = False
            self.events.append(FlappingStopped(self.now, changes))


def _in_ok(step: _Step, status: Status) -> None:
    s, policy = step.state, step.policy
    if not status.failing:
        step.reset_candidate(successes=s.consecutive_successes + 1)
        return
    run = worse_status(s.run_status if s.consecutive_failures else None, status)
    failures = s.consecutive_failures + 1
    step.upd.update(
        consecutive_failures=failures,
        consecutive_successes=0,
        first_failure_at=s.first_failure_at if s.consecutive_failures else step.now,
        run_status=run,
    )
    if failures < policy.detection_threshold:
        return
    if policy.verification_enabled and policy.verification_checks > 0:
        step.upd.update(phase=Phase.VERIFYING, verifications_left=policy.verification_checks)
        step.events.append(VerificationRequested(policy.verification_checks, step.now))
    else:
        step.declare(run, step.upd["first_failure_at"], failures, verified=False)


def _in_verifying(step: _Step, status: Status) -> None:
    s = step.state
    if not status.failing:
        step.events.append(FalseAlarm(step.now, s.consecutive_failures))
        step.reset_candidate(successes=1)
        return
    run = worse_status(s.run_status, status)
    left = s.verifications_left - 1
    failures = s.consecutive_failures + 1
    step.upd.update(consecutive_failures=failures, verifications_left=max(left, 0), run_status=run)
    if left <= 0:
        step.declare(run, s.first_failure_at or step.now, failures, verified=True)


def _in_outage(step: _Step, status: Status) -> None:
    s = step.state
    if status.failing:
        step.upd.update(
            consecutive_failures=s.consecutive_failures + 1, consecutive_successes=0, recovering_since=None
        )
        step.escalate(worse_status(s.outage_status, status))
        return
    successes = s.consecutive_successes + 1
    if successes >= step.policy.recovery_threshold:
        step.resolve()
        return
    step.upd.update(
        consecutive_successes=successes, consecutive_failures=0, recovering_since=step.recovering_since()
    )
    step.escalate(s.outage_status or Status.DOWN)


_PHASES = {Phase.OK: _in_ok, Phase.VERIFYING: _in_verifying, Phase.OUTAGE: _in_outage}


def _muted(step: _Step, status: Status) -> None:
    s = step.state
    if s.phase is not Phase.OUTAGE:
        # A pending candidate is dropped silently: the failures were expected, so no FalseAlarm.
        step.reset_candidate(successes=0 if status.failing else s.consecutive_successes + 1)
    elif status.failing:
        step.upd.update(consecutive_successes=0, recovering_since=None)
    elif s.consecutive_successes + 1 >= step.policy.recovery_threshold:
        step.resolve()
    else:
        step.upd.update(
            consecutive_successes=s.consecutive_successes + 1, recovering_since=step.recovering_since()
        )


def transition(
    state: EndpointState,
    result: ProbeResult,
    now: datetime,
    policy: OutagePolicy,
    criticality: Criticality = Criticality.MEDIUM,
    maintenance: MaintenanceMode | None = None,
) -> tuple[EndpointState, list[Event]]:
    """Apply one check result. `maintenance` is the mode of an active window, or None.

    "skip" here is treated like "mute": the caller should not have probed (it calls
    `enter_maintenance` instead), but a result that arrives anyway, e.g. from a check that was in
    flight when the window began, is better used than dropped.
    """
    status = result.status
    if status not in _CHECK_STATUSES:
        return state, []
    step = _Step(state, now, policy, criticality)
    if status.failing:
        kind = result.error_kind
        step.upd.update(last_error_kind=None if kind is None else str(kind), last_error=result.error)
    elif state.last_error_kind is not None or state.last_error is not None:
        step.upd.update(last_error_kind=None, last_error=None)
    step.set_status(Status.MAINTENANCE if maintenance else status)
    if maintenance:
        _muted(step, status)
    else:
        step.record_flap(status.failing)
        _PHASES[state.phase](step, status)
    return step.finish()


def enter_maintenance(state: EndpointState, now: datetime) -> tuple[EndpointState, list[Event]]:
    """A "skip" window is active and the probe did not run: show MAINTENANCE, drop any candidate.

    An open outage stays open (its id, start and severity are kept) and resolves on the UP checks
    after the window.
    """
    step = _Step(state, now, OutagePolicy(), Criticality.MEDIUM)
    step.set_status(Status.MAINTENANCE)
    if state.phase is not Phase.OUTAGE and (state.consecutive_failures or state.phase is Phase.VERIFYING):
        step.reset_candidate(successes=state.consecutive_successes)
    return step.finish()


_FRESH = {status: EndpointState(status=status) for status in Status}


def restore(
    open_outage: OpenOutage | None, last_status: Status | None, policy: OutagePolicy
) -> EndpointState:
    """The state of an endpoint after a restart, from what the database remembers.

    With an open outage it resumes in OUTAGE with that outage's id, start and severity, and with
    `detection_threshold` failures already counted: the next failing check opens nothing new and
    `recovery_threshold` UP checks resolve it, the duration counting from the original start. A
    recovering run the restart interrupted resumes with its count and its first UP time (the
    outage's end if the run completes); without one, counting starts at the next check.
    """
    if open_outage is None:
        # States are frozen: every endpoint without an outage starts from one shared object per
        # status (176 bytes each otherwise; the first check replaces it).
        return _FRESH[Status(last_status) if last_status else Status.UNKNOWN]
    recovering = open_outage.recovering_since if open_outage.recovery_checks > 0 else None
    return EndpointState(
        status=Status(last_status) if last_status else open_outage.status,
        phase=Phase.OUTAGE,
        consecutive_failures=0 if recovering else policy.detection_threshold,
        consecutive_successes=open_outage.recovery_checks if recovering else 0,
        recovering_since=recovering,
        first_failure_at=open_outage.started_at,
        outage_id=open_outage.id,
        outage_started_at=open_outage.started_at,
        outage_status=open_outage.status,
        severity=open_outage.severity,
    )


def with_outage_id(state: EndpointState, outage_id: int) -> EndpointState:
    """Record the id the database gave the declared outage.

    A no-op when the outage is no longer open (it resolved while the insert was in flight); the
    caller then closes the stored row itself, using the `OutageResolved` event it already has.
    """
    if state.phase is not Phase.OUTAGE or state.outage_id == outage_id:
        return state
    return replace(state, outage_id=outage_id)
