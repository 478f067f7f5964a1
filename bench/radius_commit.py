"""The accounting commit alone: CPU per record in the client and in PostgreSQL, old tree beside new.

    python bench/radius_commit.py [--before TREE] [--sessions 20000] [--customers 10000]
                                  [--batch 200] [--batches 100] [--reps 3]

What it times is `AccountingStore.commit` (the listener's group commit): batches of Interim-Updates,
already decoded, for sessions that all exist (a warm-up gave each its first record), each owned by
one of the customers, so every commit also rolls usage up. Per record it prints the client's CPU
(this process: asyncpg encoding, apply_record, building the statement's arguments) and the
PostgreSQL server's (the postmaster and every child: the backend, WAL writer, checkpointer), from
getrusage and psutil, not wall time: the machine is shared. With `--before TREE` (e.g. a `git
archive` of main) each repetition runs the old tree's code and then this tree's, each in a fresh
child process with its own embedded PostgreSQL, and prints new/old ratios; the load average is
printed beside every figure. Loopback only (a unix socket); every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from radius_packets import SECRET
from radius_packets import request as _request


def _server_cpu(pgdata: Path) -> float:
    import psutil

    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    total = 0.0
    for proc in [postmaster, *postmaster.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


async def _child(args: argparse.Namespace) -> dict[str, float]:
    from ispmon.store.db import create_pool, migrate
    from ispmon.store.embedded import EmbeddedPostgres
    from ispmon.store.usage_accounting import AccountingStore
    from ispmon.usage.accounting import Received
    from ispmon.usage.radius import decode_request

    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-commit-"))
    server = EmbeddedPostgres(base)
    try:
        dsn = await asyncio.to_thread(server.start)
        pool = await create_pool(dsn, max_size=2)
        async with pool.acquire() as conn:
            await migrate(conn)
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
        store = AccountingStore(pool)
        port = 0

        def batch_of(sessions: range, counter: int) -> list[Received]:
            nonlocal port
            port += 1  # a new source port per batch: every record's duplicate key is new
            out = []
            for session in sessions:
                raw = _request(session % 256, session, counter)
                _, record = decode_request(raw, SECRET)
                out.append(Received("bras", port, raw[1], raw[4:20], record, datetime.now(UTC)))
            return out

        for start in range(0, args.sessions, 2000):  # warm-up: each session's first record
            await store.commit(batch_of(range(start, min(start + 2000, args.sessions)), 0))
        batches = []
        for n in range(args.batches):
            first = n * args.batch % args.sessions
            rounds = n * args.batch // args.sessions
            batches.append(
                batch_of(range(first, min(first + args.batch, args.sessions)), 1500 * (rounds + 1))
            )
        await pool.execute("CHECKPOINT")
        records = sum(len(b) for b in batches)
        load = os.getloadavg()[0]
        c0, s0, w0 = resource.getrusage(resource.RUSAGE_SELF), _server_cpu(server.pgdata), time.perf_counter()
        for batch in batches:
            await store.commit(batch)
        c1, s1, w1 = resource.getrusage(resource.RUSAGE_SELF), _server_cpu(server.pgdata), time.perf_counter()
        client = (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        stored = await pool.fetchval("SELECT count(*) FROM acct_records")
        await pool.close()
        return {
            "client_us": client / records * 1e6,
            "server_us": (s1 - s0) / records * 1e6,
            "wall_us": (w1 - w0) / records * 1e6,
            "records": records,
            "stored": stored,
            "load": (load + os.getloadavg()[0]) / 2,
        }
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(base, ignore_errors=True)


def _run(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    cmd = [
        sys.executable,
        __file__,
        "--child",
        *(f"--{k}={getattr(args, k)}" for k in ("sessions", "customers", "batch", "batches")),
    ]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a tree with the old code (its src/ is imported)")
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        print(json.dumps(uvloop.run(_child(args))))
        return
    trees = [("before", args.before)] if args.before else []
    trees.append(("after", Path(__file__).resolve().parent.parent))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    print(
        f"{args.batches} commits of {args.batch} interims, {args.sessions} sessions, {args.customers} customers"
    )
    print(f"{'':>7} {'rep':>3} {'client us/rec':>14} {'server us/rec':>14} {'wall us/rec':>12} {'load':>5}")
    for rep in range(args.reps):
        for name, tree in trees:
            r = _run(tree, args)
            assert r["stored"] == args.sessions + r["records"], r  # nothing lost, nothing twice
            results[name].append(r)
            print(
                f"{name:>7} {rep:>3} {r['client_us']:>14.1f} {r['server_us']:>14.1f} "
                f"{r['wall_us']:>12.1f} {r['load']:>5.1f}"
            )
    med = {
        n: {k: statistics.median(x[k] for x in rs) for k in ("client_us", "server_us", "wall_us")}
        for n, rs in results.items()
    }
    for name in med:
        m = med[name]
        print(
            f"median {name:>7}: client {m['client_us']:.1f} us, server {m['server_us']:.1f} us, "
            f"total {m['client_us'] + m['server_us']:.1f} us per record"
        )
    if args.before:
        a, b = med["after"], med["before"]
        print(
            f"after/before: client {a['client_us'] / b['client_us']:.2f}, "
            f"server {a['server_us'] / b['server_us']:.2f}, "
            f"total {(a['client_us'] + a['server_us']) / (b['client_us'] + b['server_us']):.2f}"
        )


if __name__ == "__main__":
    main()
