"""A device's `parent` endpoint suppresses its alerts, end to end on real parts: a real HTTP
endpoint checked by the real monitor goes down (a target answering 500), a crafted snmpd polled
by the real poller, the real alert engine and outbox, the real sender delivering to the webhook
receiver. While the parent is down the device's and its interfaces' alerts are recorded with
``suppressed_by = "dependency:<parent>"`` and page nobody; when the parent is back, a device still
failing pages then, saying paging was held."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.rules import AlertRule
from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import Phase
from ispmon.network.devices import build_device
from ispmon.network.poller import Poller
from ispmon.network.runner import alert_observer
from ispmon.network.snmp import SnmpClient
from ispmon.probes.base import ProbeContext
from ispmon.store.alerts import AlertRepo
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.notifications import NotificationRepo
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter
from tests.integration.alerts.test_alert_delivery import Receiver, json_url, make_sender, receiver  # noqa: F401
from tests.integration.alerts.test_alert_engine import POLICY, Targets
from tests.integration.network.crafted import COMMUNITY, CraftedAgent, crafted_agent
from tests.integration.network.test_crafted_counters import table

RULES = [
    {"id": "uplink-down", "kind": "threshold", "metric": "interface_down", "above": 0, "devices": ["edge-1"],
     "interfaces": ["xe-*"], "severity": "major", "channels": ["hook"]},
    {"id": "edge-unreachable", "kind": "threshold", "metric": "device_unreachable", "above": 0,
     "devices": ["edge-1"], "severity": "critical", "channels": ["hook"]},
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CraftedAgent]:
    with crafted_agent(tmp_path_factory.mktemp("crafted-dependency")) as found:
        yield found


@pytest.fixture
async def targets() -> AsyncIterator[Targets]:
    found = Targets()
    await found.start()
    try:
        yield found
    finally:
        await found.runner.cleanup()


async def test_a_down_parent_endpoint_holds_the_device_alerts_and_a_device_still_down_pages_after_it(
    agent: CraftedAgent, db: Database, receiver: Receiver, targets: Targets  # noqa: F811
) -> None:
    registry = ChannelRegistry([parse_channel("hook", json_url(receiver.port))])
    engine = AlertEngine(
        pool=db.pool, alerts=AlertRepo(db.pool), notifications=NotificationRepo(db.pool), channels=registry,
        default_channels=["hook"], link_base=None,
    )
    ctx = ProbeContext()
    history = BatchWriter(db.pool, "status_history", HISTORY_COLUMNS)
    events = BatchWriter(db.pool, "endpoint_events", EVENT_COLUMNS)
    monitor = Monitor(ctx=ctx, policy=POLICY, history=history, events=events, outages=db.outages)
    engine.monitor, monitor.alerts = monitor, engine
    engine.configure([AlertRule.model_validate(r) for r in RULES], {})
    sender = make_sender(db.pool, {"hook": json_url(receiver.port)}, receiver.port,
                         clock=lambda: datetime.now(UTC) + timedelta(seconds=1))
    router = build_endpoint({"id": "router", "name": "Core router", "url": f"http://127.0.0.1:{targets.port}/router",
                             "check_interval": 60, "timeout": 1, "retries": 0})
    monitor.upsert(router)
    runtime = monitor.runtimes["router"]

    clock_now = [time.time() - 3600]
    poller = Poller(db, SnmpClient(), None, clock=lambda: clock_now[0])
    poller.observer = alert_observer(engine)
    spec = build_device({"id": "edge-1", "name": "Edge 1", "address": f"127.0.0.1:{agent.port}",
                         "community": COMMUNITY, "timeout": 3, "retries": 1, "parent": "router"})
    # Nothing listens on port 9.
    gone = build_device({**spec.model_dump(mode="json"), "address": "127.0.0.1:9", "timeout": 0.5, "retries": 0})
    await db.devices.insert(spec)
    uptime = [100_000]

    async def settle() -> None:
        while engine._tasks:
            await asyncio.gather(*list(engine._tasks))
        await sender.run_once()

    async def poll(xe_oper: int = 1, reachable: bool = True) -> None:
        clock_now[0] += 60
        uptime[0] += 6000
        agent.serve(table(uptime[0], {1: {"name": "xe-0/0/1", "in": uptime[0], "out": 0, "oper": xe_oper}}))
        result = await poller.poll_now(spec if reachable else gone)
        assert result["reachable"] is reachable
        await settle()

    async def check_router(status: int) -> None:
        targets.status["router"] = status
        for _ in range(POLICY.detection_threshold if status != 200 else 1):
            await monitor.check(runtime)
        await settle()

    async def alerts() -> dict[str, dict[str, Any]]:
        rows = await db.pool.fetch("SELECT * FROM alerts ORDER BY id")
        return {r["rule_id"]: dict(r) for r in rows}

    def delivered() -> list[tuple[str, str]]:
        out = []
        for hit in receiver.accepted:
            body = json.loads(hit.body)
            out.append((body["title"], body["message"]))
        return out

    try:
        await poll()
        await poll()
        await check_router(500)  # the parent goes down: an outage, paged
        assert runtime.state.phase is Phase.OUTAGE
        assert len(delivered()) == 1 and "Core router" in delivered()[0][0]

        # The uplink goes down while the parent is down: recorded, held, paged to nobody; its
        # recovery under the hold pages nobody either.
        await poll(xe_oper=2)
        held = (await alerts())["uplink-down"]
        assert held["suppressed_by"] == "dependency:router" and held["was_suppressed"] is True
        await poll()
        assert (await alerts())["uplink-down"]["state"] == "resolved"
        assert len(delivered()) == 1

        # The device stops answering: one device alert, held too.
        await poll(reachable=False)
        await poll(reachable=False)
        device = (await alerts())["edge-unreachable"]
        assert device["endpoint_id"] == "device:edge-1" and device["suppressed_by"] == "dependency:router"
        assert len(delivered()) == 1

        # The parent is back, the device is still unreachable: its own problem, paged now.
        await check_router(200)
        await engine.tick()
        await settle()
        device = (await alerts())["edge-unreachable"]
        assert device["suppressed_by"] is None and device["was_suppressed"] is True
        titles = [t for t, _ in delivered()]
        assert len(titles) == 3 and "Core router" in titles[1] and "Edge 1" in titles[2]
        assert "paging was held while its parent router was down" in delivered()[2][1]

        await poll()  # the device answers again: resolved, paged once
        assert (await alerts())["edge-unreachable"]["state"] == "resolved"
        assert len(delivered()) == 4 and "Edge 1" in delivered()[3][0]
    finally:
        await engine.close()
        poller.client.close()
        await history.close()
        await events.close()
        await ctx.close()
