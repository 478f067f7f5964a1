"""The shared ICMP socket (ispmon.probes.icmpmux) hands each reply to the right probe, with real
packets: hosts in a network namespace made here, kernel echo replies off, a userspace responder
that answers out of order, late, twice, with another identifier, or from another address.

Needs root (namespaces, raw sockets): without it these tests fail with a message, never skip.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.models import ErrorKind, Status
from ispmon.probes.base import ProbeContext
from ispmon.probes.icmp import probe
from tests.integration.probes.icmp_support import free_prefix, namespace, require_root, responder, run

LATE = 0.4  # the "late" host answers after this, beyond the first probe's timeout

# After icmp_support.RESPONDER_PRELUDE. argv: "<address>,<mode>"; modes: shuffle (random delay
# 0-100 ms), late, dup, otherid, foreign (answer from the address named FOREIGN, which nobody pings).
RESPONDER = r"""
import asyncio, random

rules = dict(arg.split(",") for arg in sys.argv[2:])
foreign = socket.inet_aton(sys.argv[1])
receiver.setblocking(False)

def reply(src, dst, rest):
    sender.sendto(ip_packet(dst, src, echo_reply(rest)), (socket.inet_ntoa(src), 0))

def on_readable():
    while True:
        try:
            packet = receiver.recv(65535)
        except BlockingIOError:
            return
        ihl = (packet[0] & 0x0F) * 4
        src, dst = packet[12:16], packet[16:20]
        icmp = packet[ihl:]
        mode = rules.get(socket.inet_ntoa(dst))
        if len(icmp) < 8 or icmp[0] != 8 or mode is None:
            continue
        rest = icmp[4:]
        if mode == "shuffle":
            loop.call_later(random.random() * 0.1, reply, src, dst, rest)
        elif mode == "late":
            loop.call_later(LATE, reply, src, dst, rest)
        elif mode == "dup":
            reply(src, dst, rest)
            reply(src, dst, rest)
        elif mode == "otherid":
            ident = struct.unpack("!H", rest[:2])[0]
            reply(src, dst, struct.pack("!H", (ident + 1) & 0xFFFF) + rest[2:])
        elif mode == "foreign":
            reply(src, foreign, rest)

