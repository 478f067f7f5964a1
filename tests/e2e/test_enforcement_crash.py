"""`kill -9` of a real `ispmon run` while a quota enforcement is in flight, then a restart.

Debian's radclient sends the Interim-Update that puts carol over her quota to the daemon's
listener; the daemon's quota pass writes the audit row and sends. The NAS (CoA listener written in
the test, pyrad's codec, verifying the Request Authenticator) or the billing webhook (aiohttp's
server) has the request in hand and has not answered when the daemon is killed. After the
restart the request goes out again, the same CoA for the same Acct-Session-Id or the same
Idempotency-Key; it is answered, and the outcome is recorded once, on one audit row, and nothing
is sent again at the passes that follow.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.test_daemon import Daemon, free_port, poll, wait_for_datagram
from tests.e2e.test_radius_crash import free_udp_port
from tests.integration.usage.radclient import packet, radclient
from tests.integration.usage.test_enforcement import SECRET, Nas

pytestmark = pytest.mark.timeout(240)


class Billing:
    """Holds every request until `answer` is set (as a billing system mid-request), then 200."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict[str, Any]]] = []
        self.answer = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Idempotency-Key"), json.loads(await request.read())))
        await self.answer.wait()
        return web.Response(status=200)


@pytest.fixture
async def billing() -> AsyncIterator[tuple[Billing, str]]:
    found = Billing()
    app = web.Application()
    app.router.add_post("/quota", found.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield found, f"http://127.0.0.1:{port}/quota"
    finally:
        found.answer.set()
        await runner.cleanup()


@pytest.fixture
async def nas() -> AsyncIterator[tuple[Nas, int]]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Nas("none"), local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


def config_text(coa_port: int, enforcement: str) -> str:
    return (
        f'[[radius_clients]]\nid = "bras-1"\naddress = "127.0.0.1"\nsecret = "{SECRET}"\ncoa_port = {coa_port}\n'
        f'[[customers]]\nid = "carol"\nname = "Carol"\nusernames = ["carol"]\nquota_bytes = 1000\n'
        f"enforcement = {enforcement}\n"
    )


async def crash_while_in_flight(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], config: str, received: Any
) -> tuple[Daemon, str]:
    """Start the daemon, put carol over her quota, kill -9 it once `received()` is true (the
    request is at the peer, unanswered); then start it again. Returns the daemon and its API URL."""
    notify_path, notify = notify_socket
    udp_port = free_udp_port()
    (tmp_path / "ispmon.toml").write_text(config)
    api_port = free_port()
    daemon = Daemon(
        tmp_path, api_port, notify_path,
        {"RADIUS_ACCT_PORT": str(udp_port), "RADIUS_ACCT_ADDRESS": "127.0.0.1",
         "ISPMON_CONFIG": str(tmp_path / "ispmon.toml"), "QUOTA_PASS_INTERVAL": "0.3",
         # No flow collector: its default port 2055 may be held by another daemon on the machine.
         "FLOW_PORT": "0"},
    )  # fmt: skip
    daemon.start()
    await wait_for_datagram(notify, "READY=1", timeout=90)
    code, out = await radclient(
        udp_port,
        [packet(**{"Acct-Status-Type": "Interim-Update", "Acct-Session-Id": "S-9", "User-Name": "carol",
                   "NAS-IP-Address": "127.0.0.1", "Acct-Input-Octets": 300, "Acct-Output-Octets": 800})],
        SECRET,
    )  # fmt: skip
    assert code == 0, out
    for _ in range(300):
        if received():
            break
        await asyncio.sleep(0.02)
    assert received(), "the daemon sent nothing"
    daemon.kill9()  # the request is out, its answer not in: the audit row is pending
    daemon.start()
    await wait_for_datagram(notify, "READY=1", timeout=90)
    return daemon, f"http://127.0.0.1:{api_port}"


async def trail(http: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/enforcements/") as resp:
        items: list[dict[str, Any]] = (await resp.json())["items"]
        return items


async def test_kill_9_with_a_coa_in_flight_resends_it_and_records_the_ack_once(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], nas: tuple[Nas, int]
) -> None:
    listener, coa_port = nas
    daemon, base = await crash_while_in_flight(
        tmp_path, notify_socket, config_text(coa_port, '{ policy = "coa", attributes = { Filter-Id = "throttled" } }'),
        lambda: bool(listener.received),
    )  # fmt: skip
    try:
        before = len(listener.received)
        listener.answer = "ack"  # the NAS answers the restarted daemon's request
        async with aiohttp.ClientSession() as http:
            rows = await poll(
                lambda: trail(http, base), lambda r: r and r[0]["state"] == "acked", 30, "the ack"
            )
            await asyncio.sleep(1.0)  # three more passes: nothing more is sent
            rows = await trail(http, base)
            async with http.get(f"{base}/customers/carol/usage/summary") as resp:
                summary = await resp.json()
        assert [(r["action"], r["state"], r["attempts"], r["target"]) for r in rows] == [
            ("coa", "acked", 2, "bras-1/S-9")  # one row; one attempt before the kill, one after
        ]
        assert rows[0]["idempotency_key"].startswith("carol:") and rows[0]["idempotency_key"].endswith(
            ":bras-1/S-9"
        )
        after = listener.received[before:]
        assert len(after) == 1, listener.received  # acked at once, then never again
        for request in listener.received:  # the same request each time, correctly signed
            assert request["verified"] and request["code"] == 43  # CoA-Request
            assert request["attrs"]["Acct-Session-Id"] == ["S-9"]
            assert request["attrs"]["User-Name"] == ["carol"]
            assert request["attrs"]["Filter-Id"] == ["throttled"]
        assert summary["used_bytes"] == 1100  # the interim counted once across the crash
        enforced = [line for line in daemon.log_lines() if line.get("event") == "quota_enforced"]
        assert [(line["action"], line["state"]) for line in enforced] == [("coa", "acked")]
    finally:
        daemon.cleanup()


async def test_kill_9_with_a_webhook_in_flight_resends_the_same_key_and_records_it_once(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], billing: tuple[Billing, str]
) -> None:
    receiver, url = billing
    daemon, base = await crash_while_in_flight(
        tmp_path, notify_socket, config_text(9, f'{{ policy = "webhook", url = "{url}" }}'),
        lambda: bool(receiver.received),
    )  # fmt: skip
    try:
        receiver.answer.set()
        async with aiohttp.ClientSession() as http:
            await poll(lambda: trail(http, base), lambda r: r and r[0]["state"] == "sent", 30, "the delivery")
            await asyncio.sleep(1.0)
            rows = await trail(http, base)
        assert [(r["action"], r["state"], r["attempts"]) for r in rows] == [("webhook", "sent", 2)]
        keys = {key for key, _ in receiver.received} | {
            body["idempotency_key"] for _, body in receiver.received
        }
        assert keys == {rows[0]["idempotency_key"]}  # one key, before the kill and after
        assert len(receiver.received) == 2
    finally:
        daemon.cleanup()
