"""Alert rules: validation naming the field, selectors, metric extraction, threshold evaluation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ispmon.alerts.rules import (
    AlertRule,
    ThresholdBreached,
    ThresholdCleared,
    ThresholdState,
    evaluate_threshold,
    metric_value,
)
from ispmon.models import ErrorKind, ProbeResult, Severity, Status
from ispmon.validation import error_list

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
SLUG = (
    "must be a slug: 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit"
)


def rule(**fields: Any) -> AlertRule:
    data: dict[str, Any] = {"id": "r1", "kind": "threshold", "metric": "response_time_ms", "above": 500}
    data.update(fields)
    return AlertRule.model_validate({k: v for k, v in data.items() if v is not ...})


def outage_rule(**fields: Any) -> AlertRule:
    return AlertRule.model_validate({"id": "o1", "kind": "outage", **fields})


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"id": "Bad Id", "kind": "outage"}, "id", SLUG),
        ({"id": "o", "kind": "page"}, "kind", "Input should be 'outage', 'threshold', 'quota' or 'flow'"),
        ({"id": "o", "kind": "outage", "colour": "red"}, "colour", "unknown field"),
        ({"id": "o", "kind": "outage", "endpoints": ["ok", "Not OK"]}, "endpoints[1]", SLUG),
        ({"id": "o", "kind": "outage", "channels": ["mail", "SMS!"]}, "channels[1]", SLUG),
        ({"id": "o", "kind": "outage", "escalation": "On Call"}, "escalation", SLUG),
        (
            {"id": "o", "kind": "outage", "tags": ["a b"]},
            "tags[0]",
            "String should match pattern '^[A-Za-z0-9_.:-]{1,64}$'",
        ),
        (
            {"id": "o", "kind": "outage", "min_severity": "fatal"},
            "min_severity",
            "Input should be 'critical', 'major', 'minor' or 'warning'",
        ),
        (
            {"id": "o", "kind": "outage", "name": "x" * 201},
            "name",
            "String should have at most 200 characters",
        ),
        (
            {"id": "o", "kind": "outage", "metric": "loss_percent"},
            "metric",
            "only applies to threshold rules",
        ),
        ({"id": "o", "kind": "outage", "above": 5}, "above", "only applies to threshold rules"),
        ({"id": "o", "kind": "outage", "for_minutes": 5}, "for_minutes", "only applies to threshold rules"),
        ({"id": "o", "kind": "outage", "clear_checks": 2}, "clear_checks", "only applies to threshold rules"),
        (
            {"id": "o", "kind": "outage", "channels": ["mail"], "escalation": "oncall"},
            "escalation",
            "give channels or escalation, not both",
        ),
        (
            {"id": "o", "kind": "outage", "channels": []},
            "channels",
            "must not be empty (omit it to use the default channels)",
        ),
        (
            {"id": "o", "kind": "outage", "name": "a\x00b"},
            "name",
            "must not contain NUL characters or invalid UTF-8",
        ),
        (
            {"id": "t", "kind": "threshold", "above": 5},
            "metric",
            "required for a threshold rule (response_time_ms or a details key)",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "Loss%", "above": 5},
            "metric",
            "String should match pattern '^[a-z][a-z0-9_]{0,63}$'",
        ),
        ({"id": "t", "kind": "threshold", "metric": "m"}, "above", "a threshold rule needs above or below"),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "below": 1},
            "below",
            "give above or below, not both",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": float("nan")},
            "above",
            "Input should be a finite number",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "for_checks": 2, "for_minutes": 5},
            "for_minutes",
            "give for_checks or for_minutes, not both",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "for_checks": 0},
            "for_checks",
            "Input should be greater than or equal to 1",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "for_minutes": 10081},
            "for_minutes",
            "Input should be less than or equal to 10080",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "for_minutes": 0},
            "for_minutes",
            "Input should be greater than 0",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "clear_checks": 101},
            "clear_checks",
            "Input should be less than or equal to 100",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "min_severity": "major"},
            "min_severity",
            "only applies to outage rules",
        ),
        (
            {"id": "t", "kind": "threshold", "metric": "m", "above": 5, "notify_escalated": False},
            "notify_escalated",
            "only applies to outage rules",
        ),
    ],
)
def test_invalid_rules_name_the_field(data: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertRule.model_validate(data)
    assert error_list(info.value) == [{"field": field, "message": message}]


def test_config_prefix_names_the_rule() -> None:
    with pytest.raises(ValidationError) as info:
        AlertRule.model_validate({"id": "t", "kind": "threshold", "metric": "m"})
    assert error_list(info.value, prefix="alert_rules[3]") == [
        {"field": "alert_rules[3].above", "message": "a threshold rule needs above or below"}
    ]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, {"severity": Severity.MINOR, "for_checks": 1, "for_minutes": None, "clear_checks": 1}),
        ({"severity": "critical"}, {"severity": Severity.CRITICAL, "for_checks": 1}),
        ({"for_minutes": 5}, {"for_checks": None, "for_minutes": 5.0}),
        ({"for_checks": 3, "clear_checks": 2}, {"for_checks": 3, "clear_checks": 2}),
        ({"above": None, "below": 14, "metric": "cert_days_left"}, {"above": None, "below": 14.0}),
        ({"id": "  slow-web  ", "name": " Slow web "}, {"id": "slow-web", "name": "Slow web"}),
    ],
)
def test_threshold_defaults(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    made = rule(**fields)
    assert {k: getattr(made, k) for k in expected} == expected


def test_outage_rule_defaults() -> None:
    made = outage_rule()
    flags = (made.severity, made.for_checks, made.notify_escalated, made.notify_resolved)
    assert flags == (None, None, True, True)
    assert made.alert_severity(Severity.MAJOR) is Severity.MAJOR
    assert outage_rule(severity="warning").alert_severity(Severity.CRITICAL) is Severity.WARNING
    with pytest.raises(ValueError, match="needs the outage's severity"):
        made.alert_severity()


def test_rule_is_frozen_and_round_trips() -> None:
    made = rule(for_minutes=5, channels=["mail"])
    with pytest.raises(ValidationError):
        made.above = 1  # type: ignore[misc]
    assert AlertRule.model_validate(made.model_dump(mode="json")) == made
    # A dumped outage rule carries clear_checks=1 and a threshold rule notify_escalated=True: both
    # are the defaults, so the API's own output validates again.
    made = outage_rule(min_severity="major", escalation="noc")
    assert AlertRule.model_validate(made.model_dump(mode="json")) == made


# ---------------------------------------------------------------- selectors


@pytest.mark.parametrize(
    ("fields", "endpoint", "tags", "expected"),
    [
        ({}, "web-1", [], True),  # no selector: every endpoint
        ({"endpoints": ["web-1"]}, "web-1", [], True),
        ({"endpoints": ["web-1"]}, "web-2", ["core"], False),
        ({"tags": ["core", "edge"]}, "web-2", ["edge"], True),  # ANY of the tags
        ({"tags": ["core"]}, "web-2", ["edge", "dc1"], False),
        ({"tags": ["core"]}, "web-2", [], False),
        ({"endpoints": ["web-1"], "tags": ["core"]}, "web-2", ["core"], True),  # endpoints OR tags
        ({"endpoints": ["web-1"], "tags": ["core"]}, "web-1", [], True),
        ({"enabled": False}, "web-1", [], False),  # a disabled rule matches nothing
        ({"enabled": False, "endpoints": ["web-1"]}, "web-1", [], False),
    ],
)
def test_matches(fields: dict[str, Any], endpoint: str, tags: list[str], expected: bool) -> None:
    assert outage_rule(**fields).matches(endpoint, iter(tags)) is expected


@pytest.mark.parametrize(
    ("min_severity", "severity", "expected"),
    [
        (None, Severity.WARNING, True),
        ("major", Severity.WARNING, False),
        ("major", Severity.MINOR, False),
        ("major", Severity.MAJOR, True),  # at or above
        ("major", Severity.CRITICAL, True),
        ("critical", Severity.MAJOR, False),
        ("warning", Severity.WARNING, True),
        ("minor", "critical", True),  # a plain string from a stored event
    ],
)
def test_severity_matches(min_severity: str | None, severity: Severity, expected: bool) -> None:
    assert outage_rule(min_severity=min_severity).severity_matches(severity) is expected


# ---------------------------------------------------------------- metric_value


@pytest.mark.parametrize(
    ("metric", "result", "expected"),
    [
        ("response_time_ms", ProbeResult.up(812.5), 812.5),
        ("response_time_ms", ProbeResult.down(ErrorKind.TIMEOUT, "no answer"), None),
        ("loss_percent", ProbeResult.up(3.0, loss_percent=20), 20.0),
        ("rtt_avg_ms", ProbeResult.up(3.0, rtt_avg_ms=3.25), 3.25),
        ("cert_days_left", ProbeResult.up(10.0, cert_days_left=0), 0.0),
        ("cert_days_left", ProbeResult.up(10.0), None),  # missing
        ("tls", ProbeResult.up(10.0, tls=True), None),  # bool is not a number
        ("version", ProbeResult.up(10.0, version="1.2"), None),
        ("loss_percent", ProbeResult.up(1.0, loss_percent=float("nan")), None),
        ("loss_percent", ProbeResult.up(1.0, loss_percent=float("inf")), None),
        ("answers", ProbeResult.up(1.0, answers=[1, 2]), None),
        (
            "response_time_ms",
            ProbeResult(Status.UP, 1.0, details={"response_time_ms": 99}),
            1.0,
        ),  # the field, not details
    ],
)
def test_metric_value(metric: str, result: ProbeResult, expected: float | None) -> None:
    assert metric_value(metric, result) == expected


# ---------------------------------------------------------------- evaluate_threshold

Step = tuple[float, float | None, str | None]  # minutes after T0, value, expected event kind


def run(
    made: AlertRule, steps: list[Step]
) -> tuple[ThresholdState, list[ThresholdBreached | ThresholdCleared]]:
    state, events = ThresholdState(), []
    for minutes, value, expected in steps:
        state, event = evaluate_threshold(made, state, value, T0 + timedelta(minutes=minutes))
        assert (event.kind if event else None) == expected, (minutes, value, state)
        if event:
            events.append(event)
    return state, events


B, C = "threshold_breached", "threshold_cleared"

TIMELINES: list[tuple[str, dict[str, Any], list[Step]]] = [
    ("one check fires at once", {}, [(0, 400, None), (1, 501, B), (2, 900, None), (3, 100, C)]),
    ("equal to the limit is in range", {}, [(0, 500, None), (1, 500, None)]),
    (
        "3 consecutive checks",
        {"for_checks": 3},
        [(0, 600, None), (1, 600, None), (2, 600, B), (3, 600, None)],
    ),
    (
        "an in-range value resets the run",
        {"for_checks": 3},
        [(0, 600, None), (1, 600, None), (2, 100, None), (3, 600, None), (4, 600, None), (5, 600, B)],
    ),
    (
        "no data neither fires, clears nor resets",
        {"for_checks": 2},
        [(0, 600, None), (1, None, None), (2, 600, B), (3, None, None), (4, 100, C)],
    ),
    (
        "for_minutes: a single check never fires early",
        {"for_minutes": 5},
        [(0, 600, None), (4, 600, None), (4.99, 600, None), (5, 600, B)],
    ),
    (
        "for_minutes: fires on the first check at or after since+D",
        {"for_minutes": 5},
        [(0, 600, None), (7, 601, B)],
    ),
    (
        "for_minutes: the run restarts after an in-range value",
        {"for_minutes": 5},
        [(0, 600, None), (3, 100, None), (4, 600, None), (8, 600, None), (9, 600, B)],
    ),
    (
        "hysteresis: clear_checks consecutive in-range values",
        {"clear_checks": 3},
        [
            (0, 600, B),
            (1, 100, None),
            (2, 100, None),
            (3, 700, None),
            (4, 100, None),
            (5, 100, None),
            (6, 90, C),
        ],
    ),
    (
        "below: certificate expiry under 14 days",
        {"metric": "cert_days_left", "above": ..., "below": 14, "for_checks": 2},
        [(0, 20, None), (1, 13, None), (2, 12, B), (3, 14, C)],
    ),
    ("fires again after clearing", {}, [(0, 600, B), (1, 100, C), (2, 600, B)]),
]


@pytest.mark.parametrize(("fields", "steps"), [t[1:] for t in TIMELINES], ids=[t[0] for t in TIMELINES])
def test_threshold_timelines(fields: dict[str, Any], steps: list[Step]) -> None:
    run(rule(**fields), steps)


def test_breach_and_clear_carry_since_checks_peak_duration() -> None:
    made = rule(for_checks=2, clear_checks=2)
    state, events = run(
        made, [(0, 100, None), (1, 700, None), (2, 950, B), (3, 800, None), (4, 100, None), (5, 200, C)]
    )
    breached, cleared = events
    assert breached == ThresholdBreached(
        value=950.0, since=T0 + timedelta(minutes=1), checks=2, peak=950.0, at=T0 + timedelta(minutes=2)
    )
    assert cleared == ThresholdCleared(
        value=200.0,
        since=T0 + timedelta(minutes=1),
        cleared_at=T0 + timedelta(minutes=5),
        duration_seconds=240.0,
        peak=950.0,
    )
    assert state == ThresholdState()
    assert breached.as_dict() == {
        "kind": "threshold_breached",
        "value": 950.0,
        "since": "2024-06-01T10:01:00+00:00",
        "checks": 2,
        "peak": 950.0,
        "at": "2024-06-01T10:02:00+00:00",
    }
    assert cleared.as_dict()["kind"] == "threshold_cleared"
    assert cleared.occurred_at == T0 + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("fields", "values", "peak"),
    [
        ({}, [600, 900, 700], 900.0),  # above: the highest is the worst
        ({"metric": "cert_days_left", "above": ..., "below": 14}, [10, 3, 7], 3.0),  # below: the lowest
    ],
)
def test_peak_is_the_worst_value(fields: dict[str, Any], values: list[float], peak: float) -> None:
    made, state = rule(**fields), ThresholdState()
    for minute, value in enumerate(values):
        state, _ = evaluate_threshold(made, state, value, T0 + timedelta(minutes=minute))
    assert (state.firing, state.count, state.peak, state.since) == (True, 3, peak, T0)


def test_state_transitions_in_detail() -> None:
    made = rule(for_checks=2, clear_checks=2)
    s1, _ = evaluate_threshold(made, ThresholdState(), 600, T0)
    assert s1 == ThresholdState(count=1, since=T0, firing=False, clear_count=0, peak=600.0)
    s2, _ = evaluate_threshold(made, s1, 650, T0 + timedelta(minutes=1))
    assert s2 == ThresholdState(count=2, since=T0, firing=True, clear_count=0, peak=650.0)
    s3, _ = evaluate_threshold(made, s2, 100, T0 + timedelta(minutes=2))
    assert s3 == ThresholdState(count=2, since=T0, firing=True, clear_count=1, peak=650.0)
    s4, _ = evaluate_threshold(made, s3, 550, T0 + timedelta(minutes=3))
    assert s4 == ThresholdState(count=3, since=T0, firing=True, clear_count=0, peak=650.0)
    same, event = evaluate_threshold(made, s4, None, T0 + timedelta(minutes=4))
    assert (same, event) == (s4, None)
