"""Flow alert rules (kind `flow`) end to end on real parts: Debian's softflowd reads pcaps written
here and exports NetFlow v9 to the collector; the collector's flush feeds `FlowWatch`, which feeds
the real alert engine and outbox; the real sender delivers to the alert tests' webhook receiver.

A flood towards customer C (10.9.0.0/16) for three minutes opens one alert per rule that selects
it (the customer rule and the prefix rule), once; two calm minutes clear each once; rules that
select other customers or prefixes never fire. Undeclared exporters' packets over a rate page too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.rules import AlertRule
from ispmon.alerts.sender import Sender
from ispmon.flows.alerting import FlowWatch
from ispmon.store.alerts import AlertRepo
from ispmon.store.notifications import NotificationRepo
from tests.integration.alerts.test_alert_delivery import Receiver, json_url, make_sender, receiver  # noqa: F401
from tests.integration.flows.pcap import Packet, write_pcap
from tests.integration.flows.test_softflowd import Rig, rig, softflowd  # noqa: F401

LIMIT = 20_000  # bit/s over a minute: 150,000 bytes in the minute
RULES = [
    {"id": "ddos-customer", "kind": "flow", "metric": "to_bps", "above": LIMIT, "customers": ["c-c"],
     "for_checks": 2, "clear_checks": 2, "severity": "major", "channels": ["hook"]},
    {"id": "ddos-prefix", "kind": "flow", "metric": "to_bps", "above": LIMIT, "prefixes": ["10.9.0.0/24"],
     "for_checks": 2, "clear_checks": 2, "channels": ["hook"]},
    # Rules that do not select the flooded customer or prefix, and one on the other direction.
    {"id": "other-customer", "kind": "flow", "metric": "to_bps", "above": LIMIT, "customers": ["c-a"],
     "channels": ["hook"]},
    {"id": "other-prefix", "kind": "flow", "metric": "to_bps", "above": LIMIT, "prefixes": ["10.1.0.0/16"],
     "channels": ["hook"]},
    {"id": "c-upload", "kind": "flow", "metric": "from_bps", "above": LIMIT, "customers": ["c-c"],
     "channels": ["hook"]},
]  # fmt: skip


class Alerting:
    def __init__(self, rig: Rig, engine: AlertEngine, sender: Sender, receiver: Receiver) -> None:  # noqa: F811
        self.rig, self.engine, self.sender, self.receiver = rig, engine, sender, receiver

    async def settle(self) -> None:
        while self.engine._tasks:
            await asyncio.gather(*list(self.engine._tasks))
        await self.sender.run_once()

    async def alerts(self) -> list[tuple[str, str, bool]]:
        rows = await self.rig.db.pool.fetch(
            "SELECT rule_id, endpoint_id, resolved_at FROM alerts ORDER BY id"
        )
        return [(r["rule_id"], r["endpoint_id"], r["resolved_at"] is not None) for r in rows]

    def delivered(self) -> list[str]:
        return [json.loads(h.body)["title"] for h in self.receiver.accepted]


@pytest.fixture
async def alerting(rig: Rig, receiver: Receiver) -> AsyncIterator[Alerting]:  # noqa: F811
    engine = AlertEngine(
        pool=rig.db.pool, alerts=AlertRepo(rig.db.pool), notifications=NotificationRepo(rig.db.pool),
        channels=ChannelRegistry([parse_channel("hook", json_url(receiver.port))]),
        default_channels=["hook"], link_base=None,
    )  # fmt: skip
    engine.configure([AlertRule.model_validate(r) for r in RULES], {})
    sender = make_sender(
        rig.db.pool, {"hook": json_url(receiver.port)}, receiver.port,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=1),
    )  # fmt: skip
    rig.collector.watch = FlowWatch(engine, rig.decoder, rig.collector.aggregator)
    try:
        yield Alerting(rig, engine, sender, receiver)
    finally:
        await engine.close()


def minute_of_traffic(start: float, flood: bool) -> list[Packet]:
    """One minute: A's ordinary traffic (in every minute, so the minute has flows) and, when
    `flood`, 200 packets of 1,000 bytes towards C from many sources (about 28 kbit/s over the
    minute). Ports differ per minute so that every minute's flows are flows of their own."""
    port = 10_000 + int(start) // 60 % 1000
    out = [Packet(start + i, "192.0.2.9", "10.1.3.7", 6, 443, port, 500) for i in range(5)]
    if flood:
        out += [Packet(start + 1 + i * 0.2, f"198.51.100.{i % 50 + 1}", "10.9.0.1", 17, port, 80, 972)
                for i in range(200)]  # fmt: skip
    else:
        out += [Packet(start + 1, "198.51.100.1", "10.9.0.1", 17, port, 80, 100)]
    return out


async def play(alerting: Alerting, tmp: Path, name: str, minutes: list[tuple[float, bool]]) -> None:
    pcap = tmp / f"{name}.pcap"
    write_pcap(pcap, [p for start, flood in minutes for p in minute_of_traffic(start, flood)])
    assert alerting.rig.collector.port is not None
    await asyncio.to_thread(softflowd, tmp, pcap, alerting.rig.collector.port, 9)
    await asyncio.sleep(0.3)
    assert await alerting.rig.collector.flush(everything=True)
    await alerting.settle()


