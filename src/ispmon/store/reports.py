"""Reading a report's rows: a server-side cursor in a read-only transaction, so a report of a
year of outages streams in batches instead of sitting in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg

PREFETCH = 1000
WORK_MEM = "64MB"


async def cursor_rows(
    pool: asyncpg.Pool, sql: str, args: list[Any], prefetch: int = PREFETCH
) -> AsyncIterator[asyncpg.Record]:
    async with pool.acquire() as conn, conn.transaction(readonly=True, isolation="repeatable_read"):
        # A report merges hundreds of thousands of histogram bins: sort and hash in memory, not on disk.
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        async for record in conn.cursor(sql, *args, prefetch=prefetch):
            yield record
