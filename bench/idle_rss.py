"""RSS per idle endpoint of the whole `ispmon run` daemon, two source trees side by side.

    mkdir -p /tmp/old && git archive main | tar -x -C /tmp/old
    python3 bench/idle_rss.py --old /tmp/old/src [--idle 10000] [--reps 3]

Per repetition and tree: one daemon with no endpoint and one with `--idle` endpoints checked
every 3,600 s (so almost none is due while measured), each on a fresh database of one embedded
PostgreSQL, pinned to CPU 0; RSS is read 3 s after the daemon reports ready. Printed: bytes per
idle endpoint ((RSS with N - RSS with none) / N) for every run, then medians and new/old.
The issue's target is at most 2 KiB per idle endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import asyncpg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from compare import free_port, ispmon_block, readyz, rss  # noqa: E402
from ispmon.store.embedded import EmbeddedPostgres  # noqa: E402
from throughput import THEIRS, pin, pin_postgres  # noqa: E402

# ispmon_block formats every kind's url; idle endpoints point at port 9 and use none of these.
_NO_PORTS = {"http": 0, "tcp": 0, "dns": 0}


async def fresh_database(dsn: str, name: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    url = urllib.parse.urlsplit(dsn)
    return urllib.parse.urlunsplit(url._replace(path="/" + name))


def daemon_rss(src: str, dsn: str, count: int, workdir: Path) -> int:
    state = Path(tempfile.mkdtemp(prefix="idle-", dir=workdir))
    config = state / "ispmon.toml"
    config.write_text("\n".join(ispmon_block("idle", i, 3600, _NO_PORTS, "i") for i in range(count)))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": src,
        "DATABASE_URL": dsn,
        "ISPMON_STATE_DIR": str(state),
        "ISPMON_CONFIG": str(config),
        "API_PORT": str(port),
        "ISPMON_LOG_FORMAT": "json",
        "ISPMON_LOG_LEVEL": "warning",
        "RADIUS_ACCT_PORT": "0",
    }
    with (state / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "ispmon", "run"], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 300
            while True:
                if proc.poll() is not None:
                    raise SystemExit((state / "daemon.log").read_text()[-3000:])
                try:
                    if readyz(port).get("status") == "ready":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not get ready within 300 s")
                time.sleep(0.3)
            time.sleep(3.0)
            return rss(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", required=True, help="the old tree's src directory")
    parser.add_argument("--new", default=str(HERE.parent / "src"))
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    pin(0, THEIRS)
    trees = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    asyncio.run(measure(trees, args.idle, args.reps))


async def measure(trees: dict[str, str], idle: int, reps: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ispmon-idle-"))
    embedded = None
    dsn = os.environ.get("DATABASE_URL")
    if not dsn:
        embedded = EmbeddedPostgres(workdir / "pg")
        dsn = await asyncio.to_thread(embedded.start)
        pin_postgres(embedded.pgdata, THEIRS)
    per: dict[str, list[float]] = {}
    phase = 0
    try:
        for rep in range(reps):
            for label, src in trees.items():
                sizes = []
                for count in (0, idle):
                    phase += 1
                    db = await fresh_database(dsn, f"idle{phase}")
                    sizes.append(await asyncio.to_thread(daemon_rss, src, db, count, workdir))
                value = (sizes[1] - sizes[0]) / idle
                per.setdefault(label, []).append(value)
                print(f"  rep {rep + 1} {label}: {value:6.0f} B per idle endpoint "
                      f"(RSS {sizes[0] / 2**20:.1f} -> {sizes[1] / 2**20:.1f} MiB)", flush=True)  # fmt: skip
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        shutil.rmtree(workdir, ignore_errors=True)
    old, new = statistics.median(per["old"]), statistics.median(per["new"])
    print(f"\n== RSS per idle endpoint ({idle} endpoints every 3,600 s), median of {reps}")
    print(f"old {old:.0f} B, new {new:.0f} B, new/old {new / old:.2f} (target: at most 2,048 B)")


if __name__ == "__main__":
    main()
