"""Repository of flow exporters and flow_aggregates: batch writes that a retry cannot double,
daily partitions, and the top/series/customer-traffic reads of the API."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from ispmon.flows.aggregate import Bucket

PARTITION_DAYS_AHEAD = 3
_PARTITION_LOCK = 0x15B_0013
COLUMNS = (
    "at", "exporter_id", "in_if", "out_if", "src_prefix", "dst_prefix",
    "src_customer", "dst_customer", "proto", "port", "bytes", "packets", "flows",
)  # fmt: skip
# by= of GET /flows/top: the column grouped on.
TOP_BY = {
    "src": "src_prefix",
    "dst": "dst_prefix",
    "protocol": "proto",
    "port": "port",
    "interface": "exporter_id || ':' || in_if || '>' || out_if",
}


def rows_of(buckets: Sequence[Bucket]) -> list[tuple[Any, ...]]:
    rows = []
    for b in buckets:
        at = datetime.fromtimestamp(b.minute, UTC)
        for key, (nbytes, packets, flows) in b.counts.items():
            rows.append((at, *key, nbytes, packets, flows))
    return rows


class FlowStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._partitions_for: date | None = None

    async def write(self, batch_id: uuid.UUID, buckets: Sequence[Bucket]) -> bool:
        """Write one batch; False (and nothing written) if this batch id was written before."""
        rows = rows_of(buckets)
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "INSERT INTO flow_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true", batch_id
            )
            if not done:
                return False
            await conn.copy_records_to_table("flow_aggregates", records=rows, columns=COLUMNS)
        return True

    async def ensure_partitions(self, today: date | None = None) -> int:
        today = today or datetime.now(UTC).date()
        if self._partitions_for == today:
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            created = await conn.fetchval(
                "SELECT ispmon_ensure_daily_partitions('flow_aggregates', 'at', $1::date, $2)",
                today - timedelta(days=1),
                PARTITION_DAYS_AHEAD + 2,
            )
        self._partitions_for = today
        return int(created or 0)

    # -- exporters --------------------------------------------------------------------------

    async def exporters(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT id, host(address) AS address, name, sampling, device_id, source FROM flow_exporters ORDER BY id"
        )
        return [dict(r) for r in rows]

    async def put_exporter(self, row: dict[str, Any], source: str = "api") -> None:
        await self.pool.execute(
            """INSERT INTO flow_exporters (id, address, name, sampling, device_id, source)
               VALUES ($1, $2::inet, $3, $4, $5, $6)
               ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, name = EXCLUDED.name,
                 sampling = EXCLUDED.sampling, device_id = EXCLUDED.device_id, source = EXCLUDED.source""",
            row["id"], row["address"], row.get("name") or "", row.get("sampling"), row.get("device_id"), source,
        )  # fmt: skip

    async def address_taken(self, address: str, exporter_id: str) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT true FROM flow_exporters WHERE address = $1::inet AND id <> $2", address, exporter_id
            )
        )

    async def delete_exporter(self, exporter_id: str) -> bool:
        return await self.pool.execute("DELETE FROM flow_exporters WHERE id = $1", exporter_id) != "DELETE 0"

    async def sync_config(self, rows: Sequence[dict[str, Any]]) -> int:
        """The file's exporters replace the 'config' rows; returns how many were removed."""
        async with self.pool.acquire() as conn, conn.transaction():
            ids = [r["id"] for r in rows]
            removed = await conn.execute(
                "DELETE FROM flow_exporters WHERE source = 'config' AND NOT (id = ANY($1::text[]))", ids
            )
            for r in rows:
                await conn.execute(
                    """INSERT INTO flow_exporters (id, address, name, sampling, device_id, source)
                       VALUES ($1, $2::inet, $3, $4, $5, 'config')
                       ON CONFLICT (id) DO UPDATE SET address = EXCLUDED.address, name = EXCLUDED.name,
                         sampling = EXCLUDED.sampling, device_id = EXCLUDED.device_id, source = 'config'""",
                    r["id"], r["address"], r.get("name") or "", r.get("sampling"), r.get("device_id"),
                )  # fmt: skip
        return int(removed.split()[-1])

    async def customer_prefixes(self) -> list[tuple[str, str]]:
        rows = await self.pool.fetch("SELECT prefix::text AS prefix, customer_id FROM customer_prefixes")
        return [(r["prefix"], r["customer_id"]) for r in rows]

    # -- reads ------------------------------------------------------------------------------

    async def top(self, since: datetime, until: datetime, by: str, limit: int) -> list[dict[str, Any]]:
        if by == "customer":
            sql = """SELECT customer AS key, sum(bytes)::bigint AS bytes, sum(packets)::bigint AS packets,
                            sum(flows)::bigint AS flows FROM (
                       SELECT src_customer AS customer, bytes, packets, flows FROM flow_aggregates
                        WHERE at >= $1 AND at < $2 AND src_customer IS NOT NULL
                       UNION ALL
                       SELECT dst_customer, bytes, packets, flows FROM flow_aggregates
                        WHERE at >= $1 AND at < $2 AND dst_customer IS NOT NULL) t
                     GROUP BY customer ORDER BY bytes DESC, key LIMIT $3"""
        else:
            col = TOP_BY[by]
            sql = f"""SELECT ({col})::text AS key, sum(bytes)::bigint AS bytes, sum(packets)::bigint AS packets,
                             sum(flows)::bigint AS flows
                      FROM flow_aggregates WHERE at >= $1 AND at < $2
                      GROUP BY 1 ORDER BY bytes DESC, key LIMIT $3"""
        return [dict(r) for r in await self.pool.fetch(sql, since, until, limit)]

    async def series(
        self, since: datetime, until: datetime, step: int, filters: dict[str, Any]
    ) -> list[dict[str, Any]]:
        where, args = ["at >= $1", "at < $2"], [since, until, step]
        for column, value in filters.items():
            args.append(value)
            if column == "customer":
                where.append(f"(src_customer = ${len(args)} OR dst_customer = ${len(args)})")
            else:
                where.append(f"{column} = ${len(args)}")
        sql = f"""SELECT to_timestamp(floor(extract(epoch FROM at) / $3) * $3) AS at,
                         sum(bytes)::bigint AS bytes, sum(packets)::bigint AS packets
                  FROM flow_aggregates WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1"""
        return [dict(r) for r in await self.pool.fetch(sql, *args)]

    async def customer_traffic(self, customer_id: str, since: datetime, until: datetime) -> dict[str, Any]:
        row = await self.pool.fetchrow(
            """SELECT coalesce(sum(bytes) FILTER (WHERE dst_customer = $1), 0)::bigint AS download_bytes,
                      coalesce(sum(bytes) FILTER (WHERE src_customer = $1), 0)::bigint AS upload_bytes,
                      coalesce(sum(packets) FILTER (WHERE dst_customer = $1), 0)::bigint AS download_packets,
                      coalesce(sum(packets) FILTER (WHERE src_customer = $1), 0)::bigint AS upload_packets
               FROM flow_aggregates WHERE at >= $2 AND at < $3 AND (src_customer = $1 OR dst_customer = $1)""",
            customer_id, since, until,
        )  # fmt: skip
        protocols = await self.pool.fetch(
            """SELECT proto, sum(bytes)::bigint AS bytes FROM flow_aggregates
               WHERE at >= $2 AND at < $3 AND (src_customer = $1 OR dst_customer = $1)
               GROUP BY proto ORDER BY bytes DESC LIMIT 10""",
            customer_id, since, until,
        )  # fmt: skip
        peers = await self.pool.fetch(
            """SELECT CASE WHEN dst_customer = $1 THEN src_prefix ELSE dst_prefix END AS peer,
                      sum(bytes)::bigint AS bytes FROM flow_aggregates
               WHERE at >= $2 AND at < $3 AND (src_customer = $1 OR dst_customer = $1)
               GROUP BY 1 ORDER BY bytes DESC LIMIT 10""",
            customer_id, since, until,
        )  # fmt: skip
        return {
            **dict(row),
            "source": "flow",
            "protocols": [dict(r) for r in protocols],
            "peers": [dict(r) for r in peers],
        }
