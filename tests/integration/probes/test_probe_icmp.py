"""The ICMP probe against loopback and against addresses in a network namespace made for the test.

netem is not available on these machines, so latency and loss come from a userspace responder:
the namespace ignores echo requests in the kernel (net.ipv4.icmp_echo_ignore_all=1) and a small
raw-socket script run with `ip netns exec` answers them, per destination address, after a known
delay, or drops the odd sequence numbers, or answers "host unreachable", or stays silent.

Needs root (namespaces, raw sockets): without it these tests fail with a message, never skip.
Addresses are 198.18.x.0/24 (RFC 2544 benchmarking) and exist only on the veth pair made here.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
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

DELAY = 0.08  # seconds the responder waits before answering the "slow" address

# Runs inside the namespace. argv: "<address>,<delay>,<mode>" rules; mode is echo, drop-odd or
# unreach. Requests to addresses without a rule go unanswered.
RESPONDER = r"""
import asyncio, socket, struct, sys

rules = {}
for arg in sys.argv[1:]:
    address, delay, mode = arg.split(",")
    rules[address] = (float(delay), mode)

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF

def with_checksum(header, offset):
    return header[:offset] + struct.pack("!H", checksum(header)) + header[offset + 2:]

seen = {}
receiver = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
receiver.setblocking(False)
sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # we write the IP header

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
            body = struct.pack("!BBHI", 3, 1, 0, 0) + packet[: ihl + 8]
        else:
            body = struct.pack("!BBH", 0, 0, 0) + icmp[4:]
        body = with_checksum(body, 2)
        # Reply from the address that was pinged, not the interface's primary address.
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 0, 0, 64, 1, 0, dst, src)
        loop.call_later(delay, sender.sendto, with_checksum(ip, 10) + body, (socket.inet_ntoa(src), 0))

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


def _run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _free_prefix() -> str:
    """A 198.18.x. /24 that no address or route on this machine uses yet."""
    used = _run("ip", "-4", "-o", "addr") + _run("ip", "-4", "route")
    for i in range(254):
        prefix = f"198.18.{(os.getpid() + i) % 254 + 1}."
        if prefix not in used:
            return prefix
    raise RuntimeError("no free 198.18.x.0/24 for the test namespace")


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"ICMP responder did not start: {line!r} {err}")


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the ICMP tests need root (network namespaces, raw sockets); run them as root as CI does")


@pytest.fixture(autouse=True)
def _root() -> None:
    _require_root()


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    _require_root()  # module fixtures are set up before the autouse check runs
    if shutil.which("ip") is None:
        pytest.fail("the ICMP tests need iproute2's `ip` command")
    pid = os.getpid()
    name, host_if, ns_if = f"ispmon-icmp-{pid}", f"isp{pid}h", f"isp{pid}n"
    prefix = _free_prefix()
    spec = Netns(slow=f"{prefix}2", lossy=f"{prefix}3", silent=f"{prefix}4", unreachable=f"{prefix}5")
    responder: subprocess.Popen[str] | None = None
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name)
        _run("ip", "addr", "add", f"{prefix}1/24", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        inside = ("ip", "netns", "exec", name)
        _run(*inside, "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1")
        for address in (spec.slow, spec.lossy, spec.silent, spec.unreachable):
            _run(*inside, "ip", "addr", "add", f"{address}/24", "dev", ns_if)
        _run(*inside, "ip", "link", "set", ns_if, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        rules = [f"{spec.slow},{DELAY},echo", f"{spec.lossy},0,drop-odd", f"{spec.unreachable},0,unreach"]
        responder = subprocess.Popen(
            [*inside, sys.executable, "-c", RESPONDER, *rules],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_ready(responder)
        yield spec
    finally:
        if responder is not None:
            responder.terminate()
            try:
                responder.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                responder.kill()
                responder.communicate()
        # Deleting the namespace deletes its veth end, and with it the host end.
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], check=False, capture_output=True)


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
    _run("ip", "netns", "add", name)
    try:
        out = _run("ip", "netns", "exec", name, sys.executable, "-c", script)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    assert out.startswith("down unreachable 0 cannot send to 198.18.0.1:"), out
    assert "unreachable" in out.lower()
