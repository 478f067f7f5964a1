"""A flow alert through the daemon as a process: `ispmon run` with a config file declaring an
exporter, a customer, a webhook channel and a flow rule; Debian's softflowd exports a flood towards
the customer and then calm minutes; the webhook receiver gets the breach once and the clearance
once, and a rule for another customer pages nothing."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.flows.pcap import write_pcap
from tests.integration.flows.test_flow_alerts import minute_of_traffic
from tests.integration.flows.test_softflowd import softflowd

from .test_alerting import Receiver, receiver  # noqa: F401
from .test_daemon import Daemon, free_port, poll, wait_for_datagram

pytestmark = pytest.mark.timeout(240)
FLUSH = 1.0  # FLOW_FLUSH_INTERVAL: ten times as often as by default, so the pages come sooner


async def _async(fn: Any) -> Any:
    return fn()


async def test_a_flood_pages_once_and_clears_once_through_the_daemon(
    tmp_path: Path,
    notify_socket: tuple[Path, socket.socket],
    receiver: Receiver,  # noqa: F811
    db_dsn: str,
) -> None:
    notify_path, notify = notify_socket
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f"""
[settings]
alert_notification_channels = "webhook"

[channels]
webhook = "json://noc:pw@127.0.0.1:{receiver.port}/hook"

[[flow_exporters]]
id = "border"
address = "127.0.0.1"

[[customers]]
id = "c-a"
name = "A"
prefixes = ["10.1.0.0/16"]

[[customers]]
id = "c-c"
name = "C"
prefixes = ["10.9.0.0/16"]

[[alert_rules]]
id = "ddos-c"
kind = "flow"
metric = "to_bps"
above = 20000
customers = ["c-c"]
for_checks = 2
clear_checks = 2
channels = ["webhook"]

[[alert_rules]]
id = "ddos-a"
kind = "flow"
metric = "to_bps"
above = 20000
customers = ["c-a"]
channels = ["webhook"]
"""
    )
    flow_port = free_port()
    env = {
        "ISPMON_CONFIG": str(config),
        "FLOW_ADDRESS": "127.0.0.1",
        "FLOW_PORT": str(flow_port),
        "FLOW_FLUSH_INTERVAL": str(FLUSH),
        "DATABASE_URL": db_dsn,  # the test server's: no embedded server to initialise and start
    }
    daemon = Daemon(tmp_path, free_port(), notify_path, env)
    base = f"http://127.0.0.1:{daemon.api_port}"
    a = time.time() // 60 * 60 - 600  # ten minutes ago: judged as soon as they are flushed

    async def play(name: str, minutes: list[tuple[float, bool]]) -> None:
        pcap = tmp_path / f"{name}.pcap"
        write_pcap(pcap, [p for start, flood in minutes for p in minute_of_traffic(start, flood)])
        await asyncio.to_thread(softflowd, tmp_path, pcap, flow_port, 9)

    async with aiohttp.ClientSession() as http:

        async def alerts() -> Any:
            async with http.get(base + "/alerts/") as resp:
                assert resp.status == 200
                return await resp.json()

        daemon.start()
        try:
            await wait_for_datagram(notify, "READY=1", timeout=90)
            await play("flood", [(a, True), (a + 60, True), (a + 120, True)])
            # The flusher runs every FLUSH s; then the engine opens the alert and the sender pages.
            await poll(lambda: _async(receiver.titles), lambda t: len(t) >= 1, 60, "the breach page")
            assert "to_bps" in receiver.titles()[0] and "c-c" in receiver.titles()[0], receiver.titles()
            body = await alerts()
            assert [(i["rule_id"], i["endpoint_id"]) for i in body["items"]] == [("ddos-c", "customer:c-c")]
            await play("calm", [(a + 180, False), (a + 240, False)])
            await poll(lambda: _async(receiver.titles), lambda t: len(t) >= 2, 60, "the cleared page")
            await asyncio.sleep(3 * FLUSH)  # a few more flushes: nothing is sent again
            titles = receiver.titles()
            assert len(titles) == 2 and "CLEARED" in titles[1], titles
            body = await alerts()
            assert [(i["rule_id"], i["state"]) for i in body["items"]] == [("ddos-c", "resolved")]
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                assert daemon.terminate() == 0
            daemon.cleanup()
