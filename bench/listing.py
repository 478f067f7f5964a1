"""List paging benchmark: one page of /outages/ over a million outages, by offset and by `after`.

    python bench/listing.py          # about 1 minute; embedded PostgreSQL in a temporary directory

Figures printed (median ms per page of 100, through `OutageRepo.list` and asyncpg's prepared
statements, as the API runs them):

* the first page, and the page 10,000 / 100,000 / 900,000 rows deep, by `offset` and by `after`;
* the same with an endpoint filter (2,000 outages of one endpoint among the million);
* anchor: the statement the repository ran before `ListSpec` (``$n IS NULL OR col = $n`` for
  every filter), with the same endpoint filter, whose prepared plan must suit every combination.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.outages import OUTAGE_COLUMNS

ROWS = 1_000_000
ENDPOINTS = 500
REPEAT = 15
# The repository's statement before ListSpec, kept here as the anchor.
CHAINED = f"""SELECT {OUTAGE_COLUMNS} FROM outages
    WHERE ($1::text IS NULL OR endpoint_id = $1) AND ($2::text IS NULL OR severity = $2)
      AND ($3::boolean IS NULL OR (resolved_at IS NULL) = $3)
      AND ($4::timestamptz IS NULL OR coalesce(resolved_at, 'infinity') >= $4)
      AND ($5::timestamptz IS NULL OR started_at < $5)
    ORDER BY started_at DESC, id DESC LIMIT $6 OFFSET $7"""


async def median_ms(fetch: Callable[[], Awaitable[Any]]) -> float:
    await fetch()  # warm: the first run reads the pages from disk, which is not what is measured
    times = []
    for _ in range(REPEAT):  # more than 5 runs: PostgreSQL may switch a prepared statement to a generic plan
        start = time.perf_counter()
        await fetch()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-listing-"))
    server = EmbeddedPostgres(base)
    try:
        db = await Database.connect(server.start(), max_size=2)
        await db.pool.execute(
            f"""INSERT INTO outages (endpoint_id, started_at, declared_at, resolved_at, status, severity)
                SELECT 'ep-' || (g % {ENDPOINTS}), now() - g * interval '1 second', now(), now(), 'down', 'minor'
                FROM generate_series(1, {ROWS}) g"""
        )
        await db.pool.execute("VACUUM ANALYZE outages")
        repo = db.outages
        print(f"{ROWS:,} outages, {ENDPOINTS} endpoints; median of {REPEAT} pages of 100")
        for label, filters, depths in (
            ("all outages", {}, (0, 10_000, 100_000, 900_000)),
            ("one endpoint", {"endpoint_id": "ep-7"}, (0, 1_000, 1_900)),
        ):
            for depth in depths:
                # The row just before the page, as a client paging by `after` would have it.
                before = await repo.list(limit=1, offset=depth - 1, **filters) if depth else []
                after = (before[0]["started_at"], before[0]["id"]) if before else None
                by_offset = await median_ms(lambda f=filters, d=depth: repo.list(limit=100, offset=d, **f))
                by_after = await median_ms(lambda f=filters, a=after: repo.list(limit=100, after=a, **f))
                print(
                    f"  {label:12} depth {depth:>7,}: offset {by_offset:8.2f} ms   after {by_after:6.2f} ms"
                )
        endpoint = "ep-7"
        anchor = await median_ms(lambda: db.pool.fetch(CHAINED, endpoint, None, None, None, None, 100, 0))
        new = await median_ms(lambda: repo.list(limit=100, endpoint_id=endpoint))
        print(
            f"  anchor, one endpoint, first page: chained IS NULL OR {anchor:6.2f} ms   ListSpec {new:6.2f} ms"
        )
        await db.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
