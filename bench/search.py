"""The Elasticsearch feed's cost: documents/s from PostgreSQL to a ``_bulk`` endpoint, our CPU per
1,000 documents, and the sync lag while status rows arrive at 2,000 checks/s.

Loopback only: embedded PostgreSQL (or DATABASE_URL), and tests/esserver.py (the strict test
server) in a process of its own, so this process's CPU (resource.getrusage) is the feed's: reading
rows, building documents, serialising NDJSON, the client, and reading the answers. The anchor,
measured in the same run, is reading the same rows with asyncpg alone (what any feed must pay).
The 2,000 checks/s load is a separate process writing status_history the way the daemon's
results writer does (a COPY every 0.5 s with its write_batches row).

    PYTHONPATH=src python3 bench/search.py [--rows 50000] [--load-seconds 30] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def run_es_server() -> None:
    from tests.esserver import EsServer

    server = EsServer(major=8)
    url = await server.start()
    print(url, flush=True)
    await asyncio.Event().wait()  # until terminated


async def run_loader(dsn: str, rate: int, seconds: float, endpoints: int) -> None:
    """status_history rows at `rate` per second, in a COPY every 0.5 s (as store/writer.py)."""
    conn = await asyncpg.connect(dsn)
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        now = datetime.now(UTC)
        n = rate // 2
        records = [(f"ep{i % endpoints:04d}", now, "up", 12.5, 1) for i in range(n)]
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO write_batches (batch_id, table_name, rows) VALUES ($1, 'status_history', $2)",
                uuid.uuid4(),
                n,
            )
            await conn.copy_records_to_table(
                "status_history",
                records=records,
                columns=("endpoint_id", "checked_at", "status", "response_time_ms", "attempts"),
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


async def throughput(dsn: str, es_url: str, rows: int, endpoints: int, batch: int) -> None:
    from ispmon.search.client import ClientConfig, make_client
    from ispmon.search.setup import es_setup
    from ispmon.search.sources import STATUS

    conn = await asyncpg.connect(dsn)
    await conn.execute(
        """INSERT INTO status_history (endpoint_id, checked_at, status, response_time_ms, error_kind, error)
           SELECT 'ep' || lpad((g % $2)::text, 4, '0'), now() - make_interval(secs => g / 100.0),
                  CASE WHEN g % 50 = 0 THEN 'down' ELSE 'up' END, 10 + g % 90,
                  CASE WHEN g % 50 = 0 THEN 'timeout' END, CASE WHEN g % 50 = 0 THEN 'no answer within 5 s' END
           FROM generate_series(1, $1) g""",
        rows,
        endpoints,
    )
    await conn.execute("VACUUM ANALYZE status_history")
    await conn.close()
    from ispmon.store.db import create_pool

    pool = await create_pool(dsn, max_size=4)
    client = make_client(ClientConfig(url=es_url, timeout=60))
    await es_setup(client, "isp")

    # Anchor: the same rows read with asyncpg alone, in the same batches.
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
    c0, t0 = cpu(), time.perf_counter()
    sent = 0
    while sent < rows:
        n = await sync.sync_once()
        if n == 0:
            break
        sent += n
    feed_cpu, feed_wall = cpu() - c0, time.perf_counter() - t0
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    print(f"\nPostgreSQL -> _bulk, {rows:,} status rows, batches of {batch} ({load()})")
    print(f"  anchor: read the rows with asyncpg      {read / anchor_wall:10,.0f} rows/s   "
          f"{anchor_cpu / read * 1e6:7.1f} ms CPU per 1,000")  # fmt: skip
    print(f"  feed: read + documents + _bulk           {sent / feed_wall:10,.0f} docs/s   "
          f"{feed_cpu / sent * 1e6:7.1f} ms CPU per 1,000 "
          f"({feed_cpu / max(anchor_cpu, 1e-9):.1f}x the anchor)")  # fmt: skip
    assert sent == rows, f"sent {sent} of {rows}"
    await client.close()
    await pool.close()


async def lag_under_load(
    dsn: str, es_url: str, rate: int, seconds: float, endpoints: int, batch: int
) -> None:
    from ispmon.search.client import ClientConfig, make_client
    from ispmon.search.cursor import lag_seconds
    from ispmon.search.sources import STATUS
    from ispmon.store.db import create_pool

    pool = await create_pool(dsn, max_size=4)
    client = make_client(ClientConfig(url=es_url, timeout=60))
    sync = make_sync(pool, client, batch, interval=1.0)
    await sync.load()
    await sync.sync_once()  # whatever is there already
    before_rows = await pool.fetchval("SELECT count(*) FROM status_history")
    loader = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--loader", dsn, str(rate), str(seconds), str(endpoints),
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "src")},
    )  # fmt: skip
    task = asyncio.create_task(sync.run())
    lags: list[float] = []
    c0, t0 = cpu(), time.perf_counter()
    while loader.returncode is None:
        await asyncio.sleep(0.5)
        lag = lag_seconds(sync.states[STATUS.key].cursor.watermark_at, datetime.now(UTC))
        if lag is not None and time.perf_counter() - t0 > 3:
            lags.append(lag)
        if time.perf_counter() - t0 > seconds + 30:
            break
    await loader.wait()
    feed_cpu, wall = cpu() - c0, time.perf_counter() - t0
    total = await pool.fetchval("SELECT count(*) FROM status_history") - before_rows
    stop = time.perf_counter()
    start_sent = sync.states[STATUS.key].cursor.sent
    while True:
        backlog_done = (
            await pool.fetchval("SELECT count(*) FROM status_history") + 0
            <= before_rows + (sync.states[STATUS.key].cursor.sent - start_sent) + total
        )
        if sync.states[STATUS.key].backlog == 0 and backlog_done:
            break
        if time.perf_counter() - stop > 60:
            break
        await asyncio.sleep(0.2)
    caught_up = time.perf_counter() - stop
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    print(
        f"\nsync lag while {rate:,} checks/s are written for {seconds:.0f} s, ELASTICSEARCH_SYNC_INTERVAL=1 ({load()})"
    )
    print(f"  rows written {total:,}; feed CPU {feed_cpu:.2f} s over {wall:.1f} s = "
          f"{100 * feed_cpu / wall:.1f} % of a core ({feed_cpu / max(total, 1) * 1e6:.0f} µs per row)")  # fmt: skip
    if lags:
        print(f"  lag (now - watermark, /search/status): median {statistics.median(lags):.2f} s, "
              f"p95 {sorted(lags)[int(len(lags) * 0.95) - 1]:.2f} s, max {max(lags):.2f} s; "
              f"backlog 0 again {caught_up:.1f} s after the load stopped")  # fmt: skip
    await client.close()
    await pool.close()


def _with_database(dsn: str, database: str) -> str:
    """Swap the database in a postgresql:// URI (the embedded server's URI uses a socket query arg)."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def main(args: argparse.Namespace) -> None:
    es = subprocess.Popen([sys.executable, __file__, "--es-server"], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    assert es.stdout is not None
    es_url = es.stdout.readline().strip()
    server = None
    tmp = Path(tempfile.mkdtemp(prefix="ispmon-bench-search-"))
    try:
        if os.environ.get("DATABASE_URL"):
            base = os.environ["DATABASE_URL"]
        else:
            from ispmon.store.embedded import EmbeddedPostgres

            server = EmbeddedPostgres(tmp / "pg")
            base = server.start()
        admin = await asyncpg.connect(_with_database(base, "postgres"))
        names = [f"bench_search_{os.getpid()}_{k}" for k in ("a", "b")]
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            dsns = [_with_database(base, n) for n in names]
            for dsn in dsns:
                await prepare(dsn, args.endpoints)
            await throughput(dsns[0], es_url, args.rows, args.endpoints, args.batch)
            await lag_under_load(dsns[1], es_url, args.rate, args.load_seconds, args.endpoints, args.batch)
        finally:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    finally:
        es.terminate()
        es.wait(10)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--es-server"]:
        asyncio.run(run_es_server())
        sys.exit(0)
    if sys.argv[1:2] == ["--loader"]:
        dsn, rate, seconds, endpoints = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        asyncio.run(run_loader(dsn, rate, seconds, endpoints))
        sys.exit(0)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=2000)
    p.add_argument("--rate", type=int, default=2000)
    p.add_argument("--load-seconds", type=float, default=30)
    asyncio.run(main(p.parse_args()))
    print(json.dumps({"done": True}))
