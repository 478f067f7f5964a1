"""ispmon against Prometheus blackbox_exporter: CPU per check, same targets, same rate, same core.

Install (Debian; as root):

    apt-get install -y prometheus-blackbox-exporter dnsmasq util-linux   # util-linux: taskset
    systemctl disable --now prometheus-blackbox-exporter                 # we start our own copy
    pip install -e .                                                     # ispmon and its deps

Run:

    python bench/compare.py                       # about 15 minutes: the full table
    python bench/compare.py --kinds tcp --reps 1 --rates 1000 --duration 5 --no-extras   # a quick look
    git archive main | tar -x -C /tmp/old && python bench/compare.py --old /tmp/old/src ...
                                                  # also the old tree's daemon, same run: new/old

What it does. The targets (bench/targets.py for HTTP and TCP, dnsmasq for DNS, the kernel's echo
for ICMP to 127.0.0.1), the embedded PostgreSQL, this script and its load loop run on CPU 1. The
measured process runs alone on CPU 0 (`taskset -c 0`): either the whole `ispmon run` daemon (one
fresh database per phase, a config file of N endpoints checked every second, so N checks/s) or
blackbox_exporter, which this script drives at the same rate through `/probe` (a bounded loop on
keep-alive connections; each probe is one check). CPU is utime+stime of that one process from
/proc/<pid>/stat over the measured window, divided by the checks it completed in that window
(ispmon: the scheduler's `completed` from /readyz; blackbox: probes answered). HTTP is a fresh
connection per check on both sides; ICMP is one echo per check; timeouts 2 s.

Printed: per protocol and rate, the median of --reps repetitions (ispmon and blackbox interleaved,
so both see the same machine) and the ratio. Then (--no-extras skips them) for ispmon alone:
response-time inflation (measured minus the /delay target's known 50 ms) p50/p99 at 1,000 and
2,000 mixed checks/s with the checks shed as late (skipped_late + skipped_overrun); RSS per idle
endpoint (daemon with --idle endpoints every 3,600 s against one with none); RSS drift over the
mixed 1,000/s run (its length is printed). Loopback only; every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

from ispmon.store.embedded import EmbeddedPostgres
from throughput import THEIRS, pin, pin_postgres, targets

CORE = "0"
KINDS = ("http", "tcp", "dns", "icmp")
BLACKBOX = shutil.which("prometheus-blackbox-exporter") or "/usr/bin/prometheus-blackbox-exporter"
BLACKBOX_CONFIG = """modules:
  http:
    prober: http
    timeout: 2s
    http: {preferred_ip_protocol: ip4}
  tcp:
    prober: tcp
    timeout: 2s
    tcp: {preferred_ip_protocol: ip4}
  dns:
    prober: dns
    timeout: 2s
    dns: {query_name: bench.test, query_type: A, transport_protocol: udp, preferred_ip_protocol: ip4}
  icmp:
    prober: icmp
    timeout: 2s
    icmp: {preferred_ip_protocol: ip4}
