"""Scheduled reports' sent periods and their files, and their notifications in the outbox.

`record` writes the (schedule, period) row and one notification per channel in one transaction:
a second agent, or a restart after a crash before the commit, either finds the row (and sends
nothing) or writes both. The sender attaches the file from here (`attachment`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg


async def sent(pool: asyncpg.Pool, schedule_id: str, period_start: datetime) -> bool:
    found = await pool.fetchval(
        "SELECT 1 FROM report_runs WHERE schedule_id = $1 AND period_start = $2", schedule_id, period_start
    )
    return found is not None


async def record(
    pool: asyncpg.Pool,
    *,
    schedule_id: str,
    period_start: datetime,
    period_end: datetime,
    kind: str,
    fmt: str,
    file_name: str,
    media_type: str,
    content: bytes,
    channels: Sequence[str],
    title: str,
    body: str,
) -> list[int]:
    """The run and its notifications; the new notification ids, or [] if the period was sent."""
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchval(
            """INSERT INTO report_runs (schedule_id, period_start, period_end, kind, format, file_name,
                                        media_type, content)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING 1""",
            schedule_id, period_start, period_end, kind, fmt, file_name, media_type, content,
        )  # fmt: skip
        if inserted is None:
            return []
        rows = await conn.fetch(
            """INSERT INTO notifications (idempotency_key, event, channel, title, body, short_body,
                                          report_schedule, report_period)
               SELECT $6 || c, 'report', c, $3, $4, $3, $1, $2::timestamptz
               FROM unnest($5::text[]) AS c
               ON CONFLICT (idempotency_key) DO NOTHING RETURNING id""",
            schedule_id, period_start, title, body, list(channels), f"report:{schedule_id}:{period_start.isoformat()}:",
        )  # fmt: skip
    return sorted(r["id"] for r in rows)


async def attachment(pool: asyncpg.Pool, schedule_id: str, period_start: datetime) -> tuple[str, str, bytes] | None:
    """(file name, media type, content) of a sent period's report."""
    row = await pool.fetchrow(
        "SELECT file_name, media_type, content FROM report_runs WHERE schedule_id = $1 AND period_start = $2",
        schedule_id,
        period_start,
    )
    return None if row is None else (row["file_name"], row["media_type"], bytes(row["content"]))


async def drop_old(pool: asyncpg.Pool, days: int, now: datetime) -> int:
    """Forget runs (and their files) older than `days`; a period that old is never due again."""
    status = await pool.execute("DELETE FROM report_runs WHERE created_at < $1", now - timedelta(days=days))
    return int(status.split()[-1])
