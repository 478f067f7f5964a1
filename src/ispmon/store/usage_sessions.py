"""Reading sessions and usage: the session lists (keyset paged) and usage per step and top-N."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ispmon.store.listing import Filter, Key, ListSpec

SESSION_COLUMNS = (
    "id, nas_id, session_key, customer_id, username, host(framed_ip) AS framed_ip, calling_station,"
    " started_at, last_at, closed_at, terminate_cause, in_octets, out_octets, session_time, interim_interval,"
    " records"
)
_SELECT = f"SELECT {SESSION_COLUMNS} FROM radius_sessions"
_KEYSET = (Key("started_at", "date-time"), Key("id", "integer"))

ACTIVE_SESSIONS = ListSpec(
    "active-sessions",
    _SELECT,
    filters=(
        Filter("open", "boolean", "closed_at", op="is null", path=True),
        Filter("nas", "text", "nas_id", description="Only sessions of this NAS", key="nas_id"),
        Filter(
            "customer", "text", "customer_id", description="Only sessions of this customer", key="customer_id"
        ),
    ),
    keyset=_KEYSET,
    descending=True,
)
CUSTOMER_SESSIONS = ListSpec(
    "customer-sessions",
    _SELECT,
    filters=(
        Filter("customer_id", "text", "customer_id", path=True),
        Filter(
            "since",
            "date-time",
            "coalesce(closed_at, last_at)",
            op=">=",
            description="Sessions active at or after this time",
        ),
        Filter(
            "until", "date-time", "started_at", op="<", description="Sessions that started before this time"
        ),
    ),
    keyset=_KEYSET,
    descending=True,
)

STEPS = {"hour": "1 hour", "day": "1 day", "month": "1 month"}


class SessionRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, session_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"{_SELECT} WHERE id = $1", session_id)

    async def list(
        self,
        spec: ListSpec,
        filters: dict[str, Any],
        *,
        limit: int | None,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[asyncpg.Record]:
        sql, args = spec.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def usage(
        self, customer_id: str, since: datetime, until: datetime, step: str, timezone: str
    ) -> list[asyncpg.Record]:
        """Octets per step, from the rollups (their steps start in the customer's time zone).
        A step is included when it starts in [since, until). Months are not stored (schema 16):
        a month is the sum of the daily rows that start in it."""
        if step == "month":
            # Every day of a month that starts before `until`, also those after `until` (as a
            # stored month row held them); months are at most 31 days, the bound keeps the
            # primary key's range scan.
            return await self.pool.fetch(
                """SELECT date_trunc('month', start, $4) AS start, sum(bytes_in) AS bytes_in,
                          sum(bytes_out) AS bytes_out FROM usage_rollups
                   WHERE customer_id = $1 AND step = 'day' AND start >= date_trunc('month', $2::timestamptz, $4)
                     AND start < $3::timestamptz + interval '32 days'
                   GROUP BY 1 HAVING date_trunc('month', min(start), $4) < $3 ORDER BY 1""",
                customer_id,
                since,
                until,
                timezone,
            )
        return await self.pool.fetch(
            """SELECT start, bytes_in, bytes_out FROM usage_rollups
               WHERE customer_id = $1 AND step = $4 AND start >= date_trunc($4, $2::timestamptz, $5)
                 AND start < $3 ORDER BY start""",
            customer_id,
            since,
            until,
            step,
            timezone,
        )

    async def used_since(
        self, customer_id: str, since: datetime, until: datetime | None = None
    ) -> tuple[int, int]:
        """Octets in and out from `since` (a day's start in the customer's zone) to `until`, from
        the daily rollups."""
        row = await self.pool.fetchrow(
            """SELECT coalesce(sum(bytes_in), 0) AS i, coalesce(sum(bytes_out), 0) AS o FROM usage_rollups
               WHERE customer_id = $1 AND step = 'day' AND start >= $2 AND ($3::timestamptz IS NULL OR start < $3)""",
            customer_id,
            since,
            until,
        )
        return int(row["i"]), int(row["o"])

    async def crossed_at(self, customer_id: str, period_start: datetime, threshold: int) -> datetime | None:
        return await self.pool.fetchval(
            """SELECT crossed_at FROM quota_crossings
               WHERE customer_id = $1 AND period_start = $2 AND threshold >= $3 ORDER BY threshold LIMIT 1""",
            customer_id,
            period_start,
            threshold,
        )

    async def top(self, since: datetime, until: datetime, limit: int) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            """SELECT customer_id, sum(delta_in) AS bytes_in, sum(delta_out) AS bytes_out,
                      sum(delta_in + delta_out) AS bytes_total
               FROM acct_records WHERE customer_id IS NOT NULL AND event_at >= $1 AND event_at < $2
               GROUP BY customer_id ORDER BY bytes_total DESC, customer_id LIMIT $3""",
            since,
            until,
            limit,
        )