LATE = float(__import__("os").environ["LATE"])
loop = asyncio.new_event_loop()
loop.add_reader(receiver.fileno(), on_readable)
print("ready", flush=True)
loop.run_forever()
"""

MODES = ("shuffle", "late", "dup", "otherid", "foreign")


@pytest.fixture(autouse=True)
def _root() -> None:
    require_root()


@pytest.fixture(scope="module")
def hosts() -> Iterator[dict[str, str]]:
    require_root()
    prefix = free_prefix()
    spec = {mode: f"{prefix}{i + 2}" for i, mode in enumerate(MODES)}
    foreign = f"{prefix}100"
    rules = [foreign, *(f"{address},{mode}" for mode, address in spec.items())]
    with (
        namespace("mux", f"{prefix}1", [*spec.values(), foreign]) as inside,
        responder([*inside, "env", f"LATE={LATE}"], RESPONDER, rules),
    ):
        yield spec


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext(icmp_privileged=True)  # the raw socket: the case that needs sharing
    yield context
    await context.close()


def _endpoint(host: str, **extra: Any) -> EndpointSpec:
    data = {
        "name": f"ping {host}",
        "url": host,
        "protocol": "icmp",
        "check_interval": 60,
        "timeout": 1.0,
        "retries": 0,
        "packet_count": 3,
        "packet_interval": 0.01,
    }
    return build_endpoint(data | extra)


def _sockets_open() -> int:
    return sum(
        os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        for fd in os.listdir("/proc/self/fd")
        if os.path.exists(f"/proc/self/fd/{fd}")
    )


async def test_many_probes_in_flight_share_one_socket_and_get_their_own_replies(
    hosts: dict[str, str], ctx: ProbeContext
) -> None:
    before = _sockets_open()
    seen: list[int] = []

    async def sample() -> None:
        for _ in range(20):
            await asyncio.sleep(0.02)
            seen.append(_sockets_open())

    results, _ = await asyncio.gather(
        asyncio.gather(*(probe(_endpoint(hosts["shuffle"]), 1.5, ctx) for _ in range(300))), sample()
    )
    # Replies arrive in random order across and within probes; each probe still gets its three.
    assert [(r.status, r.details["packets_received"]) for r in results] == [(Status.UP, 3)] * 300
    assert max(seen) <= before + 1  # one ICMP socket for 300 probes, not 300
    assert ctx.icmp_socket(4).in_flight == 0


async def test_duplicate_replies_count_once(hosts: dict[str, str], ctx: ProbeContext) -> None:
    result = await probe(_endpoint(hosts["dup"], packet_count=5), 1.0, ctx)
    assert (result.status, result.details["packets_received"], result.details["loss_percent"]) == (
        Status.UP,
        5,
        0,
    )
    await asyncio.sleep(0.05)
    assert ctx.icmp_socket(4).ignored["late or duplicate"] == 5


async def test_reply_with_another_identifier_is_ignored(hosts: dict[str, str], ctx: ProbeContext) -> None:
    result = await probe(_endpoint(hosts["otherid"], packet_count=2), 0.5, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), result
    # At least: a raw socket also sees other processes' echo replies on this host.
    assert ctx.icmp_socket(4).ignored["other identifier"] >= 2


async def test_reply_from_a_host_we_did_not_ping_is_ignored(hosts: dict[str, str], ctx: ProbeContext) -> None:
    # Right identifier and sequence, wrong source address.
    result = await probe(_endpoint(hosts["foreign"], packet_count=2), 0.5, ctx)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), result
    assert ctx.icmp_socket(4).ignored["other source"] == 2


async def test_late_reply_is_not_given_to_the_next_probe(hosts: dict[str, str], ctx: ProbeContext) -> None:
    first = await probe(_endpoint(hosts["late"], packet_count=1), 0.2, ctx)
    assert (first.status, first.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), first
    # The next probe's echo is out while the first one's reply arrives (about 0.2 s from now).
    second = await probe(_endpoint(hosts["late"], packet_count=1), 1.0, ctx)
    assert second.status is Status.UP, second
    assert second.details["rtt_min_ms"] >= LATE * 1000  # its own reply, not the first one's
    assert ctx.icmp_socket(4).ignored["late or duplicate"] == 1


def test_datagram_sockets_are_shared_too_where_ping_group_range_allows() -> None:
    # ping_group_range is per namespace: widen it in a fresh one, so the unprivileged path runs.
    name = f"ispmon-dgram-{os.getpid()}"
    script = (
        "import asyncio, os\n"
        "from ispmon.availability.endpoints import build_endpoint\n"
        "from ispmon.probes.base import ProbeContext\n"
        "from ispmon.probes.icmp import probe\n"
        "def socks():\n"
        "    return sum(os.readlink(f'/proc/self/fd/{f}').startswith('socket:') for f in os.listdir('/proc/self/fd')\n"
        "               if os.path.exists(f'/proc/self/fd/{f}'))\n"
        "async def main():\n"
        "    ctx = ProbeContext(icmp_privileged=False)\n"
        "    ep = build_endpoint({'name': 'x', 'url': '127.0.0.1', 'protocol': 'icmp', 'check_interval': 60,\n"
        "                         'packet_count': 5, 'packet_interval': 0.01})\n"
        "    before, seen = socks(), []\n"
        "    async def sample():\n"
        "        for _ in range(5):\n"
        "            await asyncio.sleep(0.01)\n"
        "            seen.append(socks())\n"
        "    rs, _ = await asyncio.gather(asyncio.gather(*(probe(ep, 1.0, ctx) for _ in range(50))), sample())\n"
        "    print(sorted({(r.status.value, r.details['packets_received']) for r in rs}), max(seen) - before)\n"
        "    await ctx.close()\n"
        "asyncio.run(main())\n"
    )
    run("ip", "netns", "add", name)
    try:
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647")
        out = run("ip", "netns", "exec", name, sys.executable, "-c", script)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
    assert out.split() == ["[('up',", "5)]", "1"], out
