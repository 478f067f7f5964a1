"""Wraps, reboots, renumbering and garbage served by a real snmpd (pass_persist) to the real poller:
no spike, no negative rate, history kept with the interface through a renumbering."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from ispmon.services.network import NetworkService
from ispmon.store.database import Database
from tests.integration.network.crafted import COMMUNITY, CraftedAgent, crafted_agent

IF = ".1.3.6.1.2.1.2.2.1"
TOP32 = 2**32


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CraftedAgent]:
    with crafted_agent(tmp_path_factory.mktemp("crafted")) as found:
        yield found


@pytest.fixture
async def network(db_dsn: str) -> AsyncIterator[NetworkService]:
    db = await Database.connect(db_dsn, max_size=4)
    service = NetworkService(db)
    try:
        yield service
    finally:
        await service.close()
        await db.close()


def table(uptime: int, interfaces: dict[int, dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """An agent with only ifTable (32-bit counters): {ifIndex: {"name", "in", "out"}}."""
    out: dict[str, tuple[str, Any]] = {
        ".1.3.6.1.2.1.1.1.0": ("string", "crafted agent"),
        ".1.3.6.1.2.1.1.3.0": ("timeticks", uptime),
        ".1.3.6.1.2.1.1.5.0": ("string", "crafted"),
    }
    for index, iface in interfaces.items():
        out[f"{IF}.2.{index}"] = ("string", iface["name"])
        out[f"{IF}.3.{index}"] = ("integer", 6)
        out[f"{IF}.5.{index}"] = ("gauge", 100_000_000)
        out[f"{IF}.7.{index}"] = ("integer", 1)
        out[f"{IF}.8.{index}"] = ("integer", iface.get("oper", 1))
        out[f"{IF}.10.{index}"] = iface.get("in_type", "counter"), iface["in"]
        out[f"{IF}.16.{index}"] = ("counter", iface["out"])
        for column in (13, 14, 19, 20):
            out[f"{IF}.{column}.{index}"] = ("counter", 0)
    return out


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in result["interfaces"]}


async def test_wrap_reboot_renumbering_and_garbage(agent: CraftedAgent, network: NetworkService) -> None:
    await network.create_device({"id": "crafted", "name": "crafted", "address": f"127.0.0.1:{agent.port}",
                                 "community": COMMUNITY, "timeout": 3, "retries": 0})
    agent.serve(table(100_000, {7: {"name": "eth-a", "in": TOP32 - 600, "out": 0},
                                8: {"name": "eth-b", "in": 10, "out": 0}}))
    first = await network.poll_device("crafted")
    assert first["counters"] == "32-bit", first
    ids = {name: i["id"] for name, i in by_name(first).items()}

    # The 32-bit ifInOctets of eth-a wraps: 1,000 octets, not -4 G and not +4 G.
    agent.serve(table(101_000, {7: {"name": "eth-a", "in": 400, "out": 0},
                                8: {"name": "eth-b", "in": 5010, "out": 0}}))
    second = by_name(await network.poll_device("crafted"))
    assert second["eth-a"]["rates"]["in_octets"] == 1000 and second["eth-a"]["rates"]["in_bps"] > 0
    assert second["eth-b"]["rates"]["in_octets"] == 5000

    # A reboot: sysUpTime goes back, ifIndex renumbered, counters restarted. No sample, no spike.
    with capture_logs() as logs:
        agent.serve(table(300, {3: {"name": "eth-a", "in": 50, "out": 0}, 2: {"name": "eth-b", "in": 7, "out": 0}}))
        third = await network.poll_device("crafted")
    assert [e["event"] for e in logs if e["event"] == "device_rebooted"] == ["device_rebooted"]
    assert {n: (i["id"], i["if_index"], i["rates"]) for n, i in by_name(third).items()} == {
        "eth-a": (ids["eth-a"], 3, None), "eth-b": (ids["eth-b"], 2, None)}

    # After it, rates resume on the same interfaces; eth-b's in counter is garbage (a string).
    agent.serve(table(1300, {3: {"name": "eth-a", "in": 2050, "out": 0},
                             2: {"name": "eth-b", "in": "garbage", "in_type": "string", "out": 0}}))
    fourth = by_name(await network.poll_device("crafted"))
    assert fourth["eth-a"]["id"] == ids["eth-a"] and fourth["eth-a"]["rates"]["in_octets"] == 2000
    assert fourth["eth-b"]["rates"]["in_bps"] is None and fourth["eth-b"]["rates"]["out_bps"] == 0

    # A counter going back with no reboot is a reset: no sample (not a wrap of ~4 G at 100 Mbit/s).
    agent.serve(table(2300, {3: {"name": "eth-a", "in": 10, "out": 0}, 2: {"name": "eth-b", "in": 9, "out": 0}}))
    fifth = by_name(await network.poll_device("crafted"))
    assert fifth["eth-a"]["rates"] is None and fifth["eth-a"]["no_sample"] == "counter_reset"

    # History stayed with the interface through the renumbering: eth-a has the two real samples.
    history = await network.interface_metrics(ids["eth-a"])
    assert [m["in_octets"] for m in history["items"]] == [1000, 2000]
    assert all(m["in_bps"] >= 0 for m in history["items"])


async def test_an_agent_without_interfaces_or_system_group(agent: CraftedAgent, network: NetworkService) -> None:
    await network.create_device({"id": "empty", "name": "empty", "address": f"127.0.0.1:{agent.port}",
                                 "community": COMMUNITY, "timeout": 3, "retries": 0})
    agent.serve({".1.3.6.1.2.1.1.3.0": ("timeticks", 5)})  # uptime only: noSuchObject for the rest
    result = await network.poll_device("empty")
    assert result["reachable"] is True and result["interfaces"] == []
    agent.serve({})  # nothing at all: noSuchObject everywhere
    result = await network.poll_device("empty")
    assert result["reachable"] is False and result["error_kind"] == "agent"



async def test_interface_down_and_up_are_events_and_an_unreachable_device_is_one(
    agent: CraftedAgent, network: NetworkService
) -> None:
    await network.create_device({"id": "flappy", "name": "flappy", "address": f"127.0.0.1:{agent.port}",
                                 "community": COMMUNITY, "timeout": 2, "retries": 0})

    def serve(uptime: int, oper_a: int, admin_b: int = 1, oper_b: int = 1) -> None:
        values = table(uptime, {1: {"name": "eth-a", "in": uptime, "out": 0, "oper": oper_a},
                                2: {"name": "eth-b", "in": uptime, "out": 0, "oper": oper_b}})
        values[f"{IF}.7.2"] = ("integer", admin_b)
        agent.serve(values)

    with capture_logs() as logs:
        serve(1000, oper_a=1, admin_b=2, oper_b=2)  # eth-b shut by an operator: not an outage
        await network.poll_device("flappy")
        serve(2000, oper_a=2, admin_b=2, oper_b=2)  # eth-a goes down
        await network.poll_device("flappy")
        serve(3000, oper_a=2, admin_b=2, oper_b=2)  # still down: no second event
        await network.poll_device("flappy")
        agent.serve({})  # the agent stops answering sensibly: one device event, no interface events
        await network.poll_device("flappy")
        await network.poll_device("flappy")
        serve(4000, oper_a=1, admin_b=2, oper_b=2)  # back, and eth-a is up again
        await network.poll_device("flappy")
    events = await network.db.interfaces.events("flappy")
    kinds = [(e["kind"], e["interface_id"] is not None) for e in events]
    assert kinds == [("interface_down", True), ("device_unreachable", False), ("device_reachable", False),
                     ("interface_up", True)]
    up = events[-1]
    assert up["data"]["name"] == "eth-a" and up["data"]["duration_s"] > 0
    assert [e["event"] for e in logs if e["event"].startswith("interface_")] == ["interface_down", "interface_up"]
    interfaces = {i["name"]: i for i in await network.list_interfaces("flappy")}
    assert interfaces["eth-a"]["oper_status"] == "up" and interfaces["eth-b"]["admin_status"] == "down"
