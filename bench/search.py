"""The Elasticsearch feed's cost: documents/s from PostgreSQL to a ``_bulk`` endpoint, our CPU per
1,000 documents, and the sync lag and share of a core while status rows arrive at 2,000 checks/s.

Loopback only: embedded PostgreSQL (or DATABASE_URL), and tests/esserver.py (the strict test
server) in a process of its own. Each measurement runs in a child process of its own, so that
process's CPU (resource.getrusage) is the feed's: the cursor query, decoding rows, building
documents, NDJSON, the client's request handling, reading the answers. PostgreSQL's CPU for the
feed's queries (its backends' /proc times, when the server is local) is printed beside it.
The anchor, measured in the same run, is reading the same rows with asyncpg alone. The 2,000
checks/s load is a separate process writing status_history as the daemon's results writer does
(a COPY every 0.5 s with its write_batches row; HTTP checks' details, as probes/http.py writes).

``--before TREE`` (a checkout of an older commit: ``git worktree add /tmp/search-before HEAD``)
runs the same measurements with TREE/src imported instead of ours, in the same run, on the same
servers and the same data; the figures are printed side by side and beside the goal (issue 14:
keep up with 2,000 checks/s on at most 10 % of a core, i.e. 50 µs per document).

    PYTHONPATH=src python3 bench/search.py [--before TREE] [--rows 50000] [--load-seconds 30]
        [--rate 2000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_US = 50.0  # issue 14: 10 % of a core at 2,000 checks/s
GOAL_PCT = 10.0
LOADER = "bench-search-loader"  # application_name of the load's connection (not the feed's)
HTTP_DETAILS = '{"status_code": 200, "bytes_read": 512}'  # what probes/http.py stores for an up check


class GcTimer:
    """CPU spent in the garbage collector's collections (gc.callbacks), to say where time went."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = cpu()
        else:
            self.spent += cpu() - self._start


GC = GcTimer()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _proc_cpu(pids: list[int]) -> dict[int, float] | None:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


async def pg_cpu(pool: asyncpg.Pool) -> dict[int, float] | None:
    """CPU seconds of the feed's PostgreSQL backends, by pid; None when the server is not local."""
    rows = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name <> $1",
        LOADER,
    )
    return _proc_cpu([r["pid"] for r in rows])


def pg_spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    if before is None or after is None:
        return None
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


async def run_es_server() -> None:
    from tests.esserver import EsServer

    server = EsServer(major=8)
    url = await server.start()
    print(url, flush=True)
    await asyncio.Event().wait()  # until terminated


