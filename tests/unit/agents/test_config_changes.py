"""What a burst of configuration changes means to an agent: one plan, own changes left out."""

from __future__ import annotations

from ispmon.agents.config_changes import KINDS, RELOAD, Change, plan


def change(i: int, kind: str, key: str | None = None, origin: str = "a") -> Change:
    return Change(i, kind, key, origin)


def test_own_changes_are_left_out() -> None:
    todo = plan([change(1, "endpoints", "web", origin="b"), change(2, "maintenance", origin="b")], own="b")
    assert not todo
    assert todo.kinds == {}


def test_keys_of_a_keyed_kind_are_gathered() -> None:
    todo = plan(
        [change(1, "endpoints", "web"), change(2, "endpoints", "dns"), change(3, "endpoints", "web")], "b"
    )
    assert todo.kinds == {"endpoints": frozenset({"web", "dns"})}
    assert todo.changes == 3 and todo.origins == {"a"}


def test_a_change_without_a_key_means_the_whole_kind_and_stays_so() -> None:
    todo = plan([change(1, "devices", "r1"), change(2, "devices", None), change(3, "devices", "r2")], "b")
    assert todo.kinds == {"devices": None}
    assert todo.whole("devices")


def test_small_tables_are_always_read_whole() -> None:
    todo = plan(
        [change(1, "maintenance", "w1"), change(2, "nas_clients", "nas-1"), change(3, "customers", "c1")], "b"
    )
    assert todo.kinds == {"maintenance": None, "nas_clients": None, "customers": None}


def test_many_keys_become_one_whole_read() -> None:
    changes = [change(i, "endpoints", f"ep-{i}") for i in range(1, 12)]
    assert plan(changes, "b", max_keys=10).kinds == {"endpoints": None}
    assert plan(changes[:10], "b", max_keys=10).kinds == {
        "endpoints": frozenset(f"ep-{i}" for i in range(1, 11))
    }


def test_a_burst_of_ten_thousand_is_one_plan_of_one_kind() -> None:
    changes = [change(i, "endpoints", f"ep-{i}", origin=f"agent-{i % 3}") for i in range(10_000)]
    todo = plan(changes, "agent-0")
    assert todo.kinds == {"endpoints": None}
    assert todo.changes == 6_666 and todo.origins == {"agent-1", "agent-2"}


def test_a_reload_re_reads_every_kind_and_keeps_the_file_digest() -> None:
    todo = plan([change(1, "endpoints", "web"), change(2, RELOAD, "abc123")], "b")
    assert todo.kinds == dict.fromkeys(KINDS)
    assert todo.reload_digests == {"abc123"}


def test_a_kind_from_a_newer_version_is_noted_not_applied() -> None:
    todo = plan([change(1, "dashboards", "x")], "b")
    assert not todo
    assert todo.unknown == {"dashboards"}
