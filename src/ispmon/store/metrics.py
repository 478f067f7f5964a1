"""Repository of network_metrics and system_metrics: writes, keyset-paged reads, daily partitions,
and the check rows the latency view reads from status_history."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from ispmon.store.listing import Filter, Key, ListSpec

log = structlog.get_logger(__name__)

NETWORK_COLUMNS = ("recorded_at", "host", "interface", "bandwidth_usage", "packet_loss", "latency")
SYSTEM_COLUMNS = ("recorded_at", "host", "cpu_usage", "memory_usage", "disk_usage", "load_average")
METRIC_TABLES = {"network_metrics": NETWORK_COLUMNS, "system_metrics": SYSTEM_COLUMNS}
PARTITION_DAYS_AHEAD = 3
# Any constant: only the same for every ispmon process sharing a database (two creating the same
# partition at once would fail).
_PARTITION_LOCK = 0x15B_0011

_SINCE = Filter("since", "date-time", "recorded_at", ">=", "Samples at or after this instant (no offset: UTC)")
_UNTIL = Filter("until", "date-time", "recorded_at", "<", "Samples before this instant (no offset: UTC)")
_HOST = Filter("host", "text", "host", description="Only samples of this host or device")
_KEYSET = (Key("recorded_at", "date-time"), Key("id", "integer"))

NETWORK_LIST = ListSpec(
    "network_metrics",
    f"SELECT id, {', '.join(NETWORK_COLUMNS)} FROM network_metrics",
    filters=(Filter("interface", "text", "interface", description="Only this interface"), _HOST, _SINCE, _UNTIL),
    keyset=_KEYSET,
    descending=True,
)
SYSTEM_LIST = ListSpec(
    "system_metrics",
    f"SELECT id, {', '.join(SYSTEM_COLUMNS)} FROM system_metrics",
    filters=(_HOST, _SINCE, _UNTIL),
    keyset=_KEYSET,
    descending=True,
)
LISTS = {"network_metrics": NETWORK_LIST, "system_metrics": SYSTEM_LIST}
_PARTITION_RE = re.compile(r"^(network_metrics|system_metrics)_(\d{8})$")


def partitions_to_drop(names: Sequence[str], today: date, retention_days: int) -> list[str]:
    """Pure: the daily metric partitions whose whole day is older than the retention period."""
    cutoff = today - timedelta(days=retention_days)
    return sorted(
        n for n in names if (m := _PARTITION_RE.match(n)) and datetime.strptime(m[2], "%Y%m%d").date() < cutoff
    )


class MetricsRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._partitions_for: date | None = None

    async def insert(self, table: str, row: Sequence[Any]) -> dict[str, Any]:
        """One sample, written at once (a Python caller's record_* call); returns it with its id."""
        columns = METRIC_TABLES[table]
        await self.ensure_partitions()
        placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        record = await self.pool.fetchrow(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders}) "
            f"RETURNING id, {', '.join(columns)}",
            *row,
        )
        return dict(record)

    async def list(
        self,
        table: str,
        filters: dict[str, Any],
        *,
        limit: int | None,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[asyncpg.Record]:
        sql, args = LISTS[table].query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def ensure_partitions(self, today: date | None = None) -> int:
        """Daily partitions of both tables from yesterday to PARTITION_DAYS_AHEAD days ahead; once a
        day per process (rows of a day without one land in the default partition, never lost)."""
        today = today or datetime.now(UTC).date()
        if self._partitions_for == today:
            return 0
        created = 0
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            for table in METRIC_TABLES:
                created += await conn.fetchval(
                    "SELECT ispmon_ensure_daily_partitions($1, 'recorded_at', $2::date, $3)",
                    table,
                    today - timedelta(days=1),
                    PARTITION_DAYS_AHEAD + 2,
                )
        self._partitions_for = today
        if created:
            log.info("metric_partitions_created", count=created)
        return created

    async def drop_old(self, retention_days: int, today: date | None = None) -> list[str]:
        """Drop whole daily partitions past the retention; delete old rows of the default ones."""
        today = today or datetime.now(UTC).date()
        async with self.pool.acquire() as conn:
            names = [
                r["name"]
                for r in await conn.fetch(
                    """SELECT c.relname AS name FROM pg_inherits i
                       JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                       WHERE p.relname = ANY($1::text[])""",
                    list(METRIC_TABLES),
                )
            ]
            dropped = partitions_to_drop(names, today, retention_days)
            for name in dropped:
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            cutoff = datetime.combine(today - timedelta(days=retention_days), datetime.min.time(), UTC)
            for table in METRIC_TABLES:
                await conn.execute(f"DELETE FROM {table}_default WHERE recorded_at < $1", cutoff)
        if dropped:
            log.info("metric_partitions_dropped", partitions=dropped, retention_days=retention_days)
        return dropped

    async def check_rows(self, endpoint_id: str, since: datetime, until: datetime) -> list[asyncpg.Record]:
        """The checks of one endpoint in [since, until), oldest first: what the latency view reads.
        Only the columns it needs (details holds the per-packet RTTs)."""
        return await self.pool.fetch(
            """SELECT checked_at, response_time_ms, details FROM status_history
               WHERE endpoint_id = $1 AND checked_at >= $2 AND checked_at < $3
               ORDER BY checked_at""",
            endpoint_id,
            since,
            until,
        )
