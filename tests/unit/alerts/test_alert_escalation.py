"""Escalation policies: validation, the 0/15/60 min timeline with reminders, ack/resolve, clock jumps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ispmon.alerts.escalation import (
    DueNotification,
    EscalationPolicy,
    due_notifications,
    next_due_at,
    simple_policy,
)
from ispmon.validation import error_list

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
MAIL, SMS, NOC = ("oncall-mail",), ("oncall-sms",), ("slack-noc", "manager-mail")


def policy(**fields: Any) -> EscalationPolicy:
    data: dict[str, Any] = {
        "id": "noc",
        "steps": [
            {"after_minutes": 0, "channels": list(MAIL)},
            {"after_minutes": 15, "channels": list(SMS)},
            {"after_minutes": 60, "channels": list(NOC)},
        ],
        "repeat_every_minutes": 30,
    }
    data.update(fields)
    return EscalationPolicy.model_validate(data)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"id": "NOC"},
            "id",
            "must be a slug: 1-64 lowercase letters, digits, '-' or '_', starting and ending"
            " with a letter or digit",
        ),
        ({"steps": []}, "steps", "List should have at least 1 item after validation, not 0"),
        (
            {"steps": [{"after_minutes": 0, "channels": []}]},
            "steps[0].channels",
            "List should have at least 1 item after validation, not 0",
        ),
        (
            {"steps": [{"after_minutes": -1, "channels": ["a"]}]},
            "steps[0].after_minutes",
            "Input should be greater than or equal to 0",
        ),
        (
            {"steps": [{"after_minutes": 10081, "channels": ["a"]}]},
            "steps[0].after_minutes",
            "Input should be less than or equal to 10080",
        ),
        ({"steps": [{"after_minutes": 0, "channels": ["a"], "when": 1}]}, "steps[0].when", "unknown field"),
        (
            {"steps": [{"after_minutes": 0, "channels": ["Mail Box"]}]},
            "steps[0].channels[0]",
            "must be a slug: 1-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit",
        ),
        (
            {
                "steps": [
                    {"after_minutes": 0, "channels": ["a"]},
                    {"after_minutes": 15, "channels": ["b"]},
                    {"after_minutes": 15, "channels": ["c"]},
                ]
            },
            "steps[2].after_minutes",
            "must be greater than the previous step's (15 <= 15)",
        ),
        (
            {"steps": [{"after_minutes": 10, "channels": ["a"]}, {"after_minutes": 5.5, "channels": ["b"]}]},
            "steps[1].after_minutes",
            "must be greater than the previous step's (5.5 <= 10)",
        ),
        (
            {"steps": [{"after_minutes": 0, "channels": ["a"]}] * 21},
            "steps",
            "List should have at most 20 items after validation, not 21",
        ),
        ({"repeat_every_minutes": 0.5}, "repeat_every_minutes", "Input should be greater than or equal to 1"),
        ({"max_reminders": 0}, "max_reminders", "Input should be greater than or equal to 1"),
        (
            {"repeat_every_minutes": None, "max_reminders": 3},
            "max_reminders",
            "only applies with repeat_every_minutes",
        ),
    ],
)
def test_invalid_policies_name_the_field(fields: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        policy(**fields)
    assert error_list(info.value) == [{"field": field, "message": message}]


def test_first_step_may_be_late_and_policy_round_trips() -> None:
    late = policy(steps=[{"after_minutes": 5, "channels": ["a"]}], repeat_every_minutes=None)
    assert due_notifications(late, T0, at(4.99), -1, 0, False, False) == []
    assert due_notifications(late, T0, at(5), -1, 0, False, False) == [DueNotification(0, ("a",), 0)]
    made = policy(max_reminders=2)
    assert EscalationPolicy.model_validate(made.model_dump(mode="json")) == made


# Walk the timeline the way the engine does: call at each minute, record what was sent.
# 0 min mail, 15 min SMS, 60 min Slack #noc + manager, then reminders to the last step at 90, 120, ...
TIMELINE: list[tuple[float, list[str]]] = [
    (0, ["step0"]),  # last_step -1: nothing sent yet
    (1, []),
    (14.99, []),
    (15, ["step1"]),
    (59, []),
    (60, ["step2"]),
    (89, []),
    (90, ["step2-r1"]),
    (90.5, []),
    (119, []),
    (120, ["step2-r2"]),
    (151, ["step2-r3"]),  # late tick: still due, once
    (179, []),
    (180, ["step2-r4"]),
]


def walk(made: EscalationPolicy, timeline: list[tuple[float, list[str]]], **flags: bool) -> None:
    last_step, last_reminder = -1, 0
    for minutes, expected in timeline:
        due = due_notifications(made, T0, at(minutes), last_step, last_reminder, **flags)
        assert [d.key for d in due] == expected, minutes
        for d in due:
            last_step, last_reminder = max(last_step, d.step), max(last_reminder, d.reminder)


def test_timeline_0_15_60_with_reminders_every_30() -> None:
    walk(policy(), TIMELINE, acknowledged=False, resolved=False)


def test_channels_of_each_step_and_reminder() -> None:
    made = policy()
    assert due_notifications(made, T0, at(15), 0, 0, False, False) == [DueNotification(1, SMS, 0)]
    assert due_notifications(made, T0, at(90), 2, 0, False, False) == [DueNotification(2, NOC, 1)]


@pytest.mark.parametrize("flag", ["acknowledged", "resolved"])
@pytest.mark.parametrize(
    ("minutes", "last_step", "last_reminder"), [(0, -1, 0), (20, 0, 0), (95, 2, 0), (500, 2, 2)]
)
def test_ack_or_resolve_stops_everything(
    flag: str, minutes: float, last_step: int, last_reminder: int
) -> None:
    flags = {"acknowledged": flag == "acknowledged", "resolved": flag == "resolved"}
    assert due_notifications(policy(), T0, at(minutes), last_step, last_reminder, **flags) == []
    assert next_due_at(policy(), T0, last_step, last_reminder, **flags) is None


def test_ack_mid_timeline_stops_later_steps() -> None:
    made = policy()
    assert [d.key for d in due_notifications(made, T0, at(16), 0, 0, False, False)] == ["step1"]
    assert due_notifications(made, T0, at(61), 1, 0, True, False) == []


@pytest.mark.parametrize(
    ("now", "last_step", "last_reminder", "expected"),
    [
        (70, 0, 0, ["step1", "step2"]),  # clock jumped over two steps: both, in order
        (70, -1, 0, ["step0", "step1", "step2"]),
        (215, 2, 0, ["step2-r5"]),  # 90/120/150/180/210 all passed: only the newest
        (215, 2, 2, ["step2-r5"]),
        (215, 2, 5, []),
        (215, 0, 0, ["step1", "step2", "step2-r5"]),  # steps and the newest reminder, each once
    ],
)
def test_clock_jump(now: float, last_step: int, last_reminder: int, expected: list[str]) -> None:
    made = policy()
    due = due_notifications(made, T0, at(now), last_step, last_reminder, False, False)
    assert [d.key for d in due] == expected
    # Recording what was sent makes the same call return nothing: skipped reminders never come back.
    sent_step = max([last_step, *(d.step for d in due)])
    sent_reminder = max([last_reminder, *(d.reminder for d in due)])
    assert due_notifications(made, T0, at(now), sent_step, sent_reminder, False, False) == []
    assert due_notifications(made, T0, at(now + 10), sent_step, sent_reminder, False, False) == []


@pytest.mark.parametrize(
    ("fields", "now", "last_reminder", "expected"),
    [
        ({"repeat_every_minutes": None}, 600, 0, []),  # no reminders at all
        ({"max_reminders": 2}, 120, 1, ["step2-r2"]),
        ({"max_reminders": 2}, 150, 2, []),  # the cap reached
        ({"max_reminders": 2}, 1000, 0, ["step2-r2"]),  # a jump past the cap: the last allowed one
    ],
)
def test_reminder_limits(fields: dict[str, Any], now: float, last_reminder: int, expected: list[str]) -> None:
    due = due_notifications(policy(**fields), T0, at(now), 2, last_reminder, False, False)
    assert [d.key for d in due] == expected


@pytest.mark.parametrize(
    ("fields", "last_step", "last_reminder", "expected"),
    [
        ({}, -1, 0, at(0)),
        ({}, 0, 0, at(15)),
        ({}, 1, 0, at(60)),
        ({}, 2, 0, at(90)),
        ({}, 2, 1, at(120)),
        ({}, 2, 5, at(240)),
        ({"repeat_every_minutes": None}, 2, 0, None),
        ({"max_reminders": 2}, 2, 1, at(120)),
        ({"max_reminders": 2}, 2, 2, None),
    ],
)
def test_next_due_at(
    fields: dict[str, Any], last_step: int, last_reminder: int, expected: datetime | None
) -> None:
    assert next_due_at(policy(**fields), T0, last_step, last_reminder, False, False) == expected


def test_next_due_at_agrees_with_due_notifications() -> None:
    made, last_step, last_reminder = policy(max_reminders=3), -1, 0
    sent: list[tuple[datetime, str]] = []
    while (when := next_due_at(made, T0, last_step, last_reminder, False, False)) is not None:
        assert (
            due_notifications(
                made, T0, when - timedelta(microseconds=1), last_step, last_reminder, False, False
            )
            == []
        )
        due = due_notifications(made, T0, when, last_step, last_reminder, False, False)
        assert len(due) == 1
        sent.append((when, due[0].key))
        last_step, last_reminder = due[0].step, due[0].reminder
    assert sent == [
        (at(0), "step0"),
        (at(15), "step1"),
        (at(60), "step2"),
        (at(90), "step2-r1"),
        (at(120), "step2-r2"),
        (at(150), "step2-r3"),
    ]


def test_simple_policy() -> None:
    made = simple_policy(["mail", "sms"])
    assert (made.id, made.repeat_every_minutes, made.max_reminders, len(made.steps)) == (
        "default",
        None,
        None,
        1,
    )
    assert due_notifications(made, T0, at(0), -1, 0, False, False) == [DueNotification(0, ("mail", "sms"), 0)]
    assert due_notifications(made, T0, at(600), 0, 0, False, False) == []
    assert next_due_at(made, T0, 0, 0, False, False) is None


@pytest.mark.parametrize(
    ("notification", "key"),
    [
        (DueNotification(0, MAIL), "step0"),
        (DueNotification(2, NOC, 0), "step2"),
        (DueNotification(2, NOC, 12), "step2-r12"),
    ],
)
def test_key(notification: DueNotification, key: str) -> None:
    assert notification.key == key
