"""A customer's flow-derived usage, in the usage routes' steps: download (flows towards the
customer's prefixes) and upload (from them) per hour, day or month in the customer's time zone,
and over a period, read from flow_aggregates (the collector's 1-minute buckets)."""

from __future__ import annotations

from datetime import datetime

import asyncpg


class FlowUsageRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def per_step(
        self, customer_id: str, since: datetime, until: datetime, step: str, timezone: str
    ) -> list[asyncpg.Record]:
        """(start, download, upload) per step, for the steps that start in [since's step, until),
        each whole (as the RADIUS rollups are: a step that starts before `until` counts all of it)."""
        return await self.pool.fetch(
            """SELECT date_trunc($4, at, $5) AS start,
                      coalesce(sum(bytes) FILTER (WHERE dst_customer = $1), 0)::bigint AS download,
                      coalesce(sum(bytes) FILTER (WHERE src_customer = $1), 0)::bigint AS upload
               FROM flow_aggregates
               WHERE (src_customer = $1 OR dst_customer = $1)
                 AND at >= date_trunc($4, $2::timestamptz, $5)
                 AND at < $3::timestamptz + ('1 ' || $4)::interval
                 AND date_trunc($4, at, $5) < $3
               GROUP BY 1 ORDER BY 1""",
            customer_id, since, until, step, timezone,
        )  # fmt: skip

    async def used(self, customer_id: str, start: datetime, end: datetime) -> tuple[int, int]:
        """(upload, download) between `start` and `end`: the RADIUS figures' (in, out) order,
        so `periods.counted` applies to both."""
        row = await self.pool.fetchrow(
            """SELECT coalesce(sum(bytes) FILTER (WHERE src_customer = $1), 0)::bigint AS up,
                      coalesce(sum(bytes) FILTER (WHERE dst_customer = $1), 0)::bigint AS down
               FROM flow_aggregates
               WHERE (src_customer = $1 OR dst_customer = $1) AND at >= $2 AND at < $3""",
            customer_id, start, end,
        )  # fmt: skip
        return int(row["up"]), int(row["down"])
