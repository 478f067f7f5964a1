"""Latency view benchmark: GET /network/latency's work over a day of 20-packet ICMP checks.

    python bench/latency.py          # about a minute; embedded PostgreSQL in a temporary directory

One endpoint checked every 10 s for 24 h (8,640 rows, 172,800 RTTs) among 50 endpoints' rows.
Figures printed (median ms of REPEAT runs):

* `MetricsService.latency` over the day in 288 steps (5 min, Smokeping's default) and in 2,000
  steps (the most allowed): rows fetched, then per-step maths in Python (network/latency.py);
* its parts: the fetch alone, and the Python maths alone on rows already fetched;
* anchor: the same view computed in PostgreSQL (percentile_cont over the unnested RTTs, grouped
  by step), the other way the brief allowed.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ispmon.network.latency import latency_steps, sample_from_row, step_count
from ispmon.services.metrics import MetricsService
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.metrics import MetricsRepo

ENDPOINTS = 50
INTERVAL = 10
PACKETS = 20
REPEAT = 7
UNTIL = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
SINCE = UNTIL - timedelta(days=1)

SQL_VIEW = """
WITH packets AS (
    SELECT floor(extract(epoch FROM checked_at - $2) / $4)::int AS step,
           (details->>'packets_sent')::int AS sent, details->'rtts_ms' AS rtts
    FROM status_history WHERE endpoint_id = $1 AND checked_at >= $2 AND checked_at < $3
), sent AS (SELECT step, count(*) AS checks, sum(sent) AS sent FROM packets GROUP BY step),
rtts AS (
    SELECT step, count(*) AS received,
           percentile_cont(ARRAY[0.1, 0.25, 0.5, 0.75, 0.9]) WITHIN GROUP (ORDER BY r::float8) AS p
    FROM packets, jsonb_array_elements_text(rtts) AS r GROUP BY step
)
SELECT s.step, s.checks, s.sent, r.received, r.p FROM sent s LEFT JOIN rtts r USING (step) ORDER BY s.step
"""


async def seed(db: Database) -> None:
    rng = random.Random(7)
    rows = []
    for e in range(ENDPOINTS):
        at = SINCE
        while at < UNTIL:
            rtts = [round(rng.gauss(20, 3), 2) for _ in range(PACKETS) if rng.random() > 0.02]
            details = {"packets_sent": PACKETS, "packets_received": len(rtts), "rtts_ms": rtts}
            rows.append((f"ep-{e}", at, "up", sum(rtts) / len(rtts), None, None, 1, details))
            at += timedelta(seconds=INTERVAL)
    async with db.pool.acquire() as conn:
        await conn.execute("SELECT ispmon_ensure_status_partitions($1::date, 3)", SINCE.date() - timedelta(days=1))
        columns = ("endpoint_id", "checked_at", "status", "response_time_ms", "error_kind", "error", "attempts")
        await conn.copy_records_to_table("status_history", records=rows, columns=(*columns, "details"))
        await conn.execute("ANALYZE status_history")


async def median_ms(fn: Callable[[], Awaitable[Any]]) -> float:
    await fn()  # warm: prepared statements, caches
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-latency-"))
    server = EmbeddedPostgres(base)
    try:
        db = await Database.connect(server.start(), max_size=2)
        try:
            await seed(db)
            await db.pool.execute(
                "INSERT INTO endpoints (id, name, protocol, url, spec) "
                "VALUES ('ep-0', 'ep-0', 'icmp', '192.0.2.1', '{}')"
            )
            svc, repo = MetricsService(db), MetricsRepo(db.pool)
            rows = await repo.check_rows("ep-0", SINCE, UNTIL)
            print(f"rows for the endpoint: {len(rows)}, RTTs: {sum(len(r['details']['rtts_ms']) for r in rows)}")
            for step in (300.0, 86400 / 2000):
                n = step_count(SINCE, UNTIL, step)
                full = await median_ms(lambda step=step: svc.latency("ep-0", since=SINCE, until=UNTIL, step=step))

                async def maths(step: float = step) -> None:
                    latency_steps((sample_from_row(r) for r in rows), SINCE, UNTIL, step)

                python = await median_ms(maths)
                sql = await median_ms(
                    lambda step=step: db.pool.fetch(SQL_VIEW, "ep-0", SINCE, UNTIL, step)
                )
                print(f"{n:5d} steps: service {full:7.1f} ms | maths alone {python:6.1f} ms | anchor SQL {sql:7.1f} ms")
            fetch = await median_ms(lambda: repo.check_rows("ep-0", SINCE, UNTIL))
            print(f"fetch alone: {fetch:.1f} ms")
        finally:
            await db.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