async def test_a_flood_towards_a_customer_opens_once_and_clears_once(
    alerting: Alerting, tmp_path: Path
) -> None:
    a = time.time() // 60 * 60 - 600  # ten minutes ago: every minute is settled at once
    await play(alerting, tmp_path, "flood", [(a, True), (a + 60, True), (a + 120, True)])
    assert await alerting.alerts() == [
        ("ddos-customer", "customer:c-c", False),
        ("ddos-prefix", "prefix:10.9.0.0/24", False),
    ]  # fmt: skip
    titles = alerting.delivered()
    assert len(titles) == 2, titles
    assert all("to_bps" in t for t in titles) and any("customer c-c" in t for t in titles), titles
    row = await alerting.rig.db.pool.fetchrow(
        "SELECT started_at, details FROM alerts WHERE rule_id = 'ddos-customer'"
    )
    assert row["started_at"] == datetime.fromtimestamp(a + 60, UTC)  # the first minute over, at its end
    details = json.loads(row["details"]) if isinstance(row["details"], str) else row["details"]
    assert details["checks"] == 2 and details["value"] > LIMIT
    # Two calm minutes: each alert clears once; later minutes send nothing more.
    await play(alerting, tmp_path, "calm", [(a + 180, False), (a + 240, False)])
    assert await alerting.alerts() == [
        ("ddos-customer", "customer:c-c", True),
        ("ddos-prefix", "prefix:10.9.0.0/24", True),
    ]  # fmt: skip
    titles = alerting.delivered()
    assert len(titles) == 4 and all("CLEARED" in t for t in titles[2:]), titles
    await play(alerting, tmp_path, "later", [(a + 300, False)])
    assert len(alerting.delivered()) == 4
    # A replay of minutes already judged is stored, but not alerted on.
    watch = alerting.rig.collector.watch
    assert isinstance(watch, FlowWatch)
    await play(alerting, tmp_path, "replay", [(a, True), (a + 60, True)])
    assert watch.late_buckets == 2 and len(alerting.delivered()) == 4


async def test_undeclared_exporter_packets_over_a_rate_page_once(alerting: Alerting) -> None:
    rule = {
        "id": "strangers",
        "kind": "flow",
        "metric": "unknown_exporter_pps",
        "above": 1,
        "channels": ["hook"],
    }
    alerting.engine.configure([AlertRule.model_validate(rule)], {})
    collector = alerting.rig.collector
    assert collector.port is not None
    now = time.time()
    assert await collector.flush(now=now)  # the window starts
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.3", 0))  # an undeclared source
        for _ in range(120):
            s.sendto(b"\x00\x05" + b"\x00" * 70, ("127.0.0.1", collector.port))
    await asyncio.sleep(0.3)
    assert await collector.flush(now=now + 30)  # half a window: not judged yet
    await alerting.settle()
    assert await alerting.alerts() == []
    assert await collector.flush(now=now + 60)  # 120 packets in 60 s: 2/s > 1/s
    await alerting.settle()
    assert await alerting.alerts() == [("strangers", "flows:unknown-exporters", False)]
    assert await collector.flush(now=now + 120)  # a quiet minute: 0/s
    await alerting.settle()
    assert await alerting.alerts() == [("strangers", "flows:unknown-exporters", True)]
    titles = alerting.delivered()
    assert len(titles) == 2 and "unknown_exporter_pps 2" in titles[0] and "CLEARED" in titles[1], titles


async def test_an_open_flow_alert_clears_once_after_a_restart(alerting: Alerting, tmp_path: Path) -> None:
    a = time.time() // 60 * 60 - 600
    await play(alerting, tmp_path, "flood", [(a, True), (a + 60, True)])
    assert len(alerting.delivered()) == 2
    # The daemon restarts: a new engine loads the open alerts and resumes them as firing.
    await alerting.engine.close()
    engine = AlertEngine(
        pool=alerting.rig.db.pool, alerts=AlertRepo(alerting.rig.db.pool),
        notifications=NotificationRepo(alerting.rig.db.pool),
        channels=ChannelRegistry([parse_channel("hook", json_url(alerting.receiver.port))]),
        default_channels=["hook"], link_base=None,
    )  # fmt: skip
    engine.configure([AlertRule.model_validate(r) for r in RULES], {})
    await engine.load()
    alerting.engine = engine
    alerting.rig.collector.watch = FlowWatch(engine, alerting.rig.decoder, alerting.rig.collector.aggregator)
    try:
        await play(alerting, tmp_path, "calm", [(a + 120, False), (a + 180, False)])
        assert [resolved for _r, _s, resolved in await alerting.alerts()] == [True, True]
        titles = alerting.delivered()
        assert len(titles) == 4 and all("CLEARED" in t for t in titles[2:]), titles
    finally:
        await engine.close()
