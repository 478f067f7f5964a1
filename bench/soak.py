"""Soak: `ispmon run` as a process with thousands of endpoints for minutes; does anything grow?

    python bench/soak.py                          # 5,000 endpoints, 3 minutes, a sample every 15 s
    python bench/soak.py --minutes 10 --sample 30

The daemon runs on the embedded PostgreSQL in a temporary state directory (or DATABASE_URL, if
set), with a config file of HTTP and TCP endpoints on bench/targets.py (its own process) and some
on a port where nothing listens (DOWN, so outages open and alerts are dead-lettered to an
undefined channel). It is watched from outside with psutil: RSS, threads, open descriptors and
sockets, and from /readyz: checks completed, scheduler lag, write backlog and drops.

Printed: one line per sample, then the growth between the first sample after the warm-up and the
last (absolute and per minute). Loopback only; bounded by --minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sample:
    elapsed: float
    rss_mb: float
    threads: int
    fds: int
    sockets: int
    completed: int
    lag_p99_ms: float
    backlog: int
    dropped: int


def write_config(path: Path, endpoints: int, interval: int, http_port: int, tcp_port: int) -> None:
    down_port = free_port()  # nothing listens there
    blocks = []
    for i in range(endpoints):
        kind = i % 10
        if kind < 5:
            url, extra = f"http://127.0.0.1:{http_port}/ok?e={i}", ""
        elif kind < 9:
            url, extra = f"127.0.0.1:{tcp_port}", 'protocol = "tcp"\n'
        else:
            url, extra = f"127.0.0.1:{down_port}", 'protocol = "tcp"\n'
        blocks.append(
            f'[[endpoints]]\nid = "soak-{i}"\nname = "soak {i}"\nurl = "{url}"\n{extra}'
            f"check_interval = {interval}\ntimeout = 2\n"
        )
    path.write_text("\n".join(blocks))


def readyz(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            body: dict[str, Any] = json.load(resp)
            return body
    except urllib.error.HTTPError as exc:  # 503 while the database is away still has the figures
        body = json.load(exc)
        return body


def sample(proc: psutil.Process, port: int, started: float) -> Sample:
    ready = readyz(port)
    monitor = ready.get("monitor", {})
    scheduler, writer = monitor.get("scheduler", {}), monitor.get("writer", {})
    return Sample(
        elapsed=time.monotonic() - started,
        rss_mb=proc.memory_info().rss / 2**20,
        threads=proc.num_threads(),
        fds=proc.num_fds(),
        sockets=len(proc.net_connections(kind="inet")),
        completed=int(scheduler.get("completed", 0)),
        lag_p99_ms=float(scheduler.get("lag_p99_ms", 0.0)),
        backlog=int(writer.get("backlog", 0)),
        dropped=int(writer.get("dropped", 0)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=5000)
    parser.add_argument("--interval", type=int, default=10, help="check_interval of every endpoint (s)")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--sample", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the baseline sample")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="ispmon-soak-"))
    targets = subprocess.Popen(
        [sys.executable, str(HERE / "targets.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        assert targets.stdout is not None
        ports = json.loads(targets.stdout.readline())
        config = state / "ispmon.toml"
        write_config(config, args.endpoints, args.interval, ports["http"], ports["tcp"])
        api_port = free_port()
        env = {
            **os.environ,
            "ISPMON_STATE_DIR": str(state),
            "ISPMON_CONFIG": str(config),
            "API_PORT": str(api_port),
            "ISPMON_LOG_FORMAT": "json",
            "SERVICE_CHECK_RETRIES": "0",
        }
        log_path = state / "daemon.log"
        with log_path.open("wb") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "ispmon", "run"], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 180
        while True:
            if daemon.poll() is not None:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                return 1
            try:
                if readyz(api_port).get("status") == "ready":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the daemon did not get ready within 180 s")
            time.sleep(0.5)
        proc = psutil.Process(daemon.pid)
        started = time.monotonic()
        end = started + args.minutes * 60
        print(
            f"soak: {args.endpoints} endpoints every {args.interval} s "
            f"({args.endpoints / args.interval:.0f} checks/s offered) for {args.minutes:g} min, pid {daemon.pid}"
        )
        print(" elapsed   rss_MB  threads  fds  sockets  checks/s  lag_p99_ms  backlog  dropped")
        samples: list[Sample] = []
        while True:
            s = sample(proc, api_port, started)
            rate = (
                (s.completed - samples[-1].completed) / (s.elapsed - samples[-1].elapsed) if samples else 0.0
            )
            samples.append(s)
            print(
                f"{s.elapsed:7.0f}s {s.rss_mb:8.1f} {s.threads:8d} {s.fds:4d} {s.sockets:8d} {rate:9.0f}"
                f" {s.lag_p99_ms:11.1f} {s.backlog:8d} {s.dropped:8d}",
                flush=True,
            )
            if time.monotonic() + args.sample > end:
                break
            time.sleep(args.sample)
        base = next((s for s in samples if s.elapsed >= args.warmup), samples[0])
        last = samples[-1]
        minutes = max((last.elapsed - base.elapsed) / 60, 1e-9)
        print(
            f"growth from {base.elapsed:.0f} s to {last.elapsed:.0f} s: "
            f"RSS {last.rss_mb - base.rss_mb:+.1f} MB ({(last.rss_mb - base.rss_mb) / minutes:+.2f} MB/min), "
            f"threads {last.threads - base.threads:+d}, fds {last.fds - base.fds:+d}, "
            f"sockets {last.sockets - base.sockets:+d}; {last.completed} checks, {last.dropped} dropped"
        )
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if targets.stdin is not None:
            targets.stdin.close()
        try:
            targets.wait(10)
        except subprocess.TimeoutExpired:
            targets.kill()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
