"""Run by test_resource_exhaustion.py in a subprocess of its own, because it lowers the open-file
limit and uses up every descriptor, which the pytest process must never do to itself.

``python3 -m tests.integration.availability.exhaustion_child <dsn> <asyncio|uvloop>``

Starts real targets on 127.0.0.1 (an aiohttp server, a TCP banner server, a UDP echo server) and
a Monitor wired as the daemon wires it, against the PostgreSQL database `dsn`. Checks every
endpoint while healthy, then with no descriptor left (RLIMIT_NOFILE lowered, the rest held by
sockets), then again after releasing them. Prints one JSON object with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import sys
from typing import Any

import structlog
import uvloop
from aiohttp import web
from structlog.testing import capture_logs

from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import OutagePolicy
from ispmon.probes.base import ProbeContext, run_check
from ispmon.store.database import Database
from ispmon.store.db import create_pool
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter

POLICY = OutagePolicy(detection_threshold=3, verification_checks=2, recovery_threshold=2)
QUIET = 0.3  # the monitor's recovery hold-off, short for the test
ROUNDS = 6  # checks per endpoint while exhausted: past detection and verification


async def _targets() -> tuple[dict[str, int], list[Any]]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()

    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ready\r\n")
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(banner, "127.0.0.1", 0)

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            self.transport.sendto(b"pong", addr)

    udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    ports = {
        "http": runner.addresses[0][1],
        "tcp": tcp.sockets[0].getsockname()[1],
        "udp": udp.get_extra_info("sockname")[1],
    }
    return ports, [runner.cleanup, tcp.close, udp.close]


def _endpoints(ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    http, tcp, udp = ports["http"], ports["tcp"], ports["udp"]
    common = {"check_interval": 60, "timeout": 1.0, "retries": 2}
    return {
        "web": {"url": f"http://127.0.0.1:{http}/ok", **common},
        # By name: the resolver needs a descriptor for /etc/hosts, and hides the errno.
        "web-by-name": {"url": f"http://localhost:{http}/ok", **common},
        "mail": {"protocol": "tcp", "url": f"127.0.0.1:{tcp}", "expected_response_pattern": "^220", **common},
        "mail-by-name": {"protocol": "tcp", "url": f"localhost:{tcp}", **common},
        "radius": {"protocol": "udp", "url": f"127.0.0.1:{udp}", "send": "ping", **common},
    }


def _exhaust() -> tuple[list[socket.socket], tuple[int, int]]:
    """Lower the soft open-file limit a little above what is open, then hold every descriptor left."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, saved[1]))
    held: list[socket.socket] = []
    _top_up(held)
    return held, saved


def _top_up(held: list[socket.socket]) -> None:
    """Take any descriptor freed since (the servers here close their side of earlier connections)."""
    try:
        while True:
            held.append(socket.socket())
    except OSError:
        pass


async def main(dsn: str) -> dict[str, Any]:
    pool = await create_pool(dsn, min_size=2, max_size=2)  # opened now: no new descriptor later
    db = Database(pool)
    history = BatchWriter(pool, "status_history", HISTORY_COLUMNS)
    events = BatchWriter(pool, "endpoint_events", EVENT_COLUMNS)
    ctx = ProbeContext()
    monitor = Monitor(
        ctx=ctx, policy=POLICY, history=history, events=events, outages=db.outages, resource_quiet=QUIET
    )
    ports, closers = await _targets()
    for name, fields in _endpoints(ports).items():
        monitor.upsert(build_endpoint({"id": name, "name": name, **fields}))
    # Not in the monitor (a DNS server is not part of this test): a resolver on a silent UDP port
    # would time out; with no descriptor left c-ares reports "refused" instead.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    dns = build_endpoint(
        {"name": "dns", "url": f"dns://127.0.0.1:{silent.getsockname()[1]}/www.test", "timeout": 0.5}
    )
    icmp = build_endpoint({"name": "icmp", "url": "icmp://127.0.0.1", "timeout": 0.5, "packet_count": 1})

    out: dict[str, Any] = {"healthy": {}, "exhausted": {}, "after": {}, "others": {}}
    runtimes = monitor.runtimes
    for name, runtime in runtimes.items():
        await monitor.check(runtime)
        out["healthy"][name] = runtime.last[1].status.value if runtime.last else None
    out["icmp_healthy"] = (await run_check(icmp, ctx)).status.value
    out["dns_healthy"] = (await run_check(dns, ctx)).as_dict()  # imports the probe, makes its resolver

    with capture_logs() as logs:
        held, saved = _exhaust()
        try:
            out["held"] = len(held)
            for _ in range(ROUNDS):
                for name, runtime in runtimes.items():
                    _top_up(held)
                    await monitor.check(runtime)
                    assert runtime.last is not None
                    out["exhausted"].setdefault(name, []).append(runtime.last[1].as_dict())
            for other in (dns, icmp):
                _top_up(held)
                out["others"][other.protocol.value] = (await run_check(other, ctx)).as_dict()
            # A context whose shared ICMP socket is not open yet needs a descriptor for it.
            _top_up(held)
            fresh = ProbeContext()
            out["icmp_fresh"] = (await run_check(icmp, fresh)).as_dict()
            await fresh.close()
            out["phases"] = {name: rt.state.phase.value for name, rt in runtimes.items()}
            out["statuses"] = {name: rt.state.status.value for name, rt in runtimes.items()}
            out["stats_exhausted"] = monitor.stats()["resources"]
        finally:
            for sock in held:
                sock.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, saved)
        await asyncio.sleep(QUIET + 0.05)
        for _ in range(2):
            for name, runtime in runtimes.items():
                await monitor.check(runtime)
                assert runtime.last is not None
                out["after"][name] = runtime.last[1].status.value
    out["stats_after"] = monitor.stats()["resources"]
    out["log_events"] = [entry["event"] for entry in logs]

    await history.flush()
    await events.flush()
    out["outages"] = await pool.fetchval("SELECT count(*) FROM outages")
    await monitor.close()
    await history.close()
    await events.close()
    await ctx.close()
    silent.close()
    for close in closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    await pool.close()
    return out


if __name__ == "__main__":
    dsn, loop = sys.argv[1], sys.argv[2]
    # Log lines outside capture_logs go to stderr: stdout carries the JSON result.
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    runner = uvloop.run if loop == "uvloop" else asyncio.run
    print(json.dumps(runner(main(dsn)), default=str))