async def run_loader(dsn: str, rate: int, seconds: float, endpoints: int) -> None:
    """status_history rows at `rate` per second, in a COPY every 0.5 s (as store/writer.py)."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": LOADER})
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        now = datetime.now(UTC)
        n = rate // 2
        records = [(f"ep{i % endpoints:04d}", now, "up", 12.5, 1, HTTP_DETAILS) for i in range(n)]
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO write_batches (batch_id, table_name, rows) VALUES ($1, 'status_history', $2)",
                uuid.uuid4(),
                n,
            )
            await conn.copy_records_to_table(
                "status_history",
                records=records,
                columns=("endpoint_id", "checked_at", "status", "response_time_ms", "attempts", "details"),
            )
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * 0.5 - time.monotonic()))
    await conn.close()


async def prepare(dsn: str, endpoints: int) -> None:
    from ispmon.store.db import migrate

    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.executemany(
        "INSERT INTO endpoints (id, name, protocol, url, tags, spec) VALUES ($1, $2, 'http', $3, '{bench}', '{}')"
        " ON CONFLICT DO NOTHING",
        [(f"ep{i:04d}", f"Endpoint {i}", f"http://127.0.0.1:9/{i}") for i in range(endpoints)],
    )
    await conn.close()


def make_sync(pool: asyncpg.Pool, client: object, batch: int, interval: float = 1.0):  # type: ignore[no-untyped-def]
    from ispmon.search.bulk import Deliverer
    from ispmon.search.client import bulk_sender, classify
    from ispmon.search.documents import Observer
    from ispmon.search.sources import STATUS
    from ispmon.search.sync import SearchSync

    return SearchSync(
        pool,
        Deliverer(bulk_sender(client), classify=classify),  # type: ignore[arg-type]
        "isp",
        Observer(socket.gethostname(), "bench"),
        interval=interval,
        batch_size=batch,
        sources=(STATUS,),
    )


async def throughput(dsn: str, es_url: str, rows: int, endpoints: int, batch: int) -> dict[str, Any]:
    from ispmon.search.client import ClientConfig, make_client
    from ispmon.search.setup import es_setup
    from ispmon.search.sources import STATUS

    conn = await asyncpg.connect(dsn)
    await conn.execute(
        """INSERT INTO status_history (endpoint_id, checked_at, status, response_time_ms, error_kind, error, details)
           SELECT 'ep' || lpad((g % $2)::text, 4, '0'), now() - make_interval(secs => g / 100.0),
                  CASE WHEN g % 50 = 0 THEN 'down' ELSE 'up' END, 10 + g % 90,
                  CASE WHEN g % 50 = 0 THEN 'timeout' END, CASE WHEN g % 50 = 0 THEN 'no answer within 5 s' END,
                  CASE WHEN g % 50 <> 0 THEN $3::jsonb END
           FROM generate_series(1, $1) g""",
        rows,
        endpoints,
        HTTP_DETAILS,
    )
    await conn.execute("VACUUM ANALYZE status_history")
    await conn.close()
    from ispmon.store.db import create_pool

    pool = await create_pool(dsn, min_size=4, max_size=4)
    client = make_client(ClientConfig(url=es_url, timeout=60))
    await es_setup(client, "isp")

    # Anchor: the same rows read with asyncpg alone (this tree's query), in the same batches.
    sync = make_sync(pool, client, batch)
    await sync.load()
    state = sync.states[STATUS.key]
    cur = state.cursor
    snap = await pool.fetchrow("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x")
    c0, t0 = cpu(), time.perf_counter()
    after = None
    read = 0
    while True:
        args = [cur.watermark, snap["x"], 0, batch, *(after or [])]
        got = await pool.fetch(STATUS.query(after), *args)
        read += len(got)
        if len(got) < batch:
            break
        after = STATUS.key_of(got[-1])
    anchor_cpu, anchor_wall = cpu() - c0, time.perf_counter() - t0

    profile = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    p0 = await pg_cpu(pool)
    c0, t0, g0 = cpu(), time.perf_counter(), GC.spent
    sent = 0
    while sent < rows:
        n = await sync.sync_once()
        if n == 0:
            break
        sent += n
    feed_cpu, feed_wall, gc_cpu = cpu() - c0, time.perf_counter() - t0, GC.spent - g0
    pg = pg_spent(p0, await pg_cpu(pool))
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    assert sent == rows, f"sent {sent} of {rows}"
    await client.close()
    await pool.close()
    return {
        "rows": rows,
        "batch": batch,
        "anchor_rows_s": read / anchor_wall,
        "anchor_ms_1000": anchor_cpu / read * 1e6,
        "docs_s": sent / feed_wall,
        "ms_1000": feed_cpu / sent * 1e6,
        "gc_ms_1000": gc_cpu / sent * 1e6,
        "pg_ms_1000": None if pg is None else pg / sent * 1e6,
        "load": load(),
    }


async def lag_under_load(
    dsn: str, es_url: str, rate: int, seconds: float, endpoints: int, batch: int
) -> dict[str, Any]:
    from ispmon.search.client import ClientConfig, make_client
    from ispmon.search.cursor import lag_seconds
    from ispmon.search.setup import es_setup
    from ispmon.search.sources import STATUS
    from ispmon.store.db import create_pool

    pool = await create_pool(dsn, max_size=4)
    client = make_client(ClientConfig(url=es_url, timeout=60))
    await es_setup(client, "isp")
    sync = make_sync(pool, client, batch, interval=1.0)
    await sync.load()
    await sync.sync_once()  # whatever is there already
    key = STATUS.key
    sent0 = sync.states[key].cursor.sent
    loader = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--loader", dsn, str(rate), str(seconds), str(endpoints),
        env={**os.environ},
    )  # fmt: skip
    task = asyncio.create_task(sync.run())
    lags: list[float] = []
    p0 = await pg_cpu(pool)
    c0, t0, g0 = cpu(), time.perf_counter(), GC.spent
    while loader.returncode is None:
        await asyncio.sleep(0.5)
        lag = lag_seconds(sync.states[key].cursor.watermark_at, datetime.now(UTC))
        if lag is not None and time.perf_counter() - t0 > 3:
            lags.append(lag)
        if time.perf_counter() - t0 > seconds + 30:
            break
    await loader.wait()
    feed_cpu, wall, gc_cpu = cpu() - c0, time.perf_counter() - t0, GC.spent - g0
    pg = pg_spent(p0, await pg_cpu(pool))
    written = int(await pool.fetchval("SELECT coalesce(sum(rows), 0) FROM write_batches"))
    stop = time.perf_counter()
    # Caught up: every row the load wrote has been accepted (the cursor's count says so).
    while sync.states[key].cursor.sent - sent0 < written and time.perf_counter() - stop < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.2)  # a counter of the sync's, polled: it has no event to wait on
    caught_up = time.perf_counter() - stop
    caught = sync.states[key].cursor.sent - sent0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()
    await pool.close()
    lags.sort()
    return {
        "rate": rate,
        "seconds": seconds,
        "written": written,
        "sent": caught,
        "cpu_s": feed_cpu,
        "wall_s": wall,
        "pct": 100 * feed_cpu / wall,
        "us_row": feed_cpu / max(written, 1) * 1e6,
        "gc_us_row": gc_cpu / max(written, 1) * 1e6,
        "pg_us_row": None if pg is None else pg / max(written, 1) * 1e6,
        "lag_median": statistics.median(lags) if lags else None,
        "lag_p95": lags[int(len(lags) * 0.95) - 1] if lags else None,
        "lag_max": lags[-1] if lags else None,
        "caught_up_s": caught_up,
        "load": load(),
    }


async def phase(args: argparse.Namespace) -> None:
    """One measurement in this process (its CPU is the feed's), with this PYTHONPATH's ispmon."""
    await prepare(args.dsn, args.endpoints)
    if args.phase == "throughput":
        out = await throughput(args.dsn, args.es, args.rows, args.endpoints, args.batch)
    else:
        out = await lag_under_load(
            args.dsn, args.es, args.rate, args.load_seconds, args.endpoints, args.batch
        )
    print("RESULT " + json.dumps(out), flush=True)


def _with_database(dsn: str, database: str) -> str:
    """Swap the database in a postgresql:// URI (the embedded server's URI uses a socket query arg)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _child(tree: Path, kind: str, dsn: str, es_url: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", kind, "--dsn", dsn, "--es", es_url, "--rows", str(args.rows),
           "--batch", str(args.batch), "--endpoints", str(args.endpoints), "--rate", str(args.rate),
           "--load-seconds", str(args.load_seconds)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return dict(json.loads(line[len("RESULT ") :]))


def _f(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def report(results: dict[str, list[dict[str, Any]]], kind: str) -> None:
    names = list(results)
    if kind == "throughput":
        r0 = results[names[0]][0]
        print(f"\nPostgreSQL -> _bulk, {r0['rows']:,} status rows, batches of {r0['batch']} (median of runs)")
        print(
            f"  {'':8} {'docs/s':>9} {'ms CPU/1,000':>13} {'of it GC':>9} {'x anchor':>9} {'PG ms/1,000':>12}"
            "   anchor (read only)"
        )
    else:
        r0 = results[names[0]][0]
        print(f"\nsync lag while {r0['rate']:,} checks/s are written for {r0['seconds']:.0f} s,"
              f" ELASTICSEARCH_SYNC_INTERVAL=1 (median of runs)")  # fmt: skip
        print(f"  {'':8} {'% core':>7} {'µs/row':>7} {'of it GC':>9} {'PG µs/row':>10} {'lag med':>8}"
              f" {'p95':>6} {'max':>6} {'caught up':>10}  rows sent/written")  # fmt: skip
    for name in names:
        runs = results[name]

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float | None:
            vals = [r[key] for r in runs if r[key] is not None]
            return statistics.median(vals) if vals else None

        if kind == "throughput":
            ratio = statistics.median(r["ms_1000"] / r["anchor_ms_1000"] for r in runs)
            print(f"  {name:8} {med('docs_s'):9,.0f} {med('ms_1000'):13.1f} {med('gc_ms_1000'):9.1f} {ratio:8.1f}x "
                  f"{_f(med('pg_ms_1000'), '12.1f')}   {med('anchor_rows_s'):,.0f} rows/s, "
                  f"{med('anchor_ms_1000'):.1f} ms/1,000")  # fmt: skip
        else:
            print(f"  {name:8} {med('pct'):6.1f}% {med('us_row'):7.1f} {med('gc_us_row'):9.1f} "
                  f"{_f(med('pg_us_row'), '10.1f')} "
                  f"{_f(med('lag_median'), '7.2f')}s {_f(med('lag_p95'), '5.2f')}s {_f(med('lag_max'), '5.2f')}s "
                  f"{med('caught_up_s'):9.1f}s  "
                  + ", ".join(f"{r['sent']:,}/{r['written']:,}" for r in runs))  # fmt: skip
    if kind == "throughput":
        print(f"  goal     {'':9} {GOAL_US:13.1f}  (50 µs per document, everything included)")
    else:
        print(f"  goal     {GOAL_PCT:6.1f}% {GOAL_US:7.1f}")
    for name in names:
        for r in results[name]:
            print(f"    {name} run: {r['load']}")
    if len(names) == 2:
        key = "ms_1000" if kind == "throughput" else "us_row"
        a = statistics.median(r[key] for r in results[names[0]])
        b = statistics.median(r[key] for r in results[names[1]])
        print(f"  {names[1]} / {names[0]}: {b / a:.2f} of the CPU per document")


async def main(args: argparse.Namespace) -> None:
    es = subprocess.Popen([sys.executable, __file__, "--es-server"], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    assert es.stdout is not None
    es_url = es.stdout.readline().strip()
    server = None
    tmp = Path(tempfile.mkdtemp(prefix="ispmon-bench-search-"))
    trees = ([("before", args.before)] if args.before else []) + [("ours", ROOT)]
    names: list[str] = []
    try:
        if os.environ.get("DATABASE_URL"):
            base = os.environ["DATABASE_URL"]
        else:
            from ispmon.store.embedded import EmbeddedPostgres

            server = EmbeddedPostgres(tmp / "pg")
            base = server.start()
        admin = await asyncpg.connect(_with_database(base, "postgres"))
        try:
            for kind in ("throughput", "lag"):
                results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in trees}
                for rep in range(args.repeat):
                    # Alternate the order between repeats, so a drift in the machine's load is shared.
                    order = trees if rep % 2 == 0 else trees[::-1]
                    for name, tree in order:
                        db = f"bench_search_{os.getpid()}_{kind}_{name}_{rep}"
                        names.append(db)
                        await admin.execute(f'CREATE DATABASE "{db}"')
                        results[name].append(
                            await asyncio.to_thread(
                                _child, tree, kind, _with_database(base, db), es_url, args
                            )
                        )
                        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                report(results, kind)
        finally:
            for db in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            await admin.close()
    finally:
        es.terminate()
        es.wait(10)
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--es-server"]:
        asyncio.run(run_es_server())
        sys.exit(0)
    if sys.argv[1:2] == ["--loader"]:
        dsn, rate, seconds, endpoints = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        asyncio.run(run_loader(dsn, rate, seconds, endpoints))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, help="a checkout whose src/ is measured beside ours")
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=2000)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--load-seconds", type=float, default=30)
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement (medians printed)")
    p.add_argument("--phase", choices=("throughput", "lag"), help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    p.add_argument("--es", help=argparse.SUPPRESS)
    parsed = p.parse_args()
    asyncio.run(phase(parsed) if parsed.phase else main(parsed))
