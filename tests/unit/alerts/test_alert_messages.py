"""Alert messages: exact titles, bodies and short texts; the 160-character limit under any input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.alerts.messages import Message, format_duration, outage_message, test_message, threshold_message

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
LINK = "https://mon.example/api/v1/"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "0s"),
        (0, "0s"),
        (45, "45s"),
        (59.9, "59s"),
        (60, "1m"),
        (12 * 60 + 30, "12m"),
        (3599, "59m"),
        (3600, "1h 00m"),
        (3600 + 5 * 60, "1h 05m"),
        (23 * 3600 + 59 * 60 + 59, "23h 59m"),
        (86400, "1d 00h"),
        (2 * 86400 + 3 * 3600 + 59 * 60, "2d 03h"),
        (400 * 86400, "400d 00h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def outage(event: str, **fields: Any) -> Message:
    data: dict[str, Any] = {
        "endpoint_id": "core-router",
        "endpoint_name": "Core router",
        "severity": "critical",
        "status": "down",
        "error_kind": "timeout",
        "error": "no answer within 5s",
        "started_at": T0,
        "now": T0 + timedelta(minutes=65),
        "duration_seconds": None,
        "outage_id": 42,
        "alert_id": 7,
        "link_base": LINK,
    }
    data.update(fields)
    return outage_message(event, **data)  # type: ignore[arg-type]


OUTAGE_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "declared",
        {"now": T0 + timedelta(minutes=12)},
        "[CRITICAL] DOWN: Core router (core-router)",
        "[CRITICAL] DOWN Core router for 12m - timeout: no answer within 5s https://mon.example/api/v1/outages/42",
    ),
    (
        "declared",
        {"status": "degraded", "severity": "minor", "error_kind": "slow", "error": None, "link_base": None},
        "[MINOR] DEGRADED: Core router (core-router)",
        "[MINOR] DEGRADED Core router for 1h 05m - slow",
    ),
    (
        "step",
        {"now": T0 + timedelta(minutes=15), "step": 1},
        "[CRITICAL] STILL DOWN: Core router (core-router)",
        "[CRITICAL] STILL DOWN Core router after 15m (step 2) - timeout: no answer within 5s"
        " https://mon.example/api/v1/outages/42",
    ),
    (
        "reminder",
        {"now": T0 + timedelta(minutes=90), "reminder": 1, "link_base": None},
        "[CRITICAL] STILL DOWN: Core router (core-router)",
        "[CRITICAL] STILL DOWN Core router after 1h 30m (reminder 1) - timeout: no answer within 5s",
    ),
    (
        "escalated",
        {"now": T0 + timedelta(minutes=30)},
        "[CRITICAL] ESCALATED DOWN: Core router (core-router)",
        "[CRITICAL] ESCALATED DOWN Core router for 30m - timeout: no answer within 5s"
        " https://mon.example/api/v1/outages/42",
    ),
    (
        "resolved",
        {"duration_seconds": 3900.0, "now": T0 + timedelta(hours=5)},  # the given duration wins
        "[CRITICAL] RESOLVED: Core router (core-router) after 1h 05m",
        "[CRITICAL] RESOLVED Core router after 1h 05m https://mon.example/api/v1/outages/42",
    ),
    (
        "acknowledged",
        {"error_kind": None, "error": None, "outage_id": None},
        "[CRITICAL] ACKNOWLEDGED: Core router (core-router)",
        "[CRITICAL] ACKNOWLEDGED Core router, DOWN for 1h 05m https://mon.example/api/v1/alerts/7",
    ),
    (
        "acknowledged",
        {"link_base": ""},
        "[CRITICAL] ACKNOWLEDGED: Core router (core-router)",
        "[CRITICAL] ACKNOWLEDGED Core router, DOWN for 1h 05m - timeout: no answer within 5s",
    ),
]


@pytest.mark.parametrize(("event", "fields", "title", "short"), OUTAGE_CASES)
def test_outage_title_and_short(event: str, fields: dict[str, Any], title: str, short: str) -> None:
    message = outage(event, **fields)
    assert (message.title, message.short) == (title, short)


def test_outage_body() -> None:
    message = outage(
        "declared", now=T0 + timedelta(minutes=12), suppressed_note="2 dependent endpoints muted"
    )
    assert message.body == (
        "Core router is DOWN.\n"
        "\n"
        "Endpoint: Core router (core-router)\n"
        "Status: down\n"
        "Severity: critical\n"
        "Error: timeout: no answer within 5s\n"
        "Since: 2024-06-01T10:00:00Z\n"
        "Duration: 12m\n"
        "Outage: https://mon.example/api/v1/outages/42\n"
        "Alert: https://mon.example/api/v1/alerts/7\n"
        "Note: 2 dependent endpoints muted"
    )


@pytest.mark.parametrize(
    ("event", "fields", "lead"),
    [
        (
            "step",
            {"step": 1, "now": T0 + timedelta(minutes=15)},
            "Core router is still DOWN after 15m (escalation step 2).",
        ),
        ("reminder", {"reminder": 3}, "Core router is still DOWN after 1h 05m (reminder 3)."),
        ("escalated", {}, "The outage of Core router rose to severity CRITICAL after 1h 05m."),
        ("resolved", {}, "Core router is back: the outage is RESOLVED after 1h 05m."),
        ("acknowledged", {}, "The outage of Core router was acknowledged; no more reminders are sent."),
    ],
)
def test_outage_body_lead(event: str, fields: dict[str, Any], lead: str) -> None:
    assert outage(event, **fields).body.splitlines()[0] == lead


def test_body_without_links_or_error() -> None:
    body = outage("declared", link_base=None, error_kind=None, error=None, started_at=T0.astimezone()).body
    assert [line.split(":")[0] for line in body.splitlines()[2:]] == [
        "Endpoint",
        "Status",
        "Severity",
        "Since",
        "Duration",
    ]
    assert "Since: 2024-06-01T10:00:00Z" in body  # always UTC


def test_long_multiline_error() -> None:
    error = "HTTP 503 from upstream\n\n   <html>\t" + "x" * 1000
    message = outage("declared", error=error, endpoint_name="Core\n  router")
    error_line = message.body.split("Error: ", 1)[1].split("\nSince:")[0]
    assert error_line.startswith("timeout: HTTP 503 from upstream\n  <html>\txxx")
    assert len(error_line) <= len("timeout: ") + 500 + 2 * error.count("\n")
    assert error_line.endswith("…")
    assert "\n" not in message.title and "\n" not in message.short and "\t" not in message.short
    assert message.title == "[CRITICAL] DOWN: Core router (core-router)"
    assert message.short.startswith(
        "[CRITICAL] DOWN Core router for 1h 05m - timeout: HTTP 503 from upstream <html> x"
    )
    assert len(message.short) == 160 and message.short.endswith("…")


def test_long_name_is_shortened_but_the_facts_stay() -> None:
    message = outage("resolved", endpoint_name="Very long name " * 20)
    assert len(message.short) == 160
    assert message.short.startswith("[CRITICAL] RESOLVED Very long name")
    assert message.short.endswith("… after 1h 05m")


@pytest.mark.parametrize("event", ["declared", "escalated", "reminder", "step", "resolved", "acknowledged"])
def test_short_never_exceeds_160(event: str) -> None:
    # Property-style: every combination of name, error and link length stays within the limit and
    # keeps severity, the event word and the duration.
    for name_len in (0, 1, 10, 60, 120, 140, 150, 159, 160, 161, 200, 1000):
        for error_len in (0, 5, 40, 100, 155, 400, 5000):
            for link in (None, LINK, "https://" + "l" * 200):
                message = outage(
                    event,
                    endpoint_name="N" * name_len,
                    error="e " * (error_len // 2) if error_len else None,
                    link_base=link,
                    now=T0 + timedelta(days=3, minutes=7),
                    step=12,
                    reminder=345,
                )
                assert len(message.short) <= 160, (name_len, error_len, link)
                assert message.short.startswith("[CRITICAL] ")
                assert "3d 00h" in message.short


def threshold(event: str, **fields: Any) -> Message:
    data: dict[str, Any] = {
        "rule_id": "slow-web",
        "rule_name": "Slow web",
        "metric": "response_time_ms",
        "above": 500.0,
        "below": None,
        "value": 812.0,
        "peak": 950.5,
        "checks": 3,
        "endpoint_id": "web-1",
        "endpoint_name": "web-1",
        "severity": "minor",
        "since": T0,
        "now": T0 + timedelta(minutes=12),
        "duration_seconds": None,
        "alert_id": 9,
        "link_base": None,
    }
    data.update(fields)
    return threshold_message(event, **data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "fields", "title", "short"),
    [
        (
            "breached",
            {},
            "[MINOR] web-1: response_time_ms 812 > 500 for 3 checks",
            "[MINOR] web-1: response_time_ms 812 > 500 for 3 checks",
        ),
        (
            "breached",
            {
                "metric": "cert_days_left",
                "above": None,
                "below": 14,
                "value": 6.5,
                "checks": 1,
                "severity": "major",
                "endpoint_name": "Shop",
                "link_base": LINK,
            },
            "[MAJOR] Shop: cert_days_left 6.5 < 14 for 1 check",
            "[MAJOR] Shop: cert_days_left 6.5 < 14 for 1 check https://mon.example/api/v1/alerts/9",
        ),
        (
            "cleared",
            {"value": 120.25, "duration_seconds": 3900},
            "[MINOR] CLEARED web-1: response_time_ms back to 120.25 after 1h 05m, peak 950.5",
            "[MINOR] CLEARED web-1: response_time_ms back to 120.25 after 1h 05m, peak 950.5",
        ),
        (
            "reminder",
            {"reminder": 2},
            "[MINOR] web-1: response_time_ms 812 > 500 for 12m (reminder 2)",
            "[MINOR] web-1: response_time_ms 812 > 500 for 12m (reminder 2)",
        ),
        (
            "step",
            {"step": 1, "value": None},
            "[MINOR] web-1: response_time_ms n/a > 500 for 12m (step 2)",
            "[MINOR] web-1: response_time_ms n/a > 500 for 12m (step 2)",
        ),
    ],
)
def test_threshold_title_and_short(event: str, fields: dict[str, Any], title: str, short: str) -> None:
    message = threshold(event, **fields)
    assert (message.title, message.short) == (title, short)


def test_threshold_body() -> None:
    assert threshold("breached", link_base=LINK).body == (
        "response_time_ms on web-1 is 812, above 500, for 3 checks.\n"
        "\n"
        "Rule: Slow web (slow-web)\n"
        "Endpoint: web-1 (web-1)\n"
        "Metric: response_time_ms\n"
        "Value: 812\n"
        "Threshold: above 500\n"
        "Peak: 950.5\n"
        "Checks: 3\n"
        "Severity: minor\n"
        "Since: 2024-06-01T10:00:00Z\n"
        "Duration: 12m\n"
        "Alert: https://mon.example/api/v1/alerts/9"
    )
    assert threshold("cleared", value=100, rule_name=None).body.splitlines()[:3] == [
        "response_time_ms on web-1 is back to 100 (limit: above 500) after 12m; the peak was 950.5.",
        "",
        "Rule: slow-web",
    ]


@pytest.mark.parametrize("event", ["breached", "cleared", "reminder", "step"])
def test_threshold_short_never_exceeds_160(event: str) -> None:
    for name_len in (1, 50, 100, 150, 400):
        for link in (None, LINK, "https://" + "l" * 200):
            message = threshold(
                event, endpoint_name="n" * name_len, metric="m" * 64, value=123456789.123, link_base=link
            )
            assert len(message.short) <= 160
            assert message.short.startswith("[MINOR] ")
            assert message.short.endswith(("checks", "950.5", "(reminder 0)", "(step 1)")) or link


def test_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown outage alert event 'exploded'"):
        outage("exploded")
    with pytest.raises(ValueError, match="unknown threshold alert event 'resolved'"):
        threshold("resolved")


def test_message_enforces_the_short_limit() -> None:
    assert Message("t", "b", "s" * 160).short == "s" * 160
    with pytest.raises(ValueError, match="short text is 161 characters, more than 160"):
        Message("t", "b", "s" * 161)


def test_test_message() -> None:
    message = test_message("oncall-sms", T0)
    assert message == Message(
        title="[TEST] ispmon notification test (oncall-sms)",
        body="This is a test message from ispmon through the channel 'oncall-sms', sent at 2024-06-01T10:00:00Z.\n"
        "If you can read it, alerts sent through this channel reach you.",
        short="[TEST] ispmon test via oncall-sms at 2024-06-01T10:00:00Z",
    )
    assert len(test_message("c" * 500, T0).short) == 160
