"""Status history: check results (written by the batched writer) and the queries over them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ispmon.models import ProbeResult

HISTORY_COLUMNS = (
    "endpoint_id",
    "checked_at",
    "status",
    "response_time_ms",
    "error_kind",
    "error",
    "attempts",
    "details",
)


def history_row(endpoint_id: str, checked_at: datetime, result: ProbeResult) -> tuple[Any, ...]:
    """The COPY record for one check (pure; tested without a database)."""
    return (
        endpoint_id,
        checked_at,
        result.status.value,
        result.response_time_ms,
        result.error_kind.value if result.error_kind is not None else None,
        result.error[:2000] if result.error else None,
        min(result.attempts, 32767),
        result.details or None,
    )


class HistoryRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def history(
        self,
        endpoint_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        before_id: tuple[datetime, int] | None = None,
    ) -> list[asyncpg.Record]:
        """Newest first. Paging is by cursor (checked_at, id) of the last row seen: stable under inserts."""
        cursor_at, cursor_id = before_id if before_id else (None, None)
        return await self.pool.fetch(
            """SELECT id, checked_at, status, response_time_ms, error_kind, error, attempts, details
               FROM status_history
               WHERE endpoint_id = $1 AND ($2::timestamptz IS NULL OR checked_at >= $2)
                 AND ($3::timestamptz IS NULL OR checked_at < $3)
                 AND ($4::timestamptz IS NULL OR (checked_at, id) < ($4, $5::bigint))
               ORDER BY checked_at DESC, id DESC LIMIT $6""",
            endpoint_id,
            since,
            until,
            cursor_at,
            cursor_id,
            limit,
        )

    async def stats(self, endpoint_id: str, since: datetime, until: datetime | None = None) -> asyncpg.Record:
        return await self.pool.fetchrow(
            """SELECT count(*) AS checks,
                      count(*) FILTER (WHERE status = 'up') AS up,
                      count(*) FILTER (WHERE status = 'degraded') AS degraded,
                      count(*) FILTER (WHERE status = 'down') AS down,
                      count(*) FILTER (WHERE status = 'maintenance') AS maintenance,
                      avg(response_time_ms) AS avg_ms,
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS p95_ms
               FROM status_history
               WHERE endpoint_id = $1 AND checked_at >= $2 AND ($3::timestamptz IS NULL OR checked_at < $3)""",
            endpoint_id,
            since,
            until,
        )

    async def latest(self, endpoint_ids: list[str]) -> dict[str, asyncpg.Record]:
        """The newest row of each endpoint (for restoring state after a restart)."""
        rows = await self.pool.fetch(
            """SELECT e.id AS endpoint_id, h.checked_at, h.status, h.response_time_ms, h.error_kind, h.error
               FROM unnest($1::text[]) AS e(id)
               CROSS JOIN LATERAL (
                   SELECT checked_at, status, response_time_ms, error_kind, error FROM status_history
                   WHERE endpoint_id = e.id ORDER BY checked_at DESC LIMIT 1) h""",
            endpoint_ids,
        )
        return {r["endpoint_id"]: r for r in rows}
