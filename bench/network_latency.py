"""Network report latency-table benchmark: ENDPOINTS ICMP endpoints, a check a minute for DAYS
days (5 packets each, RTTs in details.rtts_ms), read from raw status_history.

    python bench/network_latency.py      # about a minute; embedded PostgreSQL in a temporary directory

Printed (median of REPEAT runs): wall seconds and CPU seconds of the PostgreSQL backend for the
latency section, for one day of it, and an anchor measured in the same run: a bare count(*) over
the same rows (the scan alone), so the ratio is the cost of unnesting the RTTs and the percentiles.
The load average is printed beside them: the machine is shared.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

from ispmon.reports import network_latency
from ispmon.reports import query as report_query
from ispmon.reports.kinds import KINDS
from ispmon.services.reports import ReportService
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres

ENDPOINTS = 50
DAYS = 7
REPEAT = 5


async def _generate(db: Database, since: datetime) -> int:
    await db.pool.execute("SELECT ispmon_ensure_status_partitions($1::date, $2)", since.date(), DAYS + 1)
    await db.pool.execute(
        f"""INSERT INTO endpoints (id, name, protocol, url, spec)
            SELECT 'gw-' || g, 'Gateway ' || g, 'icmp', '192.0.2.' || g, '{{}}'::jsonb
            FROM generate_series(1, {ENDPOINTS}) g"""
    )
    for day in range(DAYS):  # one day per statement: bounded
        await db.pool.execute(
            f"""INSERT INTO status_history (endpoint_id, checked_at, status, response_time_ms, details)
                SELECT 'gw-' || g, $1::timestamptz + m * interval '1 minute', 'up', 10,
                       jsonb_build_object('packets_sent', 5, 'packets_received', 4,
                           'rtts_ms', jsonb_build_array(10 + g % 7, 11 + m % 13, 12, 30 + (g * m) % 17))
                FROM generate_series(1, {ENDPOINTS}) g, generate_series(0, 1439) m""",
            since + timedelta(days=day),
        )
    await db.pool.execute("VACUUM ANALYZE status_history")
    return int(await db.pool.fetchval("SELECT count(*) FROM status_history"))


async def _measure(backend: psutil.Process, run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(REPEAT):
        p0 = backend.cpu_times()
        start = time.perf_counter()
        await run()
        walls.append(time.perf_counter() - start)
        p1 = backend.cpu_times()
        cpus.append(p1.user + p1.system - p0.user - p0.system)
    return statistics.median(walls), statistics.median(cpus)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-netlat-"))
    server = EmbeddedPostgres(base)
    try:
        db = await Database.connect(server.start(), max_size=1)  # one backend: the one measured
        until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        since = until - timedelta(days=DAYS)
        t0 = time.perf_counter()
        rows = await _generate(db, since)
        took = time.perf_counter() - t0
        print(f"generated {rows:,} ICMP checks ({ENDPOINTS} endpoints x {DAYS} days) in {took:.1f} s")
        backend = psutil.Process(await db.pool.fetchval("SELECT pg_backend_pid()"))
        kind = KINDS["network"]
        service = ReportService(db)
        whole = report_query.build(kind, since, until, {}, now=until)
        day = report_query.build(kind, until - timedelta(days=1), until, {}, now=until)

        async def section(query: report_query.ReportQuery) -> int:
            return len([r async for r in service.rows(network_latency.SECTION, query)])

        async def scan() -> object:
            return await db.pool.fetchval(
                "SELECT count(*) FROM status_history WHERE checked_at >= $1 AND checked_at < $2", since, until
            )

        await section(whole)  # warm the pages
        print(f"median of {REPEAT}; load average {_load()}")
        for label, run, checks in (
            (f"latency table, {DAYS} days", lambda: section(whole), rows),
            ("latency table, 1 day", lambda: section(day), rows // DAYS),
            (f"anchor count(*), {DAYS} days", scan, rows),
        ):
            wall, cpu = await _measure(backend, run)
            print(f"  {label:26}: {wall:6.3f} s wall, {cpu:6.3f} s PostgreSQL CPU, {cpu / checks * 1e6:6.2f} us/check")
        print(f"  load average after: {_load()}")
        await db.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
