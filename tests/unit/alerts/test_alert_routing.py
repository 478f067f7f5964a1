"""Routing checks (pure): who pages a channel, and which channels a rule would page in vain."""

from __future__ import annotations

import pytest

from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.routing import channel_users, undefined_channel_errors
from ispmon.alerts.rules import AlertRule

POLICIES = {
    "core": EscalationPolicy.model_validate(
        {
            "id": "core",
            "steps": [
                {"after_minutes": 0, "channels": ["email"]},
                {"after_minutes": 15, "channels": ["email", "sms"]},
            ],
        }
    )
}
RULES = [
    AlertRule(id="web", kind="outage", channels=["slack", "sms"]),
    AlertRule(id="core", kind="outage", escalation="core"),
    AlertRule(id="slow", kind="threshold", metric="response_time_ms", above=500),
]


@pytest.mark.parametrize(
    ("name", "default", "users"),
    [
        ("sms", [], ["alert rule 'web' (channels[1])", "escalation policy 'core' (steps[1].channels[1])"]),
        (
            "email",
            ["email"],
            [
                "escalation policy 'core' (steps[0].channels[0])",
                "escalation policy 'core' (steps[1].channels[0])",
                "the default route (ALERT_NOTIFICATION_CHANNELS)",
            ],
        ),
        ("slack", ["email"], ["alert rule 'web' (channels[0])"]),
        ("unused", ["email"], []),
    ],
)
def test_channel_users_name_where_they_name_it(name: str, default: list[str], users: list[str]) -> None:
    assert channel_users(name, RULES, POLICIES, default) == users


@pytest.mark.parametrize(
    ("rule", "defined", "fields"),
    [
        (RULES[0], {"slack", "sms"}, []),
        (RULES[0], {"sms"}, ["channels[0]"]),
        (RULES[0], set(), ["channels[0]", "channels[1]"]),
        (RULES[1], {"email", "sms"}, []),
        (RULES[1], {"email"}, ["escalation"]),
        (RULES[1], set(), ["escalation", "escalation", "escalation"]),
        (RULES[2], set(), []),  # no channels: the default ones, checked at start, not refused
    ],
)
def test_undefined_channel_errors(rule: AlertRule, defined: set[str], fields: list[str]) -> None:
    errors = undefined_channel_errors(rule, POLICIES, defined)
    assert [e["field"] for e in errors] == fields


def test_undefined_channel_message_names_the_step() -> None:
    [error] = undefined_channel_errors(RULES[1], POLICIES, {"email"})
    assert error["message"] == (
        "escalation policy 'core' pages channel 'sms' (steps[1].channels[1]), which is not defined (email)"
    )
