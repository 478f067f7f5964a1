"""RADIUS accounting benchmark: Interim-Updates into the listener with durable storage.

    python bench/radius.py [--sessions 100000] [--rates 2000,5000] [--seconds 10] [--ports 8]

The listener (uvloop, group commit into the embedded PostgreSQL) runs in this process, pinned to
core 0; a load generator process pinned to core 1 sends Interim-Updates for N sessions from
several source ports (one NAS) at a fixed rate and times each Accounting-Response. Printed per
rate: packets/s answered, p50/p99 time to the response, listener CPU per packet (this process's
user+system time, which includes the asyncpg client side of the commits), PostgreSQL's CPU per
packet (the postmaster and its children), the 1-minute load average, and the listener's
memory per active session (its RSS growth over the run divided by the sessions: the sessions
themselves live in PostgreSQL). PostgreSQL runs unpinned. Loopback only; every loop is bounded.

In the same run, the same packets go to Debian's FreeRADIUS (`apt-get install freeradius`; skipped,
and said so, when `freeradius` is not on PATH) with its stock accounting (the default site's
`accounting` section: the `detail` file, `unix`, `exec`), from a copy of /etc/freeradius/3.0 in a
temporary directory that listens on 127.0.0.1 only, pinned to the same core. Its CPU is the
freeradius process's. Note what differs: FreeRADIUS answers after write(2) to its detail file (no
fsync, nothing parsed or summed); ispmon answers after a PostgreSQL commit that has also advanced
the session's counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import uvloop

from ispmon.store.db import create_pool, migrate
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.accounting import Received
from ispmon.usage.listener import start_listener
from ispmon.usage.nas import NasDirectory, NasSpec
from ispmon.usage.radius import decode_request
from radius_packets import SECRET
from radius_packets import request as _request

LOST_AFTER = 3.0  # seconds without an answer before the generator counts a request lost


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
        sent = skipped = lost = 0
        start = time.perf_counter()
        total = int(rate * seconds)
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            transport, proto = endpoints[n % ports]
            ident = proto.next
            started = proto.sent.get(ident)
            if started is not None and time.perf_counter() - started > LOST_AFTER:
                # Unanswered for LOST_AFTER: a NAS gives up on it (or retransmits) and the
                # Identifier is free again; counted as lost.
                del proto.sent[ident]
                lost += 1
            if ident in proto.sent:  # 256 outstanding on this port: the NAS would wait too
                skipped += 1
                continue
            proto.next = (ident + 1) % 256
            session = n % sessions
            counter[session] += 1500
            proto.sent[ident] = time.perf_counter()
            transport.sendto(_request(ident, session, counter[session]))
            sent += 1
        sending = time.perf_counter() - start
        await asyncio.sleep(1.0)
        latencies = sorted(x for _, p in endpoints for x in p.latencies)
        lost += sum(len(p.sent) for _, p in endpoints)  # still unanswered after the 1 s tail
        out.put(
            {
                "sent": sent,
                "skipped": skipped,
                "lost": lost,
                "answered": len(latencies),
                "elapsed": sending,  # answered/s over the sending time (the 1 s tail collects replies)
                "latencies": latencies,
            }
        )
        for transport, _ in endpoints:
            transport.close()

    uvloop.run(run())


def _freeradius_conf(base: Path, auth_port: int) -> Path:
    """A private copy of Debian's configuration: our client and secret, loopback listeners on our
    ports, no inner tunnel, logs and detail files under `base`, no privilege drop (files are ours)."""
    conf = base / "conf"
    shutil.copytree("/etc/freeradius/3.0", conf, symlinks=False)
    (base / "log").mkdir()
    (base / "run").mkdir()
    (conf / "sites-enabled" / "inner-tunnel").unlink(missing_ok=True)
    radiusd = (conf / "radiusd.conf").read_text()
    radiusd = re.sub(r"(?m)^logdir = .*$", f"logdir = {base / 'log'}", radiusd)
    radiusd = re.sub(r"(?m)^raddbdir = .*$", f"raddbdir = {conf}", radiusd)
    radiusd = re.sub(r"(?m)^run_dir = .*$", f"run_dir = {base / 'run'}", radiusd)
    radiusd = re.sub(r"(?m)^(\s*)(user|group) = ", r"\1#\2 = ", radiusd)
    (conf / "radiusd.conf").write_text(radiusd)
    (conf / "clients.conf").write_text(
        f"client bench {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET.decode()}\n}}\n"
    )
    site = (conf / "sites-enabled" / "default").read_text()
    site = site.replace("ipaddr = *", "ipaddr = 127.0.0.1").replace("ipv6addr = ::", "ipv6addr = ::1")
    ports = iter([auth_port, auth_port + 1] * 2)  # auth, acct (IPv4), then auth, acct (IPv6)
    site = re.sub(r"(?m)^(\s*)port = 0", lambda m: f"{m.group(1)}port = {next(ports)}", site)
    (conf / "sites-enabled" / "default").write_text(site)
    return conf


def _free_port_pair() -> int:
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port < 65535:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    try:
                        b.bind(("127.0.0.1", port + 1))
                    except OSError:
                        continue
                return int(port)
    raise RuntimeError("no free pair of UDP ports")


def _drive(port: int, sessions: int, rate: int, seconds: float, ports: int) -> dict:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=generator, args=(port, sessions, rate, seconds, ports, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _row(
    name: str, rate: int, result: dict, cpu: float, handled: int, extra: str, server_cpu: float | None = None
) -> str:
    lat = result["latencies"]
    server = "-" if server_cpu is None else f"{server_cpu / max(handled, 1) * 1e6:.1f}"
    return (
        f"{name:>10} {rate:>10} {result['answered'] / result['elapsed']:>11.0f} {result['skipped']:>8} "
        f"{result['lost']:>8} "
        f"{_pct(lat, 0.5):>8.2f} {_pct(lat, 0.99):>8.2f} {cpu / max(handled, 1) * 1e6:>11.1f} {server:>11} "
        f"{extra:>8} {os.getloadavg()[0]:>5.1f}"
    )


def _postgres_cpu(pgdata: Path) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster and all its children (the
    backends serving the listener's commits, the WAL writer, the checkpointer)."""
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    total = 0.0
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def freeradius(args: argparse.Namespace) -> None:
    binary = shutil.which("freeradius")
    if binary is None:
        print("FreeRADIUS: not measured (apt-get install freeradius)")
        return
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-freeradius-"))
    try:
        auth = _free_port_pair()
        conf = _freeradius_conf(base, auth)
        server = subprocess.Popen(
            [binary, "-f", "-d", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {0}),
        )
        try:
            proc = psutil.Process(server.pid)
            time.sleep(2.0)
            if server.poll() is not None:
                print(f"FreeRADIUS: exited at start ({server.returncode}); see {base / 'log'}")
                return
            for rate in args.rates:
                t0 = proc.cpu_times()
                drops0 = _udp_receive_errors()
                result = _drive(auth + 1, args.sessions, rate, args.seconds, args.ports)
                drops = _udp_receive_errors() - drops0
                t1 = proc.cpu_times()
                cpu = (t1.user - t0.user) + (t1.system - t0.system)
                print(_row("freeradius", rate, result, cpu, result["answered"], "detail"))
                if drops:
                    print(f"{'':>10} UDP receive-buffer drops on this machine during that run: {drops}")
        finally:
            server.terminate()
            server.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _udp_receive_errors() -> int:
    """Linux's machine-wide count of datagrams dropped for a full receive buffer."""
    lines = [
        line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")
    ]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")


