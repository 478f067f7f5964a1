"""CPU per DNS check: the DNS probe as it is (dnspython, a socket per check) beside the aiodns /
c-ares path it replaced (issue 9), at the same rate, in the same run, against the same dnsmasq.

    python bench/dns_client.py                      # 500 checks/s, 3 rounds of 10 s per client
    python bench/dns_client.py --rate 1000 --seconds 5 --rounds 2

ispmon's process is pinned to CPU 0 and dnsmasq to CPU 1, so the process CPU time (user + system,
all threads: c-ares' event thread is counted for the old path) is the client's alone. The two
clients alternate round by round so that drift on this shared virtual machine hits both alike.
Each check asks for a name dnsmasq answers locally (one A record). Loopback only; every phase is
bounded in count and time, and dnsmasq is stopped at the end.

"old" is the previous `ispmon.probes.dns` hot path, kept here for the comparison only: one
aiodns resolver per (resolver, port, timeout), its c-ares channel rebuilt without query cache
(as the old probe did: otherwise c-ares answers from its cache and the figure means nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import resource
import shutil
import socket
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from time import perf_counter
from typing import Any

import aiodns
import pycares
from aiodns.error import DNSError

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.base import ProbeContext, up_or_slow
from ispmon.probes.dns import probe as new_probe

OURS, THEIRS = {0}, {1}
TIMEOUT = 1.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pin(pid: int, cpus: set[int]) -> None:
    with suppress(OSError):
        os.sched_setaffinity(pid, cpus)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_dnsmasq(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    proc = subprocess.Popen(
        [
            dnsmasq,
            "--no-daemon",
            "--no-resolv",
            "--no-hosts",
            f"--port={port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--address=/bench.test/192.0.2.1",
            "--dns-forward-max=5000",
            f"--pid-file={workdir / 'dnsmasq.pid'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pin(proc.pid, THEIRS)
    return proc


# -- the old path (ispmon.probes.dns before issue 9), A records only -------------------------------

_ARES_OPT_MAXTIMEOUTMS = 1 << 20
_ARES_OPT_QUERY_CACHE = 1 << 21


def _old_resolver(
    resolvers: dict[tuple[Any, ...], aiodns.DNSResolver], host: str, port: int, timeout: float
) -> aiodns.DNSResolver:
    key = (host, port, round(timeout, 3))
    resolver = resolvers.get(key)
    if resolver is None:
        resolver = aiodns.DNSResolver(nameservers=[host], udp_port=port, tcp_port=port, timeout=timeout, tries=1)
        _old_rebuild_channel(resolver, timeout)
        resolvers[key] = resolver
    return resolver


def _old_rebuild_channel(resolver: aiodns.DNSResolver, timeout: float) -> None:
    """The old probe's channel rebuild: the same channel options, with the query cache off."""
    from pycares import _cares  # type: ignore[attr-defined]

    ffi, lib = _cares.ffi, _cares.lib
    channel = resolver._channel
    servers = channel.servers
    with channel._lock:
        old = channel._channel
        options = ffi.new("struct ares_options *")
        optmask = ffi.new("int *")
        assert lib.ares_save_options(old[0], options, optmask) == lib.ARES_SUCCESS
        try:
            options.qcache_max_ttl = 0
            options.maxtimeout = max(1, int(timeout * 1000))
            new = ffi.new("ares_channel *")
            status = lib.ares_init_options(
                new, options, optmask[0] | _ARES_OPT_QUERY_CACHE | _ARES_OPT_MAXTIMEOUTMS
            )
        finally:
            lib.ares_destroy_options(options)
        assert status == lib.ARES_SUCCESS
        channel._channel = new
        lib.ares_destroy(old[0])
    channel.servers = servers


async def old_probe(
    endpoint: EndpointSpec, timeout: float, resolvers: dict[tuple[Any, ...], aiodns.DNSResolver]
) -> ProbeResult:
    target = endpoint.target
    resolver = _old_resolver(resolvers, target.host, target.port or 53, timeout)
    start = perf_counter()
    try:
        async with asyncio.timeout(timeout):
            result = await resolver.query_dns(target.qname, "A")
    except TimeoutError:
        return ProbeResult.down(ErrorKind.TIMEOUT, f"no answer from resolver within {timeout:g} s")
    except DNSError as exc:
        return ProbeResult.down(ErrorKind.CONNECTION, f"c-ares: {exc}")
    elapsed = (perf_counter() - start) * 1000.0
    answers: list[str] = []
    ttl_min: int | None = None
    for record in result.answer:
        if record.type == pycares.QUERY_TYPE_A:
            answers.append(str(ipaddress.ip_address(record.data.addr)))
            ttl_min = record.ttl if ttl_min is None else min(ttl_min, record.ttl)
    answers.sort()
    details: dict[str, Any] = {"rcode": "NOERROR", "answers": answers, "ttl_min": ttl_min}
    return up_or_slow(endpoint, elapsed, details, "answered in")


