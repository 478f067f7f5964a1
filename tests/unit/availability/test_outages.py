"""The outage state machine, driven by strings of check outcomes: U = up, D = down, G = degraded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

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
    flap_changes,
    restore,
    severity_for,
    transition,
    with_outage_id,
)
from ispmon.config import Settings
from ispmon.models import Criticality, ErrorKind, ProbeResult, Severity, Status

T0 = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)
RESULTS = {
    "U": ProbeResult.up(12.5),
    "D": ProbeResult.down(ErrorKind.TIMEOUT, "timed out after 5s"),
    "G": ProbeResult.degraded(ErrorKind.SLOW, "response time 900 ms > 500 ms"),
}
DEFAULT = OutagePolicy()
NO_VERIFY = OutagePolicy(verification_enabled=False)
NOT_OUTAGE_KINDS = {"status_changed", "flapping_started", "flapping_stopped"}


def run(
    seq: str,
    policy: OutagePolicy = DEFAULT,
    state: EndpointState | None = None,
    *,
    criticality: Criticality = Criticality.MEDIUM,
    maintenance: Any = None,
    start: datetime = T0,
    step: timedelta = STEP,
) -> tuple[EndpointState, list[tuple[int, Event]]]:
    """Feed `seq` through `transition`; events are paired with the index of the check that made them."""
    state = state or EndpointState()
    events: list[tuple[int, Event]] = []
    for i, char in enumerate(seq):
        state, new = transition(state, RESULTS[char], start + i * step, policy, criticality, maintenance)
        events += [(i, event) for event in new]
    return state, events


def outage_kinds(events: list[tuple[int, Event]]) -> list[str]:
    return [e.kind for _, e in events if e.kind not in NOT_OUTAGE_KINDS]


def of_type(events: list[tuple[int, Event]], cls: type) -> list[Any]:
    return [e for _, e in events if isinstance(e, cls)]


VR, OD, FA, OR = "verification_requested", "outage_declared", "false_alarm", "outage_resolved"


@pytest.mark.parametrize(
    ("seq", "policy", "phase", "kinds"),
    [
        pytest.param("UUDD", DEFAULT, Phase.OK, [], id="below-threshold"),
        pytest.param("UUDDD", DEFAULT, Phase.VERIFYING, [VR], id="threshold-reached-verifies"),
        pytest.param("DDUDDUDD", DEFAULT, Phase.OK, [], id="failures-not-consecutive"),
        pytest.param("DDDDD", DEFAULT, Phase.OUTAGE, [VR, OD], id="verification-confirms"),
        pytest.param("DDDU", DEFAULT, Phase.OK, [VR, FA], id="false-alarm-first-recheck"),
        pytest.param("DDDDU", DEFAULT, Phase.OK, [VR, FA], id="false-alarm-second-recheck"),
        pytest.param("DDDDUDDDDD", DEFAULT, Phase.OUTAGE, [VR, FA, VR, OD], id="false-alarm-then-real"),
        pytest.param("DD", NO_VERIFY, Phase.OK, [], id="no-verify-below"),
        pytest.param("DDD", NO_VERIFY, Phase.OUTAGE, [OD], id="no-verify-threshold-exact"),
        pytest.param(
            "D", OutagePolicy(detection_threshold=1, verification_enabled=False), Phase.OUTAGE, [OD]
        ),
        pytest.param("DDD", OutagePolicy(verification_checks=0), Phase.OUTAGE, [OD], id="zero-rechecks"),
        pytest.param("DDDDDU", DEFAULT, Phase.OUTAGE, [VR, OD], id="one-up-does-not-resolve"),
        pytest.param("DDDDDUU", DEFAULT, Phase.OK, [VR, OD, OR], id="recovery-threshold"),
        pytest.param("DDDDDUDUDUDUD", DEFAULT, Phase.OUTAGE, [VR, OD], id="recovery-hysteresis"),
        pytest.param("DDDDDUDUU", DEFAULT, Phase.OK, [VR, OD, OR], id="recovery-after-interruption"),
        pytest.param("DDDUUU", OutagePolicy(recovery_threshold=3), Phase.OK, [VR, FA], id="verify-up"),
        pytest.param("DDDDDUU", OutagePolicy(recovery_threshold=3), Phase.OUTAGE, [VR, OD], id="recovery-3"),
        pytest.param("GGGGG", DEFAULT, Phase.OUTAGE, [VR, OD], id="degraded-is-failing"),
        pytest.param("DGDGD", DEFAULT, Phase.OUTAGE, [VR, OD], id="mixed-failing"),
        pytest.param("DDDDDUUDDDDD", DEFAULT, Phase.OUTAGE, [VR, OD, OR, VR, OD], id="second-outage"),
    ],
)
def test_sequences(seq: str, policy: OutagePolicy, phase: Phase, kinds: list[str]) -> None:
    state, events = run(seq, policy)
    assert state.phase is phase
    assert outage_kinds(events) == kinds


def test_declaration_uses_first_failure_as_start() -> None:
    state, events = run("UUDDDDD")
    (declared,) = of_type(events, OutageDeclared)
    assert declared == OutageDeclared(
        started_at=T0 + 2 * STEP,
        declared_at=T0 + 6 * STEP,
        status=Status.DOWN,
        severity=Severity.MINOR,
        error_kind="timeout",
        error="timed out after 5s",
        failures=5,
        verified=True,
    )
    assert state.outage_started_at == T0 + 2 * STEP and state.outage_id is None
    (requested,) = of_type(events, VerificationRequested)
    assert requested.checks == 2 and requested.at == T0 + 4 * STEP


def test_declaration_without_verification() -> None:
    _, events = run("UDDD", NO_VERIFY)
    (declared,) = of_type(events, OutageDeclared)
    assert (declared.verified, declared.failures, declared.started_at) == (False, 3, T0 + STEP)


def test_false_alarm_resets_counters() -> None:
    state, events = run("DDDDU")
    (alarm,) = of_type(events, FalseAlarm)
    assert alarm == FalseAlarm(at=T0 + 4 * STEP, failures=4)
    assert (state.consecutive_failures, state.verifications_left, state.first_failure_at) == (0, 0, None)
    assert state.status is Status.UP and state.last_error is None


def test_resolution_duration_and_counters() -> None:
    state, events = run("UDDDDDUU")
    (resolved,) = of_type(events, OutageResolved)
    # Ended at the first UP check (index 6), decided at the second (index 7).
    assert resolved == OutageResolved(
        started_at=T0 + STEP,
        resolved_at=T0 + 6 * STEP,
        duration_seconds=300.0,
        severity=Severity.MINOR,
        status=Status.DOWN,
        decided_at=T0 + 7 * STEP,
    )
    assert resolved.occurred_at == T0 + 7 * STEP  # the event log records when it was decided
    assert state == EndpointState(
        status=Status.UP,
        consecutive_successes=2,
        flap_bits=state.flap_bits,
        flap_len=8,
        last_change_at=T0 + 6 * STEP,
    )


@pytest.mark.parametrize(
    ("seq", "policy", "started", "ended", "decided"),
    [
        pytest.param("DDDDDUU", DEFAULT, 0, 5, 6, id="threshold-2"),
        pytest.param("UUDDDDDUU", DEFAULT, 2, 7, 8, id="start-is-first-failure"),
        pytest.param("DDDDDU", OutagePolicy(recovery_threshold=1), 0, 5, 5, id="threshold-1"),
        pytest.param("DDDDDUUU", OutagePolicy(recovery_threshold=3), 0, 5, 7, id="threshold-3"),
        pytest.param("DDDDDUDUU", DEFAULT, 0, 7, 8, id="down-in-between-resets-the-run"),
        pytest.param("DDDDDUGUU", DEFAULT, 0, 7, 8, id="degraded-in-between-resets-the-run"),
        pytest.param(
            "DDDDDUUDUUU", OutagePolicy(recovery_threshold=3), 0, 8, 10, id="threshold-3-interrupted"
        ),
        pytest.param("DDDUU", NO_VERIFY, 0, 3, 4, id="no-verification"),
    ],
)
def test_outage_ends_at_first_up_check_of_the_recovering_run(
    seq: str, policy: OutagePolicy, started: int, ended: int, decided: int
) -> None:
    state, events = run(seq, policy)
    [(index, resolved)] = [(i, e) for i, e in events if isinstance(e, OutageResolved)]
    assert index == decided and state.phase is Phase.OK and state.recovering_since is None
    assert (resolved.started_at, resolved.resolved_at, resolved.decided_at) == (
        T0 + started * STEP,
        T0 + ended * STEP,
        T0 + decided * STEP,
    )
    assert resolved.duration_seconds == (ended - started) * 60.0


def test_recovering_run_is_tracked_and_reset() -> None:
    state, _ = run("DDDDDU", OutagePolicy(recovery_threshold=3))
    assert (state.phase, state.consecutive_successes, state.recovering_since) == (
        Phase.OUTAGE,
        1,
        T0 + 5 * STEP,
    )
    state, _ = run("U", OutagePolicy(recovery_threshold=3), state, start=T0 + 6 * STEP)
    assert (state.consecutive_successes, state.recovering_since) == (2, T0 + 5 * STEP)
    state, _ = run("D", OutagePolicy(recovery_threshold=3), state, start=T0 + 7 * STEP)
    assert (state.consecutive_successes, state.recovering_since) == (0, None)


def test_no_escalation_by_duration_past_the_first_up_check() -> None:
    five = timedelta(minutes=5)
    policy = OutagePolicy(recovery_threshold=3)
    # Declared at 20 min; UP from 25 min: the 30-min step passes while recovering, but the outage
    # ended at 25 min, so it resolves as minor, 25 minutes long.
    _, events = run("DDDDDUUU", policy, step=five)
    assert of_type(events, OutageSeverityChanged) == []
    (resolved,) = of_type(events, OutageResolved)
    assert (resolved.severity, resolved.duration_seconds) == (Severity.MINOR, 25 * 60.0)
    # A DOWN after the 30-min step: the outage goes on, and escalates then.
    _, events = run("DDDDDUUD", policy, step=five)
    assert [(c.new, c.at - T0) for c in of_type(events, OutageSeverityChanged)] == [
        (Severity.MAJOR, timedelta(minutes=35))
    ]


def test_degraded_outage_upgrades_to_down() -> None:
    state, events = run("GGGGG")
    (declared,) = of_type(events, OutageDeclared)
    assert (declared.status, declared.severity, declared.error_kind) == (
        Status.DEGRADED,
        Severity.WARNING,
        "slow",
    )
    state, events = run("D", state=state, start=T0 + 5 * STEP)
    assert of_type(events, OutageSeverityChanged) == [
        OutageSeverityChanged(Severity.WARNING, Severity.MINOR, T0 + 5 * STEP, "status")
    ]
    assert (state.outage_status, state.severity) == (Status.DOWN, Severity.MINOR)
    # Back to DEGRADED: the outage keeps its worst status and severity.
    state, events = run("G", state=state, start=T0 + 6 * STEP)
    assert outage_kinds(events) == [] and (state.outage_status, state.severity) == (
        Status.DOWN,
        Severity.MINOR,
    )
    assert state.status is Status.DEGRADED
    _, events = run("UU", state=state, start=T0 + 7 * STEP)
    assert of_type(events, OutageResolved)[0].status is Status.DOWN


def test_declared_status_is_worst_of_the_run() -> None:
    _, events = run("DDGGG")
    assert of_type(events, OutageDeclared)[0].status is Status.DOWN


@pytest.mark.parametrize(
    ("status", "criticality", "expected"),
    [
        (Status.DOWN, Criticality.CRITICAL, Severity.CRITICAL),
        (Status.DEGRADED, Criticality.CRITICAL, Severity.MAJOR),
        (Status.DOWN, Criticality.HIGH, Severity.MAJOR),
        (Status.DEGRADED, Criticality.HIGH, Severity.MINOR),
        (Status.DOWN, Criticality.MEDIUM, Severity.MINOR),
        (Status.DEGRADED, Criticality.MEDIUM, Severity.WARNING),
        (Status.DOWN, Criticality.LOW, Severity.WARNING),
        (Status.DEGRADED, Criticality.LOW, Severity.WARNING),
    ],
)
def test_severity_table(status: Status, criticality: Criticality, expected: Severity) -> None:
    assert severity_for(status, criticality, 0.0, DEFAULT) is expected
    _, events = run("DDDDD" if status is Status.DOWN else "GGGGG", criticality=criticality)
    assert of_type(events, OutageDeclared)[0].severity is expected


@pytest.mark.parametrize(
    ("status", "criticality", "duration", "expected"),
    [
        (Status.DOWN, Criticality.MEDIUM, 1799.0, Severity.MINOR),
        (Status.DOWN, Criticality.MEDIUM, 1800.0, Severity.MAJOR),
        (Status.DOWN, Criticality.MEDIUM, 14400.0, Severity.CRITICAL),
        (Status.DOWN, Criticality.LOW, 14400.0, Severity.MAJOR),
        (Status.DOWN, Criticality.LOW, 1e9, Severity.MAJOR),  # only two thresholds
        (Status.DOWN, Criticality.HIGH, 1e9, Severity.CRITICAL),  # capped
        (Status.DOWN, Criticality.CRITICAL, 1e9, Severity.CRITICAL),
        (Status.DEGRADED, Criticality.LOW, 1800.0, Severity.MINOR),
        (Status.DEGRADED, Criticality.LOW, 14400.0, Severity.MAJOR),
        (Status.DEGRADED, Criticality.MEDIUM, 14400.0, Severity.MAJOR),
        (Status.DEGRADED, Criticality.HIGH, 14400.0, Severity.MAJOR),  # capped at major
        (Status.DEGRADED, Criticality.CRITICAL, 1e9, Severity.MAJOR),  # base is already the cap
    ],
)
def test_escalation_by_duration(
    status: Status, criticality: Criticality, duration: float, expected: Severity
) -> None:
    assert severity_for(status, criticality, duration, DEFAULT) is expected


@pytest.mark.parametrize("status", [Status.UP, Status.MAINTENANCE, Status.UNKNOWN])
def test_severity_for_rejects_non_outage_status(status: Status) -> None:
    with pytest.raises(ValueError, match="is not an outage status"):
        severity_for(status, Criticality.MEDIUM, 0.0, DEFAULT)


def test_escalation_in_transition_on_failing_and_up_checks() -> None:
    five = timedelta(minutes=5)
    policy = OutagePolicy(recovery_threshold=3)
    # Checks at 0, 5, ..., 20 min declare (minor); 25 min is UP but does not resolve.
    state, events = run("DDDDDU" + "D" * 50, policy, step=five)
    changes = of_type(events, OutageSeverityChanged)
    assert [(c.old, c.new, c.at - T0, c.reason) for c in changes] == [
        (Severity.MINOR, Severity.MAJOR, timedelta(minutes=30), "duration"),
        (Severity.MAJOR, Severity.CRITICAL, timedelta(hours=4), "duration"),
    ]
    # Escalation is evaluated on UP checks during the outage too.
    state, events = run("DDDDD", policy, step=five, criticality=Criticality.LOW)
    state, events = run("U", policy, state, start=T0 + timedelta(minutes=31), criticality=Criticality.LOW)
    assert [(c.old, c.new) for c in of_type(events, OutageSeverityChanged)] == [
        (Severity.WARNING, Severity.MINOR)
    ]


def test_declared_late_is_already_escalated() -> None:
    _, events = run("DDDDD", step=timedelta(minutes=10))  # declared 40 min after the first failure
    assert of_type(events, OutageDeclared)[0].severity is Severity.MAJOR


def test_status_and_duration_rise_in_one_check_gives_one_event() -> None:
    state, _ = run("GGGGG", criticality=Criticality.LOW)
    _, events = run("D", state=state, start=T0 + timedelta(hours=1), criticality=Criticality.LOW)
    # DEGRADED/low after 1 h: minor by duration; DOWN/low after 1 h: minor too -> reason duration.
    assert [(c.old, c.new, c.reason) for c in of_type(events, OutageSeverityChanged)] == [
        (Severity.WARNING, Severity.MINOR, "duration")
    ]
    _, events = run("D", state=state, start=T0 + timedelta(hours=1), criticality=Criticality.HIGH)
    assert [(c.old, c.new, c.reason) for c in of_type(events, OutageSeverityChanged)] == [
        (Severity.WARNING, Severity.CRITICAL, "status")
    ]


def test_status_changed_once_per_change() -> None:
    _, events = run("UUUDDDDDDUUUGGU")
    changes = [(i, e.old, e.new) for i, e in events if isinstance(e, StatusChanged)]
    assert changes == [
        (0, Status.UNKNOWN, Status.UP),
        (3, Status.UP, Status.DOWN),
        (9, Status.DOWN, Status.UP),
        (12, Status.UP, Status.DEGRADED),
        (14, Status.DEGRADED, Status.UP),
    ]


def test_flap_changes_counts_adjacent_differences() -> None:
    assert flap_changes(0b0101, 4) == 3
    assert flap_changes(0b0101, 3) == 2
    assert flap_changes(0b1, 1) == 0


FLAPPY = OutagePolicy(flap_window=10, flap_threshold=4)


def test_flapping_starts_and_stops_with_hysteresis() -> None:
    state, events = run("UDUDU" + "U" * 7, FLAPPY)
    flaps = [(i, type(e), e.changes) for i, e in events if isinstance(e, FlappingStarted | FlappingStopped)]
    # Starts at 4 changes; at index 10 there are 3 (between 2 and 4): still flapping; stops at 2.
    assert flaps == [(4, FlappingStarted, 4), (11, FlappingStopped, 2)]
    assert state.flapping is False and state.flap_len == 10


def test_flapping_does_not_block_outages() -> None:
    state, events = run("UDUDUDDDDD", FLAPPY)
    assert state.flapping is True and state.phase is Phase.OUTAGE
    assert outage_kinds(events) == [VR, OD]


def test_mute_opens_nothing() -> None:
    state, events = run("DDDDDDDD", maintenance="mute")
    assert [e for _, e in events] == [StatusChanged(Status.UNKNOWN, Status.MAINTENANCE, T0)]
    assert (state.phase, state.consecutive_failures, state.status) == (Phase.OK, 0, Status.MAINTENANCE)
    assert state.flap_len == 0  # expected failures are not flapping
    # After the window, counting starts afresh and the status change is reported.
    state, events = run("DD", state=state, start=T0 + 10 * STEP)
    assert [e for _, e in events] == [StatusChanged(Status.MAINTENANCE, Status.DOWN, T0 + 10 * STEP)]
    assert state.consecutive_failures == 2 and state.first_failure_at == T0 + 10 * STEP


def test_mute_cancels_verification_silently() -> None:
    state, _ = run("DDD")
    assert state.phase is Phase.VERIFYING
    state, events = run("D", state=state, maintenance="mute", start=T0 + 3 * STEP)
    assert outage_kinds(events) == [] and state.phase is Phase.OK and state.verifications_left == 0


def test_mute_lets_an_open_outage_resolve_but_not_escalate() -> None:
    state, _ = run("DDDDD")
    later = T0 + timedelta(hours=5)
    state, events = run("DDUDU", state=state, maintenance="mute", start=later)
    assert state.phase is Phase.OUTAGE and outage_kinds(events) == []  # no escalation either
    state, events = run("U", state=state, maintenance="mute", start=later + 5 * STEP)
    assert outage_kinds(events) == [OR] and state.status is Status.MAINTENANCE
    # Ended at the run's first UP (later + 4), the DOWN at later + 3 having reset the earlier one.
    (resolved,) = of_type(events, OutageResolved)
    assert resolved.resolved_at == later + 4 * STEP
    assert resolved.duration_seconds == (later + 4 * STEP - T0).total_seconds()


def test_enter_maintenance_drops_candidate() -> None:
    state, _ = run("UDDD")
    state, events = enter_maintenance(state, T0 + 4 * STEP)
    assert events == [StatusChanged(Status.DOWN, Status.MAINTENANCE, T0 + 4 * STEP)]
    assert (state.phase, state.consecutive_failures, state.first_failure_at) == (Phase.OK, 0, None)
    state2, events = enter_maintenance(state, T0 + 5 * STEP)
    assert events == [] and state2 == state


def test_enter_maintenance_keeps_open_outage() -> None:
    state, _ = run("DDDDD")
    state = with_outage_id(state, 7)
    state, _ = enter_maintenance(state, T0 + 5 * STEP)
    assert (state.phase, state.outage_id, state.status) == (Phase.OUTAGE, 7, Status.MAINTENANCE)
    state, events = run("UU", state=state, start=T0 + 60 * STEP)
    assert events[0][1] == StatusChanged(Status.MAINTENANCE, Status.UP, T0 + 60 * STEP)
    (resolved,) = of_type(events, OutageResolved)
    assert (resolved.outage_id, resolved.duration_seconds) == (7, 60 * 60.0)


def test_restore_with_open_outage() -> None:
    started = T0 - timedelta(hours=1)
    state = restore(OpenOutage(42, started, Status.DOWN, Severity.MAJOR), Status.DOWN, DEFAULT)
    assert (state.phase, state.consecutive_failures, state.outage_id) == (Phase.OUTAGE, 3, 42)
    state, events = run("D", state=state)
    assert events == [] and state.phase is Phase.OUTAGE  # nothing new opens, no status line
    state, events = run("UU", state=state, start=T0 + STEP)
    (resolved,) = of_type(events, OutageResolved)
    assert resolved == OutageResolved(
        started, T0 + STEP, 3600.0 + 60.0, Severity.MAJOR, Status.DOWN, T0 + 2 * STEP, outage_id=42
    )


def test_restore_mid_recovery_keeps_the_first_up_time() -> None:
    # The daemon saw one UP (at T0 + 5) of the two it needs, then restarted; the history says so.
    record = {
        "id": 9,
        "started_at": T0,
        "status": "down",
        "severity": "minor",
        "recovery_checks": 1,
        "recovering_since": T0 + 5 * STEP,
    }
    outage = OpenOutage.from_record(record)
    assert (outage.recovery_checks, outage.recovering_since) == (1, T0 + 5 * STEP)
    state = restore(outage, Status.UP, DEFAULT)
    assert (state.phase, state.consecutive_successes, state.recovering_since) == (
        Phase.OUTAGE,
        1,
        T0 + 5 * STEP,
    )
    # The first UP after the restart completes the run: ended at T0 + 5, not at the restart.
    _, events = run("U", state=state, start=T0 + 30 * STEP)
    (resolved,) = of_type(events, OutageResolved)
    assert (resolved.outage_id, resolved.resolved_at, resolved.decided_at) == (
        9,
        T0 + 5 * STEP,
        T0 + 30 * STEP,
    )
    assert resolved.duration_seconds == 300.0
    # A DOWN after the restart resets the run, as it would have without one.
    state, _ = run("D", state=state, start=T0 + 30 * STEP)
    _, events = run("UU", state=state, start=T0 + 31 * STEP)
    assert of_type(events, OutageResolved)[0].resolved_at == T0 + 31 * STEP
    # No UP recorded since the last failure: nothing to resume.
    plain = OpenOutage.from_record({**record, "recovery_checks": 0, "recovering_since": None})
    assert restore(plain, Status.DOWN, DEFAULT).consecutive_successes == 0


def test_restore_keeps_escalating_from_original_start() -> None:
    record = {"id": 5, "started_at": T0 - timedelta(hours=4), "status": "down", "severity": "major"}
    state = restore(OpenOutage.from_record(record), None, DEFAULT)
    assert state.status is Status.DOWN
    _, events = run("D", state=state)
    assert [(c.new, c.reason, c.outage_id) for c in of_type(events, OutageSeverityChanged)] == [
        (Severity.CRITICAL, "duration", 5)
    ]


@pytest.mark.parametrize(("last", "expected"), [(Status.UP, Status.UP), (None, Status.UNKNOWN)])
def test_restore_without_outage(last: Status | None, expected: Status) -> None:
    state = restore(None, last, DEFAULT)
    assert state == EndpointState(status=expected)
    _, events = run("U", state=state)
    assert len(events) == (0 if last is Status.UP else 1)


def test_with_outage_id_only_while_open() -> None:
    state, _ = run("DDDDD")
    assert with_outage_id(state, 9).outage_id == 9
    resolved, _ = run("UU", state=with_outage_id(state, 9), start=T0 + 5 * STEP)
    assert with_outage_id(resolved, 9) is resolved and resolved.outage_id is None


def test_unknown_result_changes_nothing() -> None:
    state, _ = run("DD")
    assert transition(state, ProbeResult(Status.UNKNOWN), T0, DEFAULT) == (state, [])


def test_events_as_dict_is_json_safe() -> None:
    _, events = run("UDDDDDUU" + "DU" * 4, OutagePolicy(flap_window=10, flap_threshold=4))
    _, more = run("GGGGGD")
    kinds = set()
    for _, event in events + more:
        body = event.as_dict()
        assert json.loads(json.dumps(body)) == body
        assert body["kind"] == event.kind and isinstance(event.occurred_at, datetime)
        kinds.add(event.kind)
    assert kinds == {VR, OD, OR, "status_changed", "flapping_started", "outage_severity_changed"}
    assert OutageDeclared.kind == "outage_declared"
    assert FalseAlarm(T0, 3).as_dict() == {"kind": "false_alarm", "at": T0.isoformat(), "failures": 3}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detection_threshold": 0}, "detection_threshold: must be at least 1"),
        ({"recovery_threshold": 0}, "recovery_threshold: must be at least 1"),
        ({"verification_checks": -1}, "verification_checks: must not be negative"),
        ({"flap_window": 1}, "flap_window: must be at least 2"),
        ({"flap_threshold": 20}, "flap_threshold: must be from 1 to flap_window - 1 (19)"),
        ({"escalate_after": (600.0, 60.0)}, "escalate_after: must be positive seconds in ascending order"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        OutagePolicy(**kwargs)
    assert str(info.value) == message


def test_policy_from_settings() -> None:
    settings = Settings(
        outage_detection_threshold=4, outage_verification_enabled=False, outage_flap_threshold=12
    )
    policy = OutagePolicy.from_settings(settings)
    assert (policy.detection_threshold, policy.verification_enabled, policy.recovery_threshold) == (
        4,
        False,
        2,
    )
    assert (policy.flap_threshold, policy.flap_window) == (12, 25)


def test_the_fast_state_update_equals_dataclasses_replace() -> None:
    import dataclasses

    from ispmon.availability.outages import _updated

    base = EndpointState(status=Status.DOWN, consecutive_failures=2, last_error="x", flap_bits=5)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    every = {
        f.name: value
        for f, value in zip(
            dataclasses.fields(EndpointState),
            (Status.UP, Phase.OUTAGE, 7, 8, 1, now, 42, now, Status.DOWN, Severity.MAJOR, "timeout",
             "err", 3, 4, True, now, Status.DEGRADED, now),
            strict=True,
        )
    }
    for upd in ({}, {"consecutive_successes": 3}, every):
        assert _updated(base, upd) == dataclasses.replace(base, **upd)
    assert _updated(base, {}) is not base


def test_restored_states_without_an_outage_are_shared() -> None:
    policy = OutagePolicy()
    assert restore(None, None, policy) is restore(None, None, policy)
    assert restore(None, Status.DOWN, policy) is restore(None, Status.DOWN, policy)
    assert restore(None, Status.DOWN, policy).status is Status.DOWN
