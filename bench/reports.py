"""Report benchmark: the availability report for 1,000 endpoints over 90 days, as JSON, CSV and PDF.

    python bench/reports.py          # a few minutes; embedded PostgreSQL in a temporary directory

History is generated straight into the rollups with COPY (bounded: 13 weekly rows, 90 daily rows
and the last 168 hourly rows per endpoint, each with a response-time histogram of ~20 bins, and 20 outages
per endpoint), as the rollup loop would have left it. Figures printed, per format (median of
REPEAT runs): wall seconds, CPU seconds of this process and of the PostgreSQL backend, and the
peak of Python allocations (tracemalloc, a separate run) beside the output's size. Anchor in the
same run: the same report read from the 1-hour rollups only for the last 7 days (what the daily
and weekly rows spare), and the load average, since the machine is shared.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from ispmon.reports import query as report_query
from ispmon.reports.histogram import BINS
from ispmon.reports.kinds import KINDS
from ispmon.services.reports import ReportService
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.endpoint_rollups import COLUMNS

ENDPOINTS = 1000
DAYS = 90
REPEAT = 5


def _hist(rng: random.Random, checks: int) -> tuple[list[int], list[int]]:
    centre = rng.randint(40, 90)
    bins = sorted({max(0, min(BINS - 1, centre + rng.randint(-10, 10))) for _ in range(20)})
    counts = [max(1, checks // len(bins) + rng.randint(-3, 3)) for _ in bins]
    return bins, counts


def _rows(step: int, starts: list[datetime], rng: random.Random) -> list[tuple[Any, ...]]:
    checks = step // 60
    out = []
    for e in range(ENDPOINTS):
        for bucket in starts:
            down = rng.choice((0, 0, 0, 0, 1, 5))
            bins, counts = _hist(rng, checks - down)
            rt = sum(counts)
            out.append(
                (step, f"ep-{e:04d}", bucket, checks, checks - down, 0, down, 0, 0, down * 60.0,
                 rng.choice((0.0, 0.0, 0.0, 1800.0)) if step == 86400 else 0.0, 1 if down else 0,
                 rt, rt * 40.0, bins, counts)
            )  # fmt: skip
    return out


async def _generate(db: Database, now: datetime) -> None:
    rng = random.Random(15)
    await db.pool.execute(
        f"""INSERT INTO endpoints (id, name, protocol, url, tags, spec, created_at)
            SELECT 'ep-' || lpad(g::text, 4, '0'), 'Endpoint ' || g, 'http', 'http://192.0.2.1/',
                   ARRAY['t' || (g % 10)], '{{}}'::jsonb, $1
            FROM generate_series(0, {ENDPOINTS - 1}) g""",
        now - timedelta(days=DAYS + 10),
    )
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    days = [today - timedelta(days=d) for d in range(DAYS, 0, -1)]
    hours = [now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h) for h in range(7 * 24, 0, -1)]
    monday = today - timedelta(days=today.weekday())
    weeks = [monday - timedelta(weeks=w) for w in range(DAYS // 7 + 1, 0, -1)]
    for step, starts in ((604800, weeks), (86400, days), (3600, hours)):
        for i in range(0, len(starts), 10):  # bounded batches
            batch = _rows(step, starts[i : i + 10], rng)
            await db.pool.copy_records_to_table("endpoint_rollups", records=batch, columns=COLUMNS)
    await db.pool.execute(
        "INSERT INTO endpoint_rollup_progress (step_s, done_until) VALUES (604800, $3), (86400, $1), (3600, $2)",
        today,
        hours[-1] + timedelta(hours=1),
        monday,
    )
    outages = [
        (f"ep-{e:04d}", start, start + timedelta(minutes=3), start + timedelta(minutes=10), "down", "high")
        for e in range(ENDPOINTS)
        for start in (now - timedelta(days=rng.uniform(1, DAYS)) for _ in range(20))
    ]
    await db.pool.copy_records_to_table(
        "outages",
        records=outages,
        columns=("endpoint_id", "started_at", "declared_at", "resolved_at", "status", "severity"),
    )
    await db.pool.execute("VACUUM ANALYZE")


async def _measure(backend: psutil.Process, run: Callable[[], Awaitable[int]]) -> tuple[float, float, float, int]:
    walls, cpus, pg_cpus = [], [], []
    size = 0
    for _ in range(REPEAT):
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        p0 = backend.cpu_times()
        start = time.perf_counter()
        size = await run()
        walls.append(time.perf_counter() - start)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        p1 = backend.cpu_times()
        cpus.append(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime)
        pg_cpus.append(p1.user + p1.system - p0.user - p0.system)
    return statistics.median(walls), statistics.median(cpus), statistics.median(pg_cpus), size


async def _peak(run: Callable[[], Awaitable[int]]) -> float:
    tracemalloc.start()
    await run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-reports-"))
    server = EmbeddedPostgres(base)
    try:
        # One connection: the backend whose CPU is measured is the one that runs the queries.
        db = await Database.connect(server.start(), max_size=1)
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        await _generate(db, now)
        rows = await db.pool.fetchval("SELECT count(*) FROM endpoint_rollups")
        print(f"generated {rows:,} rollup rows and {ENDPOINTS * 20:,} outages in {time.perf_counter() - t0:.1f} s")
        backend = psutil.Process(await db.pool.fetchval("SELECT pg_backend_pid()"))
        kind = KINDS["availability"]
        until = now.replace(minute=0, second=0, microsecond=0)
        query = report_query.build(kind, until - timedelta(days=DAYS), until, {}, now=now)
        service = ReportService(db)

        async def as_json() -> int:
            return len(json.dumps(await service.document(kind, query)))

        async def as_csv() -> int:
            return sum([len(c) async for c in service.csv(kind, query)])

        async def as_pdf() -> int:
            return len(await service.pdf(kind, query))

        week = report_query.build(kind, until - timedelta(days=7), until, {}, now=now)

        async def week_from_days() -> int:
            return len((await service.document(kind, week))["rows"])

        async def week_from_hours() -> int:
            await db.pool.execute(
                "UPDATE endpoint_rollup_progress SET done_until = '2000-01-01' WHERE step_s IN (86400, 604800)"
            )
            try:
                return len((await service.document(kind, week))["rows"])
            finally:
                today = now.replace(hour=0, minute=0, second=0, microsecond=0)
                await db.pool.execute(
                    "UPDATE endpoint_rollup_progress SET done_until ="
                    " CASE step_s WHEN 86400 THEN $1::timestamptz ELSE $2::timestamptz END"
                    " WHERE step_s IN (86400, 604800)",
                    today,
                    today - timedelta(days=today.weekday()),
                )

        await as_json()  # warm the pages
        print(f"availability report, {ENDPOINTS:,} endpoints x {DAYS} days; median of {REPEAT}; load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
        for label, run in (("json", as_json), ("csv", as_csv), ("pdf", as_pdf)):
            wall, cpu, pg_cpu, size = await _measure(backend, run)
            peak = await _peak(run)
            print(
                f"  {label:4}: {wall:6.3f} s wall, {cpu:6.3f} s CPU here + {pg_cpu:6.3f} s PostgreSQL,"
                f" peak Python memory {peak:6.1f} MiB, {size / 2**20:6.2f} MiB out"
            )
        for label, run in (("7 days from day rows", week_from_days), ("7 days from hour rows", week_from_hours)):
            wall, cpu, pg_cpu, _ = await _measure(backend, run)
            print(f"  anchor {label:22}: {wall:6.3f} s wall, {cpu:6.3f} s CPU here + {pg_cpu:6.3f} s PostgreSQL")
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        await db.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
