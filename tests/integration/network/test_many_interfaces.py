"""Debian's snmpd in a network namespace with 30 veth pairs (60 real interfaces and more): every
one discovered and polled with rates, and a peer taken down gives one interface_down, for the
interface whose carrier went, not for the one shut by the operator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from ispmon.services.network import NetworkService
from ispmon.store.database import Database
from tests.integration.network.agents import COMMUNITY, Agent, snmpd_namespace

PAIRS = 30


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpd_namespace(tmp_path_factory.mktemp("snmpd-many"), veths=PAIRS, tag="m") as found:
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


async def _poll_until(
    network: NetworkService, done: Callable[[dict[str, dict[str, Any]]], bool]
) -> dict[str, dict[str, Any]]:
    """Poll until `done` (snmpd caches its interface table for a few seconds)."""
    deadline = time.monotonic() + 30
    while True:
        got = {i["name"]: i for i in (await network.poll_device("many"))["interfaces"]}
        if done(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1)


async def test_sixty_veths_discovered_polled_and_one_goes_down(agent: Agent, network: NetworkService) -> None:
    await network.create_device({"id": "many", "name": "many", "address": f"{agent.address}:{agent.port}",
                                 "community": COMMUNITY, "timeout": 2, "retries": 1})
    first = await network.poll_device("many")
    names = {i["name"] for i in first["interfaces"]}
    veths = {f"va{i}" for i in range(PAIRS)} | {f"vb{i}" for i in range(PAIRS)}
    assert veths <= names and len(names) >= 2 * PAIRS + 2  # + lo and the namespace's uplink
    assert first["counters"] == "64-bit"
    second = await network.poll_device("many")
    polled = {i["name"]: i for i in second["interfaces"]}
    assert all(polled[n]["rates"] is not None and polled[n]["rates"]["in_bps"] >= 0 for n in veths)
    listed = await network.list_interfaces("many")
    assert {i["name"] for i in listed} >= veths

    agent.run_inside("ip", "link", "set", "vb7", "down")  # va7 loses its carrier; vb7 is shut
    third = await _poll_until(network, lambda got: got["va7"]["oper_status"] != "up")
    assert third["va7"]["admin_status"] == "up" and third["va7"]["oper_status"] != "up"
    assert third["vb7"]["admin_status"] == "down"
    events = await network.db.interfaces.events("many")
    assert [(e["kind"], e["data"]["name"]) for e in events] == [("interface_down", "va7")]
    agent.run_inside("ip", "link", "set", "vb7", "up")
    await _poll_until(network, lambda got: got["va7"]["oper_status"] == "up")
    events = await network.db.interfaces.events("many")
    assert [(e["kind"], e["data"]["name"]) for e in events] == [("interface_down", "va7"), ("interface_up", "va7")]
