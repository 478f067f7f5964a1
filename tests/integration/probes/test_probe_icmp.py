"""The ICMP probe against loopback and against addresses in a network namespace made for the test.

netem is not available on these machines, so latency and loss come from a userspace responder
(tests/integration/probes/icmp_support.py): the namespace ignores echo requests in the kernel and
a small raw-socket script answers them, per destination address, after a known delay, or drops the
odd sequence numbers, or answers "host unreachable", or stays silent.

Needs root (namespaces, raw sockets): without it these tests fail with a message, never skip.
Addresses are 198.18.x.0/24 (RFC 2544 benchmarking) and exist only on the veth pair made here.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.models import ErrorKind, Protocol, Status
from ispmon.probes.base import PROBES, ProbeContext, run_attempt
from ispmon.probes.icmp import probe
from tests.integration.probes.icmp_support import free_prefix, namespace, require_root, responder, run

DELAY = 0.08  # seconds the responder waits before answering the "slow" address

# Runs inside the namespace, after icmp_support.RESPONDER_PRELUDE. argv: "<address>,<delay>,<mode>"
# rules; mode is echo, drop-odd or unreach. Requests to addresses without a rule go unanswered.
RESPONDER = r"""
import asyncio

rules = {}
for arg in sys.argv[1:]:
    address, delay, mode = arg.split(",")
    rules[address] = (float(delay), mode)

seen = {}
receiver.setblocking(False)

def on_readable():
    while True:
        try:
            packet = receiver.recv(65535)
        except BlockingIOError:
            return
        ihl = (packet[0] & 0x0F) * 4
        src, dst = packet[12:16], packet[16:20]
        icmp = packet[ihl:]
        rule = rules.get(socket.inet_ntoa(dst))
        if len(icmp) < 8 or icmp[0] != 8 or rule is None:
            continue
        delay, mode = rule
        # Every other request to the address, counted here: the probe's sequence numbers are shared
        # by all its probes in flight, so their parity says nothing about one probe's packets.
        seen[dst] = seen.get(dst, 0) + 1
        if mode == "drop-odd" and seen[dst] % 2 == 0:
            continue
        if mode == "unreach":
            body = with_checksum(struct.pack("!BBHI", 3, 1, 0, 0) + packet[: ihl + 8], 2)
        else:
            body = echo_reply(icmp[4:])
        loop.call_later(delay, sender.sendto, ip_packet(dst, src, body), (socket.inet_ntoa(src), 0))