WAIT_SAMPLE = 0.02  # seconds between two looks at pg_stat_activity


async def _sample_waits(pool: Any) -> Counter[str]:
    """What the busy client backends wait on, sampled until cancelled: `CPU` (no wait event),
    `Lock:transactionid` / `Lock:tuple` (a row another transaction holds), `IO:WalSync`, ..."""
    seen: Counter[str] = Counter()
    async with pool.acquire() as conn:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                rows = await conn.fetch(
                    """SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') AS w FROM pg_stat_activity
                       WHERE backend_type = 'client backend' AND state <> 'idle' AND pid <> pg_backend_pid()"""
                )
                seen["samples"] += 1
                seen.update(r["w"] for r in rows)
                await asyncio.sleep(WAIT_SAMPLE)
    return seen


async def _stop_sampler(task: asyncio.Task[Counter[str]] | None) -> str:
    if task is None:
        return ""
    task.cancel()
    seen = await task
    samples = seen.pop("samples", 0) or 1
    return ", ".join(f"{w} {n / samples:.2f}" for w, n in seen.most_common(6))


async def main(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {0})
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-radius-"))
    server = EmbeddedPostgres(base)
    try:
        dsn = await asyncio.to_thread(server.start)
        pool = await create_pool(dsn, max_size=4)
        async with pool.acquire() as conn:
            await migrate(conn)
        # Every session's User-Name belongs to a customer, so each commit also rolls usage up
        # (hour and day), as in production; --customers 0 leaves sessions unattributed.
        if args.customers:
            await pool.execute(
                """INSERT INTO customers (id, name, spec)
                   SELECT 'c' || n, 'c' || n, '{}'::jsonb FROM generate_series(0, $1 - 1) AS n""",
                args.customers,
            )
            await pool.execute(
                """INSERT INTO customer_usernames (username, customer_id)
                   SELECT 'user' || n || '@isp', 'c' || (n % $2) FROM generate_series(0, $1 - 1) AS n""",
                args.sessions,
                args.customers,
            )
        directory = NasDirectory(
            [NasSpec(id="bras", name="bras", address="127.0.0.1", secret=SECRET.decode())]
        )
        protocol, port = await start_listener("127.0.0.1", 0, directory, AccountingStore(pool).commit)
        me = psutil.Process()
        # Warm-up: every session gets its first record (a session row), so the runs measure interims.
        # Committed directly in batches (not over UDP, where the generator's 256-outstanding bound
        # per port would skip most of them at the rate this needs).
        rss0 = me.memory_info().rss
        store = AccountingStore(pool)
        for start in range(0, args.sessions, 5000):
            batch = []
            for session in range(start, min(start + 5000, args.sessions)):
                raw = _request(session % 256, session, 0)
                _, record = decode_request(raw, SECRET)
                batch.append(
                    Received(
                        nas_id="bras",
                        source_port=1,
                        identifier=raw[1],
                        authenticator=raw[4:20],
                        record=record,
                        received_at=datetime.now(UTC),
                    )
                )
            await store.commit(batch)
        rows = await pool.fetchval("SELECT count(*) FROM radius_sessions")
        rss1 = me.memory_info().rss
        print(
            f"warm-up: {rows} sessions in PostgreSQL; "
            f"listener RSS growth {(rss1 - rss0) / max(rows, 1):.1f} bytes per active session"
        )
        header = (
            "",
            "offered/s",
            "answered/s",
            "skipped",
            "lost",
            "p50 ms",
            "p99 ms",
            "CPU us/pkt",
            "PG us/pkt",
            "batches",
            "load",
        )
        print(" ".join(f"{h:>11}" if i else f"{h:>10}" for i, h in enumerate(header)))
        for rate in args.rates:
            before = resource.getrusage(resource.RUSAGE_SELF)
            pg0 = _postgres_cpu(server.pgdata)
            stats0 = dict(protocol.stats.as_dict())
            drops0 = _udp_receive_errors()
            sampler = asyncio.create_task(_sample_waits(pool)) if args.waits else None
            result = await asyncio.to_thread(_drive, port, args.sessions, rate, args.seconds, args.ports)
            result["drops"] = _udp_receive_errors() - drops0
            waits = await _stop_sampler(sampler)
            after = resource.getrusage(resource.RUSAGE_SELF)
            pg = _postgres_cpu(server.pgdata) - pg0
            stats = protocol.stats.as_dict()
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            handled = stats["answered"] - stats0["answered"]
            print(_row(args.label, rate, result, cpu, handled, str(stats["batches"] - stats0["batches"]), pg))
            if result["drops"]:
                print(f"{'':>10} UDP receive-buffer drops on this machine during that run: {result['drops']}")
            if waits:
                print(f"{'':>10} busy backends by wait event (share of samples): {waits}")
        await protocol.close()
        await pool.close()
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(base, ignore_errors=True)


