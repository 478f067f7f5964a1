"""Discovery and polling against Debian's snmpd (v2c and v3 authPriv SHA+AES) in a namespace.

The namespace's loopback carries only the bytes the test sends, so the computed octets must equal the
kernel's own counters of it exactly (and be at least the payload sent; the headers on top vary with
how the kernel segments the stream, which depends on the machine's load).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from ispmon.network.poller import Poller
from ispmon.network.snmp import SnmpClient
from ispmon.services.network import NetworkService
from ispmon.store.database import Database
from tests.integration.network.agents import COMMUNITY, V3_AUTH, V3_PRIV, V3_USER, Agent, snmpd_namespace

pytestmark = pytest.mark.netns
SENT = 40_000_000
# snmpd re-reads the kernel's interface counters at most every few seconds (its IF-MIB cache).
CACHE_TIME = 4.0


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    with snmpd_namespace(tmp_path_factory.mktemp("snmpd"), veths=2) as found:
        yield found


@pytest.fixture
async def network(db: Database) -> AsyncIterator[NetworkService]:
    service = NetworkService(db)
    try:
        yield service
    finally:
        await service.close()


def v2c(agent: Agent, **extra: Any) -> dict[str, Any]:
    return {"id": "ns-v2", "name": "agent v2c", "address": f"{agent.address}:{agent.port}",
            "community": COMMUNITY, "timeout": 1, "retries": 0, **extra}


def v3(agent: Agent, **extra: Any) -> dict[str, Any]:
    return {"id": "ns-v3", "name": "agent v3", "address": f"{agent.address}:{agent.port}", "version": "3",
            "username": V3_USER, "auth_protocol": "SHA", "auth_key": V3_AUTH, "priv_protocol": "AES",
            "priv_key": V3_PRIV, "timeout": 1, "retries": 0, **extra}


def _lo(result: dict[str, Any]) -> dict[str, Any]:
    (lo,) = [i for i in result["interfaces"] if i["name"] == "lo"]
    return lo


@pytest.mark.parametrize("definition", [v2c, v3], ids=["v2c", "v3-authpriv-sha-aes"])
async def test_bytes_over_loopback_match_the_kernels_counters(
    agent: Agent, network: NetworkService, db: Database, definition: Any
) -> None:
    device = await network.create_device(definition(agent))
    await asyncio.sleep(CACHE_TIME)  # let the cache pass the previous test's traffic
    first = await network.poll_device(device["id"])
    assert first["reachable"] is True and first["discovered"] is True
    assert first["counters"] == "64-bit"
    names = {i["name"] for i in first["interfaces"]}
    assert {"lo", "va0", "vb0", "va1", "vb1"} <= names
    assert _lo(first)["rates"] is None  # one reading: nothing to make a rate from yet

    before = await asyncio.to_thread(agent.loopback_bytes)
    await asyncio.to_thread(agent.send_over_loopback, SENT)
    after = await asyncio.to_thread(agent.loopback_bytes)
    await asyncio.sleep(CACHE_TIME)
    second = await network.poll_device(device["id"])
    rates = _lo(second)["rates"]
    assert rates is not None, second
    # On lo every byte sent is also received: both directions carry it, and exactly what the
    # kernel counted (nothing else uses the namespace's loopback).
    for direction, kernel in zip(("in", "out"), (after[0] - before[0], after[1] - before[1]), strict=True):
        octets = rates[f"{direction}_octets"]
        assert octets == kernel, (direction, octets, kernel)
        assert SENT <= octets <= SENT * 1.1, (direction, octets)
        assert rates[f"{direction}_bps"] * rates["interval_s"] / 8 == pytest.approx(octets, rel=1e-6)
    assert rates["in_util_pct"] is None  # a software loopback has no meaningful speed
    assert rates["in_errors_ps"] == 0 and rates["in_discards_ps"] == 0

    # What the poll read is stored: the interface, its last sample, one metric row.
    interfaces = await network.list_interfaces(device["id"])
    lo = next(i for i in interfaces if i["name"] == "lo")
    assert lo["oper_status"] == "up" and lo["last_sample"]["in_octets"] == rates["in_octets"]
    metrics = await network.interface_metrics(lo["id"])
    assert [m["in_octets"] for m in metrics["items"]] == [rates["in_octets"]]
    state = (await network.get_device(device["id"]))["state"]
    assert state["reachable"] is True and state["sys_descr"] and state["sys_uptime"] > 0


async def test_wrong_credentials_mark_the_device_unreachable_once(
    agent: Agent, network: NetworkService
) -> None:
    await network.create_device(v3(agent, id="bad-keys", auth_key="wrong-key-0123"))
    await network.create_device(v2c(agent, id="bad-comm", community="not-the-community", timeout=0.3))
    await network.create_device(v2c(agent, id="good"))
    with capture_logs() as logs:
        for _ in range(2):
            results = await asyncio.gather(*(network.poll_device(d) for d in ("bad-keys", "bad-comm", "good")))
    bad_keys, bad_comm, good = results
    assert bad_keys["reachable"] is False and bad_keys["error_kind"] == "auth"
    assert bad_comm["reachable"] is False and bad_comm["error_kind"] == "timeout"
    assert good["reachable"] is True and _lo(good)["rates"] is not None  # the others did not disturb it
    unreachable = [e for e in logs if e["event"] == "device_unreachable"]
    assert sorted(e["device_id"] for e in unreachable) == ["bad-comm", "bad-keys"]  # once each, not per poll
    assert all("wrong-key" not in str(e) and "not-the-community" not in str(e) for e in logs)
    assert (await network.get_device("bad-keys"))["state"]["reachable"] is False


async def test_unreachable_address_and_no_agent(network: NetworkService) -> None:
    await network.create_device({"id": "nobody", "name": "nobody", "address": "127.0.0.1:9",
                                 "community": "x", "timeout": 0.3, "retries": 0})
    result = await network.poll_device("nobody")
    assert result["reachable"] is False and result["error_kind"] == "timeout"


async def test_the_daemon_poller_writes_batched_samples(agent: Agent, db: Database) -> None:
    from ispmon.network.devices import build_device
    from ispmon.store.interfaces import METRIC_COLUMNS
    from ispmon.store.writer import BatchWriter

    spec = build_device(v2c(agent, id="loop", poll_interval=1, timeout=0.5))
    await db.devices.upsert(spec)
    writer = BatchWriter(db.pool, "interface_metrics", METRIC_COLUMNS, batch_size=50, flush_interval=0.1)
    writer.start()
    client = SnmpClient()
    poller = Poller(db, client, writer, concurrency=4)
    try:
        poller.start([spec])
        await asyncio.sleep(3.6)
    finally:
        await poller.close()
        await writer.close()
        client.close()
    assert poller.stats.polls >= 3 and poller.stats.failures == 0
    rows = await db.pool.fetch(
        "SELECT i.name, count(*) AS n FROM interface_metrics m JOIN interfaces i ON i.id = m.interface_id"
        " GROUP BY i.name"
    )
    counts = {r["name"]: r["n"] for r in rows}
    assert counts["lo"] >= 2 and counts["va0"] == counts["lo"]
    # Partitioned by day: today's rows are in today's partition, not the default one.
    assert await db.pool.fetchval("SELECT count(*) FROM interface_metrics_default") == 0

