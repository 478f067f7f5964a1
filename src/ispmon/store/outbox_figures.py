"""The notification outbox's backlog, for the Prometheus scrape: how many rows wait, and for how long.

One indexed read (the partial index ``notifications_due`` covers exactly the pending rows), with a
short timeout: a scrape must answer even while the database does not.
"""

from __future__ import annotations

import asyncpg

BACKLOG_SQL = """
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_seconds
FROM notifications WHERE state = 'pending'
"""


async def outbox_backlog(pool: asyncpg.Pool, timeout: float = 2.0) -> tuple[int, float] | None:
    """(pending rows, age of the oldest in seconds), or None when the database did not answer."""
    try:
        row = await pool.fetchrow(BACKLOG_SQL, timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    return (int(row["pending"]), float(row["oldest_age_seconds"])) if row is not None else None