"""


def free_port() -> int:
    """A free TCP port (throughput.free_port picks a UDP one, for dnsmasq)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_ticks(pid: int) -> float:
    """utime+stime of every thread of `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def ispmon_block(kind: str, i: int, interval: float, ports: dict[str, Any], prefix: str) -> str:
    url = {
        "http": f'url = "http://127.0.0.1:{ports["http"]}/ok"',
        "delay": f'url = "http://127.0.0.1:{ports["http"]}/delay"',
        "tcp": f'url = "127.0.0.1:{ports["tcp"]}"\nprotocol = "tcp"',
        "dns": f'url = "dns://127.0.0.1:{ports["dns"]}/bench.test?type=A"',
        "icmp": 'url = "127.0.0.1"\nprotocol = "icmp"\npacket_count = 1',
        "idle": f'url = "http://127.0.0.1:9/idle/{i}"',
    }[kind]
    return (
        f'[[endpoints]]\nid = "{prefix}-{kind}-{i}"\nname = "{prefix} {kind} {i}"\n{url}\n'
        f"check_interval = {interval:g}\ntimeout = {min(2.0, interval * 0.7):g}\nretries = 0\n"
    )


def readyz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            body: dict[str, Any] = json.load(resp)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
    return body


def sched(port: int) -> dict[str, Any]:
    return dict(readyz(port).get("monitor", {}).get("scheduler", {}))


class Rig:
    """The shared parts: targets, PostgreSQL, blackbox_exporter (idle until driven)."""

    def __init__(self, workdir: Path, dsn: str, ports: dict[str, Any]) -> None:
        self.workdir, self.dsn, self.ports = workdir, dsn, ports
        self.phase = 0
        self.bb_port = free_port()
        cfg = workdir / "blackbox.yml"
        cfg.write_text(BLACKBOX_CONFIG)
        self.bb = subprocess.Popen(
            ["taskset", "-c", CORE, BLACKBOX, f"--config.file={cfg}",
             f"--web.listen-address=127.0.0.1:{self.bb_port}", "--log.level=error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)

    def target(self, kind: str) -> str:
        return {
            "http": f"http://127.0.0.1:{self.ports['http']}/ok",
            "tcp": f"127.0.0.1:{self.ports['tcp']}",
            "dns": f"127.0.0.1:{self.ports['dns']}",
            "icmp": "127.0.0.1",
        }[kind]

    async def new_database(self) -> str:
        self.phase += 1
        name = f"bench{self.phase}"
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name}")
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        url = urllib.parse.urlsplit(self.dsn)
        return urllib.parse.urlunsplit(url._replace(path="/" + name))

    @contextmanager
    def daemon(self, blocks: list[str], dsn: str, src: str | None = None) -> Iterator[tuple[int, int]]:
        """`ispmon run` on CORE with these endpoints (from the tree `src`, default: the one this
        script imports); yields (pid, API port) once ready."""
        state = Path(tempfile.mkdtemp(prefix="phase-", dir=self.workdir))
        config = state / "ispmon.toml"
        config.write_text("\n".join(blocks))
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "ISPMON_STATE_DIR": str(state),
            "ISPMON_CONFIG": str(config),
            "API_PORT": str(port),
            "ISPMON_LOG_FORMAT": "json",
            "ISPMON_LOG_LEVEL": "warning",
            "RADIUS_ACCT_PORT": "0",
            "ISPMON_MAX_CONCURRENCY": "2000",
        }
        if src is not None:
            env["PYTHONPATH"] = src
        log = (state / "daemon.log").open("wb")
        proc = subprocess.Popen(
            ["taskset", "-c", CORE, sys.executable, "-m", "ispmon", "run"], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None:
                    raise SystemExit((state / "daemon.log").read_text()[-3000:])
                try:
                    if readyz(port).get("status") == "ready":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not get ready within 180 s")
                time.sleep(0.3)
            yield proc.pid, port
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()

    async def ispmon(
        self, kind: str, rate: int, warmup: float, duration: float, src: str | None = None
    ) -> float:
        blocks = [ispmon_block(kind, i, 1.0, self.ports, "c") for i in range(rate)]
        dsn = await self.new_database()
        with self.daemon(blocks, dsn, src) as (pid, port):
            await asyncio.sleep(warmup)
            c0, cpu0 = sched(port)["completed"], cpu_ticks(pid)
            await asyncio.sleep(duration)
            c1, cpu1 = sched(port)["completed"], cpu_ticks(pid)
        return (cpu1 - cpu0) / max(1, c1 - c0) * 1e6

    async def blackbox(self, kind: str, rate: int, warmup: float, duration: float) -> float:
        url = f"http://127.0.0.1:{self.bb_port}/probe"
        params = {"module": kind, "target": self.target(kind)}
        done = failed = 0
        inflight = 0

        async def one(session: aiohttp.ClientSession) -> None:
            nonlocal done, failed, inflight
            try:
                async with session.get(url, params=params) as resp:
                    body = await resp.read()
                ok = b"\nprobe_success 1" in body
            except aiohttp.ClientError:
                ok = False
            done += 1
            failed += not ok
            inflight -= 1

        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector) as session:
            t0 = time.monotonic()
            launched = 0
            measure_at, end = t0 + warmup, t0 + warmup + duration
            c0 = cpu0 = None
            while (now := time.monotonic()) < end:
                if c0 is None and now >= measure_at:
                    c0, cpu0 = done, cpu_ticks(self.bb.pid)
                due = int((now - t0) * rate) - launched
                for _ in range(min(due, 2000 - inflight)):  # bounded: at most 2,000 in flight
                    inflight += 1
                    task = asyncio.create_task(one(session))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                launched += max(0, due)  # what could not start is dropped, not queued
                await asyncio.sleep(0.005)
            c1, cpu1 = done, cpu_ticks(self.bb.pid)
            await asyncio.gather(*tasks, return_exceptions=True)
        assert c0 is not None and cpu0 is not None
        if failed:
            print(f"  (blackbox {kind}: {failed} of {done} probes failed)")
        return (cpu1 - cpu0) / max(1, c1 - c0) * 1e6

    async def mixed(self, rate: int, warmup: float, duration: float) -> dict[str, Any]:
        """Mixed load at `rate` checks/s incl. 50 /delay endpoints: inflation, shed, RSS drift."""
        per_kind = (rate - 50) * 2 // 4
        blocks = [ispmon_block(k, i, 2.0, self.ports, "m") for k in KINDS for i in range(per_kind)]
        blocks += [ispmon_block("delay", i, 1.0, self.ports, "d") for i in range(50)]
        dsn = await self.new_database()
        with self.daemon(blocks, dsn) as (pid, port):
            await asyncio.sleep(warmup)
            s0, rss0, cpu0, t0 = sched(port), rss(pid), cpu_ticks(pid), time.time()
            await asyncio.sleep(duration)
            s1, rss1, cpu1, t1 = sched(port), rss(pid), cpu_ticks(pid), time.time()
            await asyncio.sleep(2.5)  # let the writer flush the window's rows
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT response_time_ms FROM status_history WHERE endpoint_id LIKE 'd-%' "
                "AND status = 'up' AND checked_at >= to_timestamp($1) AND checked_at < to_timestamp($2) "
                "ORDER BY response_time_ms",
                t0,
                t1,
            )
        finally:
            await conn.close()
        infl = [r[0] - self.ports["delay_ms"] for r in rows]
        done = s1["completed"] - s0["completed"]

        def pct(q: float) -> float:
            return infl[min(len(infl) - 1, int(len(infl) * q))] if infl else float("nan")

        shed = lambda s: s["skipped_late"] + s["skipped_overrun"]  # noqa: E731
        return {
            "done_per_s": done / (t1 - t0),
            "cpu_us": (cpu1 - cpu0) / max(1, done) * 1e6,
            "p50": pct(0.5),
            "p99": pct(0.99),
            "samples": len(infl),
            "shed": shed(s1) - shed(s0),
            "rss_drift_mb": (rss1 - rss0) / 2**20,
            "seconds": t1 - t0,
        }

    async def idle_rss(self, n: int) -> float:
        sizes = []
        for count in (0, n):
            blocks = [ispmon_block("idle", i, 3600, self.ports, "i") for i in range(count)]
            with self.daemon(blocks, await self.new_database()) as (pid, _):
                await asyncio.sleep(3.0)
                sizes.append(rss(pid))
        return (sizes[1] - sizes[0]) / n

    def close(self) -> None:
        self.bb.terminate()
        self.bb.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="500,1000", help="checks/s per protocol")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--mixed-rates", default="1000,2000")
    parser.add_argument("--mixed-duration", type=float, default=60.0)
    parser.add_argument("--idle", type=int, default=10000, help="idle endpoints for the RSS figure")
    parser.add_argument("--no-extras", action="store_true", help="only the CPU table")
    parser.add_argument(
        "--old", help="also run the daemon from this src tree (e.g. git archive main) in each repetition"
    )
    args = parser.parse_args()
    pin(0, THEIRS)
    workdir = Path(tempfile.mkdtemp(prefix="ispmon-compare-"))
    embedded = None
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        embedded = EmbeddedPostgres(workdir / "pg")
        dsn = await asyncio.to_thread(embedded.start)
        pin_postgres(embedded.pgdata, THEIRS)
    kinds, rates = args.kinds.split(","), [int(r) for r in args.rates.split(",")]
    try:
        with targets(workdir) as ports:
            rig = Rig(workdir, dsn, ports)
            try:
                print(f"measured process on CPU {CORE}; targets, PostgreSQL and load loop on CPU 1")
                results: dict[tuple[str, int], tuple[list[float], list[float], list[float]]] = {}
                for rate in rates:
                    for rep in range(args.reps):
                        for kind in kinds:
                            ours = await rig.ispmon(kind, rate, args.warmup, args.duration)
                            old = float("nan")
                            if args.old:
                                old = await rig.ispmon(kind, rate, args.warmup, args.duration, args.old)
                            theirs = await rig.blackbox(kind, rate, args.warmup, args.duration)
                            a, b, c = results.setdefault((kind, rate), ([], [], []))
                            a.append(ours)
                            b.append(theirs)
                            c.append(old)
                            print(f"  rep {rep + 1} {kind:4} {rate}/s: ispmon {ours:5.0f} µs, "
                                  f"ispmon --old {old:5.0f} µs, blackbox {theirs:5.0f} µs", flush=True)  # fmt: skip
                print(f"\n== CPU µs per check, median of {args.reps} (ispmon daemon vs blackbox_exporter 0.23)")
                print("protocol  rate/s   ispmon  blackbox  ratio   ispmon --old  new/old")
                for (kind, rate), (a, b, c) in results.items():
                    ma, mb, mc = statistics.median(a), statistics.median(b), statistics.median(c)
                    print(f"{kind:8} {rate:7} {ma:8.0f} {mb:9.0f}  {ma / mb:5.2f}   {mc:12.0f}  {ma / mc:7.2f}")
                if not args.no_extras:
                    print(f"\n== ispmon, mixed load ({args.mixed_duration:g} s measured each)")
                    for rate in (int(r) for r in args.mixed_rates.split(",")):
                        m = await rig.mixed(rate, 5.0, args.mixed_duration)
                        print(
                            f"offered {rate}/s: done {m['done_per_s']:.0f}/s, {m['cpu_us']:.0f} µs CPU/check, "
                            f"inflation p50 {m['p50']:.2f} ms p99 {m['p99']:.2f} ms ({m['samples']} samples), "
                            f"shed {m['shed']}, RSS drift {m['rss_drift_mb']:+.1f} MiB over {m['seconds']:.0f} s"
                        )
                    per = await rig.idle_rss(args.idle)
                    print(f"\n== RSS per idle endpoint ({args.idle} endpoints every 3600 s): {per:.0f} bytes")
            finally:
                rig.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