# -- the measurement ----------------------------------------------------------------------------------


async def run_phase(check: Any, rate: float, seconds: float) -> dict[str, float]:
    """`rate` checks/s for `seconds`, launched in 10 ms ticks; CPU per completed check."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    per_tick = rate / 100.0
    tasks: set[asyncio.Task[ProbeResult]] = set()
    statuses: dict[Status, int] = {}

    def done(task: asyncio.Task[ProbeResult]) -> None:
        tasks.discard(task)
        status = task.result().status
        statuses[status] = statuses.get(status, 0) + 1

    cpu0, wall0 = cpu_seconds(), loop.time()
    launched, tick, owed = 0, 0, 0.0
    while launched < total:
        owed += per_tick
        while owed >= 1 and launched < total:
            task = asyncio.ensure_future(check())
            task.add_done_callback(done)
            tasks.add(task)
            launched += 1
            owed -= 1
        tick += 1
        await asyncio.sleep(max(0.0, wall0 + tick * 0.01 - loop.time()))
    if tasks:
        await asyncio.wait(set(tasks))
    cpu, wall = cpu_seconds() - cpu0, loop.time() - wall0
    up = statuses.get(Status.UP, 0)
    return {"checks": total, "up": up, "cpu_s": cpu, "wall_s": wall, "us_per_check": cpu / total * 1e6}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="checks/s for both clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per round and client")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (old then new in each)")
    args = parser.parse_args()
    if not 1 <= args.rate <= 5000 or not 0 < args.seconds <= 60 or not 1 <= args.rounds <= 10:
        parser.error("keep it bounded: --rate 1..5000, --seconds up to 60, --rounds 1..10")

    pin(0, OURS)
    workdir = Path(tempfile.mkdtemp(prefix="ispmon-bench-dns-"))
    port = free_port()
    dnsmasq = start_dnsmasq(workdir, port)
    await asyncio.sleep(0.3)
    endpoint = build_endpoint(
        {"name": "bench", "url": f"dns://127.0.0.1:{port}/bench.test?type=A", "timeout": TIMEOUT, "retries": 0}
    )
    resolvers: dict[tuple[Any, ...], aiodns.DNSResolver] = {}
    ctx = ProbeContext()
    clients = {
        "old (aiodns/c-ares)": lambda: old_probe(endpoint, TIMEOUT, resolvers),
        "new (dnspython)": lambda: new_probe(endpoint, TIMEOUT, ctx),
    }
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    try:
        for check in clients.values():  # warm-up: imports, the c-ares channel, first sockets
            await run_phase(check, args.rate, 1.0)
        for _ in range(args.rounds):
            for name, check in clients.items():
                figures[name].append(await run_phase(check, args.rate, args.seconds))
    finally:
        for resolver in resolvers.values():
            await resolver.close()
        await ctx.close()
        dnsmasq.terminate()
        dnsmasq.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"DNS check CPU, {args.rate:g} checks/s, {args.rounds} x {args.seconds:g} s per client (µs/check)")
    names = list(clients)
    print(f"{'round':>5}  " + "  ".join(f"{n:>20}" for n in names) + f"  {'new/old':>8}")
    for i in range(args.rounds):
        old, new = (figures[n][i]["us_per_check"] for n in names)
        print(f"{i + 1:>5}  {old:>20.0f}  {new:>20.0f}  {new / old:>8.2f}")
    totals = {n: sum(f["cpu_s"] for f in figures[n]) / sum(f["checks"] for f in figures[n]) * 1e6 for n in names}
    old, new = totals[names[0]], totals[names[1]]
    print(f"{'all':>5}  {old:>20.0f}  {new:>20.0f}  {new / old:>8.2f}")
    for n in names:
        checks = sum(f["checks"] for f in figures[n])
        up = sum(f["up"] for f in figures[n])
        print(f"{n}: {up}/{checks:.0f} checks UP")


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
