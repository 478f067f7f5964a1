"""RADIUS accounting benchmark: Interim-Updates into the listener with durable storage.

    python bench/radius.py [--sessions 100000] [--rates 2000,5000] [--seconds 10] [--ports 8]

The listener (uvloop, group commit into the embedded PostgreSQL) runs in this process, pinned to
core 0; a load generator process pinned to core 1 sends Interim-Updates for N sessions from
several source ports (one NAS) at a fixed rate and times each Accounting-Response. Printed per
rate: packets/s answered, p50/p99 time to the response, listener CPU per packet (this process's
user+system time, which includes the asyncpg client side of the commits), and the listener's
memory per active session (its RSS growth over the run divided by the sessions: the sessions
themselves live in PostgreSQL). PostgreSQL runs unpinned. Loopback only; every loop is bounded.

Not measured here yet: Debian's FreeRADIUS with its `detail` file beside it (the issue asks for
that comparison; the package is not installed by this script).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import resource
import shutil
import struct
import tempfile
import time
from pathlib import Path

import psutil
import uvloop

from ispmon.store.db import create_pool, migrate
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.listener import start_listener
from ispmon.usage.nas import NasDirectory, NasSpec

SECRET = b"bench-secret"


def _attr(code: int, value: bytes) -> bytes:
    return bytes([code, len(value) + 2]) + value


def _request(ident: int, session: int, counter: int) -> bytes:
    body = (
        _attr(40, (3).to_bytes(4, "big"))
        + _attr(44, f"s{session}".encode())
        + _attr(1, f"user{session}@isp".encode())
        + _attr(42, (counter & 0xFFFFFFFF).to_bytes(4, "big"))
        + _attr(52, (counter >> 32).to_bytes(4, "big"))
        + _attr(43, (counter * 7 & 0xFFFFFFFF).to_bytes(4, "big"))
        + _attr(46, counter.to_bytes(4, "big"))
    )
    header = struct.pack("!BBH", 4, ident, 20 + len(body))
    auth = hashlib.md5(header + bytes(16) + body + SECRET, usedforsecurity=False).digest()
    return header + auth + body


class _Port(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.next = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        started = self.sent.pop(data[1], None)
        if started is not None:
            self.latencies.append(time.perf_counter() - started)


def generator(
    port: int, sessions: int, rate: int, seconds: float, ports: int, out: multiprocessing.Queue
) -> None:
    os.sched_setaffinity(0, {1})

    async def run() -> None:
        loop = asyncio.get_running_loop()
        endpoints = []
        for _ in range(ports):
            transport, proto = await loop.create_datagram_endpoint(_Port, remote_addr=("127.0.0.1", port))
            endpoints.append((transport, proto))
        counter = [0] * sessions
        sent = skipped = 0
        start = time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            transport, proto = endpoints[n % ports]
            ident = proto.next
            if ident in proto.sent:  # 256 outstanding on this port: the NAS would wait too
                skipped += 1
                continue
            proto.next = (ident + 1) % 256
            session = n % sessions
            counter[session] += 1500
            proto.sent[ident] = time.perf_counter()
            transport.sendto(_request(ident, session, counter[session]))
            sent += 1
        await asyncio.sleep(1.0)
        latencies = sorted(x for _, p in endpoints for x in p.latencies)
        out.put(
            {
                "sent": sent,
                "skipped": skipped,
                "answered": len(latencies),
                "elapsed": time.perf_counter() - start,
                "latencies": latencies,
            }
        )
        for transport, _ in endpoints:
            transport.close()

    uvloop.run(run())


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


async def main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {0})
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-radius-"))
    server = EmbeddedPostgres(base)
    try:
        dsn = await asyncio.to_thread(server.start)
        pool = await create_pool(dsn, max_size=4)
        async with pool.acquire() as conn:
            await migrate(conn)
        directory = NasDirectory(
            [NasSpec(id="bras", name="bras", address="127.0.0.1", secret=SECRET.decode())]
        )
        protocol, port = await start_listener("127.0.0.1", 0, directory, AccountingStore(pool).commit)
        me = psutil.Process()
        # Warm-up: every session gets its first record (a session row), so the runs measure interims.
        queue: multiprocessing.Queue = multiprocessing.Queue()
        warm_rate = 5000
        proc = multiprocessing.Process(
            target=generator,
            args=(port, args.sessions, warm_rate, args.sessions / warm_rate, args.ports, queue),
        )
        rss0 = me.memory_info().rss
        proc.start()
        warm = await asyncio.to_thread(queue.get)
        proc.join()
        rows = await pool.fetchval("SELECT count(*) FROM radius_sessions")
        rss1 = me.memory_info().rss
        print(
            f"warm-up: {warm['answered']}/{warm['sent']} answered, {rows} sessions in PostgreSQL; "
            f"listener RSS growth {(rss1 - rss0) / max(rows, 1):.1f} bytes per active session"
        )
        header = ("offered/s", "answered/s", "skipped", "p50 ms", "p99 ms", "CPU us/pkt", "batches")
        print(" ".join(f"{h:>11}" for h in header))
        for rate in args.rates:
            before = resource.getrusage(resource.RUSAGE_SELF)
            stats0 = dict(protocol.stats.as_dict())
            proc = multiprocessing.Process(
                target=generator, args=(port, args.sessions, rate, args.seconds, args.ports, queue)
            )
            proc.start()
            result = await asyncio.to_thread(queue.get)
            proc.join()
            after = resource.getrusage(resource.RUSAGE_SELF)
            stats = protocol.stats.as_dict()
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            handled = stats["answered"] - stats0["answered"]
            lat = result["latencies"]
            print(
                f"{rate:>10} {result['answered'] / result['elapsed']:>11.0f} {result['skipped']:>8} "
                f"{_pct(lat, 0.5):>8.2f} {_pct(lat, 0.99):>8.2f} {cpu / max(handled, 1) * 1e6:>11.1f} "
                f"{stats['batches'] - stats0['batches']:>8}"
            )
        await protocol.close()
        await pool.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 2000, 5000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ports", type=int, default=8)
    uvloop.run(main(parser.parse_args()))