loop = asyncio.new_event_loop()
loop.add_reader(receiver.fileno(), on_readable)
print("ready", flush=True)
loop.run_forever()
"""


@dataclass(frozen=True)
class Netns:
    slow: str  # echo after DELAY
    lossy: str  # echo at once, every second request dropped
    silent: str  # never answered
    unreachable: str  # answered with ICMP "host unreachable"


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    require_root()  # module fixtures are set up before the autouse check runs
    prefix = free_prefix()
    spec = Netns(slow=f"{prefix}2", lossy=f"{prefix}3", silent=f"{prefix}4", unreachable=f"{prefix}5")
    addresses = (spec.slow, spec.lossy, spec.silent, spec.unreachable)
    rules = [f"{spec.slow},{DELAY},echo", f"{spec.lossy},0,drop-odd", f"{spec.unreachable},0,unreach"]
    with namespace("icmp", f"{prefix}1", addresses, loopback_up=True) as inside, responder(inside, RESPONDER, rules):
        yield spec


@pytest.fixture(scope="module")
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext()
    yield context
    await context.close()


def _endpoint(host: str, **extra: Any) -> EndpointSpec:
    data: dict[str, Any] = {
        "name": f"ping {host}",
        "url": host,
        "protocol": "icmp",
        "check_interval": 60,
        "timeout": 1.0,
        "retries": 0,
        "packet_count": 3,
        "packet_interval": 0.02,
    }
    return build_endpoint(data | extra)


def _assert_consistent(details: dict[str, Any]) -> None:
    assert details["rtt_min_ms"] <= details["rtt_avg_ms"] <= details["rtt_max_ms"]
    assert details["jitter_ms"] >= 0
    sent, received = details["packets_sent"], details["packets_received"]
    assert details["loss_percent"] == pytest.approx(100 * (sent - received) / sent)


async def test_table_points_to_this_module() -> None:
    assert PROBES[Protocol.ICMP] is probe


async def test_loopback_up(ctx: ProbeContext) -> None:
    result = await probe(_endpoint("127.0.0.1"), 1.0, ctx)
    assert result.status is Status.UP, result
    assert result.error_kind is None
    assert (result.details["packets_sent"], result.details["packets_received"]) == (3, 3)
    assert result.details["loss_percent"] == 0
    _assert_consistent(result.details)
    assert result.response_time_ms == result.details["rtt_avg_ms"]
    assert result.response_time_ms is not None and 0 < result.response_time_ms < 50


async def test_host_name_is_resolved(ctx: ProbeContext) -> None:
    result = await probe(_endpoint("localhost"), 1.0, ctx)
    assert result.status is Status.UP, result
    assert result.details["address"] in ("127.0.0.1", "::1")


async def test_delay_shows_in_rtt_and_degrades(netns: Netns, ctx: ProbeContext) -> None:
    result = await probe(_endpoint(netns.slow), 1.0, ctx)
    assert result.status is Status.UP, result
    assert result.details["rtt_min_ms"] >= DELAY * 1000
    _assert_consistent(result.details)

    ep = _endpoint(netns.slow, degraded_response_time_ms=DELAY * 1000 / 2)
    result = await probe(ep, 1.0, ctx)
    assert (result.status, result.error_kind) == (Status.DEGRADED, ErrorKind.SLOW), result
    assert result.response_time_ms is not None and result.response_time_ms >= DELAY * 1000
    assert result.error is not None and "average RTT" in result.error


async def test_loss_above_threshold_degrades(netns: Netns, ctx: ProbeContext) -> None:
    ep = _endpoint(netns.lossy, packet_count=4, loss_threshold_percent=20, timeout=0.8)
    start = time.perf_counter()
    result = await probe(ep, 0.8, ctx)
    assert time.perf_counter() - start < 0.8
    assert (result.status, result.error_kind) == (Status.DEGRADED, ErrorKind.PACKET_LOSS), result
    assert result.details["loss_percent"] == 50
    assert (result.details["packets_sent"], result.details["packets_received"]) == (4, 2)
    _assert_consistent(result.details)

    ep = _endpoint(netns.lossy, packet_count=4, loss_threshold_percent=50, timeout=0.8)
    assert (await probe(ep, 0.8, ctx)).status is Status.UP


async def test_no_reply_is_down_timeout_within_the_limit(netns: Netns, ctx: ProbeContext) -> None:
    # 5 packets 0.2 s apart do not fit in 0.5 s: the probe shortens the interval instead of
    # running into the scheduler's hard limit.
    ep = _endpoint(netns.silent, packet_count=5, packet_interval=0.2, timeout=0.5)
    start = time.perf_counter()
    result = await run_attempt(ep, ctx, 0.5)
    # 50 ms of slack for a loaded machine (seen: 503 ms while another suite ran); without the
    # shortened interval it takes 0.8 s or more.
    assert time.perf_counter() - start < 0.55
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), result
    assert result.error == f"no echo reply from {netns.silent} (5 sent)"
    assert result.response_time_ms is None
    assert result.details["loss_percent"] == 100 and result.details["rtt_avg_ms"] is None


async def test_destination_unreachable(netns: Netns, ctx: ProbeContext) -> None:
    result = await probe(_endpoint(netns.unreachable, packet_count=2), 0.5, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.UNREACHABLE), result
    assert result.error is not None and "unreachable" in result.error.lower()


async def test_unresolvable_name_is_down_dns(ctx: ProbeContext) -> None:
    result = await probe(_endpoint("nonexistent.invalid"), 1.0, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.DNS), result
    assert result.error is not None and result.error.startswith("nonexistent.invalid: name did not resolve")


def _ping_group_allows_us() -> bool:
    with open("/proc/sys/net/ipv4/ping_group_range") as fh:
        low, high = (int(n) for n in fh.read().split())
    return any(low <= gid <= high for gid in {os.getgid(), *os.getgroups()})


async def test_unprivileged_mode_needs_ping_group_range() -> None:
    context = ProbeContext(icmp_privileged=False)
    try:
        result = await probe(_endpoint("127.0.0.1", packet_count=1), 1.0, context)
    finally:
        await context.close()
    if _ping_group_allows_us():
        assert result.status is Status.UP, result
    else:
        assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.PERMISSION), result
        assert result.error is not None
        assert "CAP_NET_RAW" in result.error and "ping_group_range" in result.error


async def test_concurrent_probes_do_not_mix_replies(netns: Netns, ctx: ProbeContext) -> None:
    # Raw sockets see every echo reply on the host; each probe must count only its own.
    results = await asyncio.gather(
        *(
            probe(_endpoint(host, packet_count=4), 1.0, ctx)
            for host in [netns.slow, netns.lossy, "127.0.0.1"] * 3
        )
    )
    for result in results[0::3]:
        assert result.details["packets_received"] == 4 and result.details["rtt_min_ms"] >= DELAY * 1000
    # The responder drops every second request to the lossy address, whichever probe sent it.
    assert sum(result.details["packets_received"] for result in results[1::3]) == 6
    for result in results[2::3]:
        assert result.details["packets_received"] == 4 and result.details["rtt_max_ms"] < DELAY * 1000


def test_no_route_is_down_unreachable() -> None:
    # In a fresh namespace only `lo` exists (and is down): sending fails with ENETUNREACH at once.
    name = f"ispmon-noroute-{os.getpid()}"
    script = (
        "import asyncio, sys\n"
        "from ispmon.availability.endpoints import build_endpoint\n"
        "from ispmon.probes.base import ProbeContext\n"
        "from ispmon.probes.icmp import probe\n"
        "ep = build_endpoint({'name': 'x', 'url': '198.18.0.1', 'protocol': 'icmp', 'check_interval': 60})\n"
        "r = asyncio.run(probe(ep, 1.0, ProbeContext()))\n"
        "print(r.status.value, r.error_kind.value, r.details['packets_sent'], r.error)\n"
    )
    run("ip", "netns", "add", name)
    try:
        out = run("ip", "netns", "exec", name, sys.executable, "-c", script)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    assert out.startswith("down unreachable 0 cannot send to 198.18.0.1:"), out
    assert "unreachable" in out.lower()
