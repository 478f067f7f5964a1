"""Interface identity: keyed by ifName so renumbering keeps history."""

from __future__ import annotations

from ispmon.network.interfaces import interface_key, keys_for


def test_key_is_the_name_and_survives_renumbering() -> None:
    before = keys_for({1: "lo", 2: "eth0", 3: "eth1"})
    after = keys_for({1: "lo", 7: "eth0", 9: "eth1"})  # rebooted, renumbered
    assert set(before.values()) == set(after.values()) == {"lo", "eth0", "eth1"}
    assert after[7] == before[2] == "eth0"


def test_nameless_and_duplicate_names() -> None:
    assert interface_key(4, None) == "ifIndex.4"
    assert interface_key(4, "  ") == "ifIndex.4"
    assert keys_for({10: "Gi0/1", 3: "Gi0/1", 5: ""}) == {3: "Gi0/1", 5: "ifIndex.5", 10: "Gi0/1#10"}
