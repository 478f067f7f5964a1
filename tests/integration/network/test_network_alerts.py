"""Threshold alerts on SNMP devices and interfaces, end to end on real parts: a crafted snmpd
polled by the real poller, the real alert engine and outbox, the real sender delivering to the
webhook receiver the alert tests use. Interface down, utilisation above X % for N polls and a
device that stops answering page once when the state changes and resolve once when it is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.rules import AlertRule
from ispmon.network.devices import build_device
from ispmon.network.poller import Poller
from ispmon.network.runner import alert_observer
from ispmon.network.snmp import SnmpClient
from ispmon.store.alerts import AlertRepo
from ispmon.store.database import Database
from ispmon.store.notifications import NotificationRepo
from tests.integration.alerts.test_alert_delivery import Receiver, json_url, make_sender, receiver  # noqa: F401
from tests.integration.network.crafted import COMMUNITY, CraftedAgent, crafted_agent
from tests.integration.network.test_crafted_counters import table

SPEED = 100_000_000  # the crafted ifSpeed: 100 Mbit/s


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CraftedAgent]:
    with crafted_agent(tmp_path_factory.mktemp("crafted-alerts")) as found:
        yield found


class Clock:
    def __init__(self) -> None:
        self.now = time.time() - 3600  # polls 60 s apart, all in the past (notifications are due at once)

    def __call__(self) -> float:
        return self.now


RULES = [
    {"id": "uplink-down", "kind": "threshold", "metric": "interface_down", "above": 0, "devices": ["edge-1"],
     "interfaces": ["xe-*"], "severity": "major", "channels": ["hook"]},
    {"id": "uplink-hot", "kind": "threshold", "metric": "in_util_pct", "above": 80, "for_checks": 2,
     "interfaces": ["xe-*"], "devices": ["edge-1"], "channels": ["hook"]},
    {"id": "edge-unreachable", "kind": "threshold", "metric": "device_unreachable", "above": 0, "tags": ["edge"],
     "severity": "critical", "channels": ["hook"]},
    # Selects an endpoint only: never a device.
    {"id": "endpoint-only", "kind": "threshold", "metric": "interface_down", "above": 0, "endpoints": ["web-1"],
     "channels": ["hook"]},
]


async def test_network_thresholds_page_and_resolve_once(
    agent: CraftedAgent, db: Database, receiver: Receiver  # noqa: F811
) -> None:
    registry = ChannelRegistry([parse_channel("hook", json_url(receiver.port))])
    engine = AlertEngine(
        pool=db.pool, alerts=AlertRepo(db.pool), notifications=NotificationRepo(db.pool), channels=registry,
        default_channels=["hook"], link_base=None,
    )
    engine.configure([AlertRule.model_validate(r) for r in RULES], {})
    # The real clock: rows are due as they are enqueued.
    sender = make_sender(
        db.pool, {"hook": json_url(receiver.port)}, receiver.port,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=1),
    )
    clock = Clock()
    poller = Poller(db, SnmpClient(), None, clock=clock)
    poller.observer = alert_observer(engine)
    spec = build_device({"id": "edge-1", "name": "Edge 1", "address": f"127.0.0.1:{agent.port}",
                         "community": COMMUNITY, "timeout": 3, "retries": 0, "tags": ["edge"]})
    await db.devices.insert(spec)
    octets = {"xe": 0, "mgmt": 0}
    uptime = [100_000]

    async def poll(xe_bps: float, xe_oper: int = 1) -> dict[str, Any]:
        clock.now += 60
        uptime[0] += 6000
        octets["xe"] += int(xe_bps * 60 / 8)
        octets["mgmt"] += 1000
        agent.serve(table(uptime[0], {1: {"name": "xe-0/0/1", "in": octets["xe"], "out": 0, "oper": xe_oper},
                                      2: {"name": "mgmt0", "in": octets["mgmt"], "out": 0, "oper": 2}}))
        result = await poller.poll_now(spec)
        while engine._tasks:
            await asyncio.gather(*list(engine._tasks))
        await sender.run_once()
        return result

    async def alerts() -> list[tuple[str, str, str | None]]:
        rows = await db.pool.fetch("SELECT rule_id, endpoint_id, resolved_at FROM alerts ORDER BY id")
        return [(r["rule_id"], r["endpoint_id"], "resolved" if r["resolved_at"] else None) for r in rows]

    def delivered() -> list[str]:
        return [json.loads(h.body)["title"] for h in receiver.accepted]

    try:
        await poll(10e6)
        await poll(10e6)  # mgmt0 is down too, but no rule selects it (xe-* only)
        assert await alerts() == [] and delivered() == []

        # 90 % for one poll: not yet (for_checks = 2); for the second: one alert, one message.
        await poll(90e6)
        assert await alerts() == []
        await poll(90e6)
        await poll(95e6)
        assert await alerts() == [("uplink-hot", "interface:edge-1:xe-0/0/1", None)]
        assert len(delivered()) == 1
        await poll(10e6)
        assert await alerts() == [("uplink-hot", "interface:edge-1:xe-0/0/1", "resolved")]
        assert len(delivered()) == 2

        # The uplink goes down (admin up, oper down) for three polls: one alert; back up: resolved once.
        for _ in range(3):
            await poll(0, xe_oper=2)
        await poll(0)
        await poll(0)
        down = [a for a in await alerts() if a[0] == "uplink-down"]
        assert down == [("uplink-down", "interface:edge-1:xe-0/0/1", "resolved")]
        assert len(delivered()) == 4

        # The device stops answering: one device alert (its interfaces are not down because of it).
        gone = build_device({**spec.model_dump(mode="json"), "address": "127.0.0.1:9"})  # nothing listens on 9
        for _ in range(3):
            clock.now += 60
            assert (await poller.poll_now(gone))["reachable"] is False
            while engine._tasks:
                await asyncio.gather(*list(engine._tasks))
            await sender.run_once()
        await poll(0)
        unreachable = [a for a in await alerts() if a[0] == "edge-unreachable"]
        assert unreachable == [("edge-unreachable", "device:edge-1", "resolved")]
        assert [a for a in await alerts() if a[0] == "uplink-down"] == down
        assert all(a[0] != "endpoint-only" for a in await alerts())
        assert len(delivered()) == 6
    finally:
        await engine.close()
        poller.client.close()
