"""Rendezvous ownership and membership timing (agents/ownership.py): pure, no database."""

from __future__ import annotations

from collections import Counter

from ispmon.agents.ownership import AgentRow, members, next_change, owner, probed_from

KEYS = [f"ep-{i:05d}" for i in range(6000)]


def test_every_key_has_one_owner_and_the_share_is_even() -> None:
    agents = ("a1", "a2", "a3")
    counts = Counter(owner(k, agents) for k in KEYS)
    assert set(counts) == set(agents)
    assert all(abs(n - len(KEYS) / 3) < len(KEYS) * 0.05 for n in counts.values()), counts
    # The same answer whatever the order the rows were read in.
    assert all(owner(k, agents) == owner(k, ("a3", "a1", "a2")) for k in KEYS[:500])


def test_only_the_leaving_agents_keys_move() -> None:
    before = {k: owner(k, ("a1", "a2", "a3")) for k in KEYS}
    after = {k: owner(k, ("a1", "a3")) for k in KEYS}
    moved = [k for k in KEYS if before[k] != after[k]]
    assert moved and all(before[k] == "a2" for k in moved)
    assert all(after[k] == before[k] for k in KEYS if before[k] != "a2")
    # And a returning agent takes back exactly what it had.
    back = {k: owner(k, ("a1", "a2", "a3")) for k in KEYS}
    assert back == before


def test_no_agent_no_owner() -> None:
    assert owner("x", ()) is None
    assert owner("x", ("only",)) == "only"


def test_membership_starts_after_the_settle_time_and_ends_with_the_heartbeat() -> None:
    rows = [
        AgentRow("a1", "fra1", joined_at=100.0, last_heartbeat=200.0),
        AgentRow("a2", "fra1", joined_at=198.0, last_heartbeat=200.0),  # just joined
        AgentRow("a3", "ams1", joined_at=100.0, last_heartbeat=170.0),  # dead at 200 (30 s)
        AgentRow("a4", "fra1", joined_at=100.0, last_heartbeat=200.0, stopped_at=199.0),  # stopped
    ]
    assert members(rows, 200.0, dead_after=30, settle=3) == {"fra1": ("a1",)}
    assert members(rows, 201.0, dead_after=30, settle=3) == {"fra1": ("a1", "a2")}
    assert members(rows, 199.5, dead_after=30, settle=3)["fra1"] == ("a1",)
    assert members(rows, 190.0, dead_after=30, settle=3) == {"fra1": ("a1", "a4"), "ams1": ("a3",)}
    # The next instant at which the answer changes, known in advance to every agent.
    assert next_change(rows, 200.0, dead_after=30, settle=3) == 201.0
    assert next_change(rows, 201.0, dead_after=30, settle=3) == 230.0


def test_locations_probed_default_to_every_known_one() -> None:
    assert probed_from(None, ["lon1", "fra1", "lon1"]) == ("fra1", "lon1")
    assert probed_from(["ams1"], ["fra1"]) == ("ams1",)
