"""The latency view end to end: real ICMP checks of addresses in a network namespace, stored in
PostgreSQL, read back through ``GET /network/latency/{id}``.

The namespace ignores echo requests in the kernel and a userspace responder
(tests/integration/probes/icmp_support.py) answers them after a known delay, or answers only the
even sequence numbers: the median must be the delay within 1 ms and the loss exactly the dropped
share of a known number of packets. Needs root (namespaces, raw sockets): without it these tests fail, never skip.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from tests.integration.probes.icmp_support import free_prefix, namespace, require_root, responder

Client = TestClient[web.Request, web.Application]
DELAY = 0.03  # seconds before the responder answers
PACKETS = 20  # per check: Smokeping's default, the most a check may send
CHECKS = 3

# Runs inside the namespace, after icmp_support.RESPONDER_PRELUDE. argv: "<address>,<delay>,<mode>"
# rules, mode echo or drop-odd. Unlike the probe tests' responder (asyncio call_later, whose epoll
# timeouts round up to the next millisecond), a sender thread sleeps to just before each reply's
# due time and spins the rest, so the added delay is the stated one to a few microseconds: the test
# can hold the view to 1 ms.
RESPONDER = r"""
import heapq, threading, time

rules = {}
for arg in sys.argv[1:]:
    address, delay, mode = arg.split(",")
    rules[address] = (float(delay), mode)

due = []
ready = threading.Condition()

def send_when_due():
    while True:
        with ready:
            while not due:
                ready.wait()
            at, seq, packet, to = due[0]
            left = at - time.perf_counter()
            if left > 0.002:
                ready.wait(left - 0.002)
                continue
            heapq.heappop(due)
        while time.perf_counter() < at:
            pass
        sender.sendto(packet, to)

threading.Thread(target=send_when_due, daemon=True).start()
print("ready", flush=True)
n = 0
while True:
    packet = receiver.recv(65535)
    received = time.perf_counter()
    ihl = (packet[0] & 0x0F) * 4
    src, dst = packet[12:16], packet[16:20]
    icmp = packet[ihl:]
    rule = rules.get(socket.inet_ntoa(dst))
    if len(icmp) < 8 or icmp[0] != 8 or rule is None:
        continue
    delay, mode = rule
    if mode == "drop-odd" and struct.unpack("!H", icmp[6:8])[0] % 2:
        continue
    n += 1
    reply = ip_packet(dst, src, echo_reply(icmp[4:]))
    with ready:
        heapq.heappush(due, (received + delay, n, reply, (socket.inet_ntoa(src), 0)))
        ready.notify()
"""


@pytest.fixture(scope="module")
def addresses() -> Iterator[tuple[str, str, str]]:
    """(prompt, delayed, half-dropped): answered at once; after DELAY; after DELAY, even sequences only."""
    require_root()
    prefix = free_prefix()
    prompt, delayed, lossy = f"{prefix}2", f"{prefix}3", f"{prefix}4"
    rules = [f"{prompt},0,echo", f"{delayed},{DELAY},echo", f"{lossy},{DELAY},drop-odd"]
    # Real-time priority: on a loaded machine its timers would otherwise fire late, and the delay
    # the test knows would not be the delay the probe sees.
    with (
        namespace("lat", f"{prefix}1", (prompt, delayed, lossy)) as inside,
        responder([*inside, "chrt", "--fifo", "10"], RESPONDER, rules),
    ):
        yield prompt, delayed, lossy


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    db = await Database.connect(db_dsn, max_size=4)
    client: Client = TestClient(TestServer(create_app(AppServices.build(db, Settings()))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await db.close()


async def _create(client: Client, endpoint_id: str, host: str) -> None:
    body = {
        "id": endpoint_id,
        "name": endpoint_id,
        "url": host,
        "protocol": "icmp",
        "check_interval": 60,
        "timeout": 2.0,
        "retries": 0,
        "packet_count": PACKETS,
        "packet_interval": 0.01,
    }
    resp = await client.post("/services/", json=body)
    assert resp.status == 201, await resp.text()


async def _check(client: Client, endpoint_id: str) -> dict[str, Any]:
    resp = await client.post(f"/services/{endpoint_id}/check")
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def _one_step(client: Client, endpoint_id: str, since: datetime) -> dict[str, Any]:
    until = datetime.now(UTC) + timedelta(seconds=1)
    params = {"since": since.isoformat(), "until": until.isoformat(), "step": (until - since).total_seconds()}
    resp = await client.get(f"/network/latency/{endpoint_id}", params=params)
    assert resp.status == 200, await resp.text()
    [step] = (await resp.json())["steps"]
    return step


async def test_median_is_the_delay_and_every_packet_is_kept(
    client: Client, addresses: tuple[str, str, str]
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    await _create(client, "prompt", addresses[0])
    await _create(client, "delayed", addresses[1])
    for _ in range(CHECKS):
        await _check(client, "prompt")
        details = (await _check(client, "delayed"))["details"]
        assert details["packets_received"] == PACKETS, details
        assert len(details["rtts_ms"]) == PACKETS
        assert all(rtt >= DELAY * 1000 for rtt in details["rtts_ms"])
    base = await _one_step(client, "prompt", since)
    step = await _one_step(client, "delayed", since)
    total = CHECKS * PACKETS
    assert (step["checks"], step["packets_sent"], step["packets_received"]) == (CHECKS, total, total)
    assert step["loss_percent"] == 0
    assert step["median_ms"] - base["median_ms"] == pytest.approx(DELAY * 1000, abs=1), (step, base)
    smoke = step["smoke_ms"]
    assert DELAY * 1000 <= step["min_ms"] <= smoke["p10"] <= smoke["p25"] <= step["median_ms"]
    assert step["median_ms"] <= smoke["p75"] <= smoke["p90"] <= step["max_ms"]


async def test_loss_is_exact_over_all_packets(client: Client, addresses: tuple[str, str, str]) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    await _create(client, "lossy", addresses[2])
    for _ in range(CHECKS):
        await _check(client, "lossy")
    step = await _one_step(client, "lossy", since)
    # Odd sequence numbers (10 of every 20) are never answered.
    assert (step["packets_sent"], step["packets_received"]) == (CHECKS * PACKETS, CHECKS * PACKETS // 2)
    assert step["loss_percent"] == 50.0
    assert step["min_ms"] >= DELAY * 1000
