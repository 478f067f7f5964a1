"""Interface and device state changes as events (pure)."""

from __future__ import annotations

import pytest

from ispmon.network.events import device_transition, interface_transition


@pytest.mark.parametrize(
    ("admin", "oper", "down_since", "kinds", "after"),
    [
        ("up", "up", None, [], None),
        ("up", "down", None, ["interface_down"], 100.0),
        ("up", "lowerLayerDown", None, ["interface_down"], 100.0),
        ("up", "down", 40.0, [], 40.0),  # still down: no second event
        ("up", "up", 40.0, ["interface_up"], None),
        ("down", "down", None, [], None),  # shut by an operator: not an outage
        ("down", "down", 40.0, ["interface_up"], None),  # shut while down: the outage ends
        (None, None, 40.0, [], 40.0),  # not read this poll
    ],
)
def test_interface_transition(
    admin: str | None, oper: str | None, down_since: float | None, kinds: list[str], after: float | None
) -> None:
    events, since = interface_transition("r1", 7, "ge-0/0/1", admin, oper, down_since, 100.0)
    assert [e.kind for e in events] == kinds and since == after
    if kinds == ["interface_up"]:
        assert events[0].data["duration_s"] == 60.0 and events[0].interface_id == 7


def test_device_transition() -> None:
    events, since = device_transition("r1", False, None, 10.0, "timeout")
    assert [e.kind for e in events] == ["device_unreachable"] and since == 10.0 and events[0].interface_id is None
    assert device_transition("r1", False, 10.0, 20.0) == ([], 10.0)
    events, since = device_transition("r1", True, 10.0, 70.0)
    assert [e.kind for e in events] == ["device_reachable"] and events[0].data["duration_s"] == 60.0
    assert since is None
    assert device_transition("r1", True, None, 80.0) == ([], None)
