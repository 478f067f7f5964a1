"""Status history: check results (written by the batched writer) and the queries over them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ispmon.models import ProbeResult
from ispmon.store.listing import Filter, Key, ListSpec

HISTORY_COLUMNS = (
    "endpoint_id",
    "checked_at",
    "status",
    "response_time_ms",
    "error_kind",
    "error",
    "attempts",
    "details",
    "agent_id",
    "location",
)


def history_row(
    endpoint_id: str,
    checked_at: datetime,
    result: ProbeResult,
    agent_id: str | None = None,
    location: str | None = None,
) -> tuple[Any, ...]:
    """The COPY record for one check (pure; tested without a database); `agent_id` and `location`
    name the agent that ran it."""
    return (
        endpoint_id,
        checked_at,
        result.status.value,
        result.response_time_ms,
        result.error_kind.value if result.error_kind is not None else None,
        result.error[:2000] if result.error else None,
        min(result.attempts, 32767),
        result.details or None,
        agent_id,
        location,
    )


# An endpoint's check results, newest first (GET /services/{id}/history, whose `cursor` is the
# (checked_at, id) of the last row seen).
HISTORY_LIST = ListSpec(
    "history",
    """SELECT id, checked_at, status, response_time_ms, error_kind, error, attempts, details
       FROM status_history""",
    filters=(
        Filter("endpoint_id", "text", "endpoint_id", path=True),
        Filter("since", "date-time", "checked_at", ">=", "Checks at or after this instant (no offset: UTC)"),
        Filter("until", "date-time", "checked_at", "<", "Checks before this instant (no offset: UTC)"),
    ),
    keyset=(Key("checked_at", "date-time"), Key("id", "integer")),
    descending=True,
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
        sql, args = HISTORY_LIST.query(
            {"endpoint_id": endpoint_id, "since": since, "until": until}, limit=limit, after=before_id
        )
        return await self.pool.fetch(sql, *args)

    async def stats(self, endpoint_id: str, since: datetime, until: datetime | None = None) -> asyncpg.Record:
        return await self.pool.fetchrow(
            """SELECT count(*) AS checks,
                      count(*) FILTER (WHERE status = 'up') AS up,
                      count(*) FILTER (WHERE status = 'degraded') AS degraded,
                      count(*) FILTER (WHERE status = 'down') AS down,
                      count(*) FILTER (WHERE status = 'maintenance') AS maintenance,
                      count(*) FILTER (WHERE status = 'unknown') AS unknown,
                      avg(response_time_ms) AS avg_ms,
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY response_time_ms) AS p95_ms
               FROM status_history
               WHERE endpoint_id = $1 AND checked_at >= $2 AND ($3::timestamptz IS NULL OR checked_at < $3)""",
            endpoint_id,
            since,
            until,
        )

    async def latest(self, endpoint_ids: list[str], location: str | None = None) -> dict[str, asyncpg.Record]:
        """The newest row of each endpoint (for restoring state after a restart, or when an agent
        takes an endpoint over), from `location` when given (rows from before agents had none)."""
        rows = await self.pool.fetch(
            """SELECT e.id AS endpoint_id, h.checked_at, h.status, h.response_time_ms, h.error_kind, h.error,
                      h.agent_id
               FROM unnest($1::text[]) AS e(id)
               CROSS JOIN LATERAL (
                   SELECT checked_at, status, response_time_ms, error_kind, error, agent_id FROM status_history
                   WHERE endpoint_id = e.id AND ($2::text IS NULL OR location IS NULL OR location = $2)
                   ORDER BY checked_at DESC LIMIT 1) h""",
            endpoint_ids,
            location,
        )
        return {r["endpoint_id"]: r for r in rows}