def compare(args: argparse.Namespace) -> None:
    """Old tree and this one, each rate run by both in turn (a child process each, with its own
    PostgreSQL and warm-up), so that both see the same load on this shared machine."""
    here = Path(__file__).resolve().parent.parent
    printed = False
    for rate in args.rates:
        for label, tree in (("before", args.before), ("after", here)):
            cmd = [sys.executable, __file__, "--no-freeradius", "--label", label, "--rates", str(rate)]
            for name in ("sessions", "seconds", "ports", "customers"):
                cmd += [f"--{name}", str(getattr(args, name))]
            if args.waits:
                cmd.append("--waits")
            env = dict(os.environ, PYTHONPATH=str(tree / "src"))
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            for line in out.splitlines():
                if "offered/s" in line:  # the header, once
                    if not printed:
                        print(line, flush=True)
                    printed = True
                elif line.split()[:1] == [label] or line.startswith(" " * 11):
                    print(line, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 2000, 5000])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ports", type=int, default=8)
    parser.add_argument("--customers", type=int, default=10_000, help="customers owning the sessions")
    parser.add_argument("--no-freeradius", action="store_true", help="skip the FreeRADIUS side")
    parser.add_argument("--waits", action="store_true", help="sample pg_stat_activity's wait events")
    parser.add_argument(
        "--before", type=Path, help="also run a tree with the old code (its src/), rate by rate"
    )
    parser.add_argument("--label", default="ispmon", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.before:
        compare(arguments)
    else:
        uvloop.run(main(arguments))
    if not arguments.no_freeradius:
        freeradius(arguments)
