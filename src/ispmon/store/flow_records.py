"""Repository of raw flow records (`flow_records`, kept only when FLOW_RAW_HOURS > 0): batch
writes that a retry cannot double, hourly partitions made ahead and dropped whole once expired,
and the keyset-paged list of GET /flows/records."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from ispmon.flows.decode import FlowRecord
from ispmon.store.listing import Filter, Key, ListSpec

log = structlog.get_logger("ispmon.flows")

HOURS_AHEAD = 2  # a flow may be dated up to 5 minutes ahead; the next hours exist before it comes
_PARTITION_LOCK = 0x15B_0014
_PARTITION_RE = re.compile(r"^flow_records_(\d{10})$")
COLUMNS = (
    "at", "exporter_id", "in_if", "out_if", "src_addr", "dst_addr",
    "proto", "src_port", "dst_port", "bytes", "packets",
)  # fmt: skip
FIELDS = ("id", *COLUMNS)
RECORD_LIST = ListSpec(
    "flow-records",
    "SELECT id, at, exporter_id, in_if, out_if, host(src_addr) AS src_addr, host(dst_addr) AS dst_addr, "
    "proto, src_port, dst_port, bytes, packets FROM flow_records",
    filters=(
        Filter("since", "date-time", "at", ">=", "Flows that ended at or after this instant"),
        Filter("until", "date-time", "at", "<", "Flows that ended before this instant"),
        Filter("src", "inet", "src_addr", "<<=", "Source address, or a prefix it is in (10.1.2.0/24)"),
        Filter("dst", "inet", "dst_addr", "<<=", "Destination address, or a prefix it is in"),
        Filter("protocol", "integer", "proto", description="IP protocol number (6 TCP, 17 UDP)", minimum=0),
        Filter(
            "port", "integer", "ARRAY[src_port, dst_port]", "any", "Source or destination port", minimum=0
        ),
        Filter("src_port", "integer", "src_port", description="Source port", minimum=0),
        Filter("dst_port", "integer", "dst_port", description="Destination port", minimum=0),
        Filter("exporter", "text", "exporter_id", description="Exporter id", key="exporter_id"),
    ),
    keyset=(Key("at", "date-time"), Key("id", "integer")),
    descending=True,
)


def rows_of(records: Sequence[FlowRecord]) -> list[tuple[Any, ...]]:
    at = datetime.fromtimestamp
    return [
        (at(r.end, UTC), r.exporter_id, r.in_if, r.out_if, r.src, r.dst, r.proto, r.src_port, r.dst_port,
         r.bytes, r.packets)
        for r in records
    ]  # fmt: skip


def partitions_to_drop(names: Sequence[str], now: datetime, hours: int) -> list[str]:
    """Pure: the hourly partitions whose whole hour ended more than `hours` hours before `now`."""
    cutoff = now - timedelta(hours=hours)
    out = []
    for name in names:
        match = _PARTITION_RE.match(name)
        if (
            match
            and datetime.strptime(match[1], "%Y%m%d%H").replace(tzinfo=UTC) + timedelta(hours=1) <= cutoff
        ):
            out.append(name)
    return sorted(out)


class FlowRecordStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._partitions_for: datetime | None = None

    async def write(self, batch_id: uuid.UUID, records: Sequence[FlowRecord]) -> bool:
        """Write one batch; False (and nothing written) if this batch id was written before."""
        rows = rows_of(records)
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "INSERT INTO flow_batches (batch_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING true",
                batch_id,
            )
            if not done:
                return False
            await conn.copy_records_to_table("flow_records", records=rows, columns=COLUMNS)
        return True

    async def upkeep(self, hours: int, now: datetime | None = None) -> list[str]:
        """Once an hour: partitions for the kept hours and the next ones; expired ones dropped."""
        now = now or datetime.now(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        if self._partitions_for == hour:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PARTITION_LOCK)
            await conn.fetchval(
                "SELECT ispmon_ensure_hourly_partitions('flow_records', 'at', $1, $2)",
                hour - timedelta(hours=hours),
                hours + 1 + HOURS_AHEAD,
            )
        dropped = await self.drop_old(hours, now)
        self._partitions_for = hour
        return dropped

    async def drop_old(self, hours: int, now: datetime | None = None) -> list[str]:
        """Drop the partitions past `hours` (0: every hour that has ended) and such default rows."""
        now = now or datetime.now(UTC)
        async with self.pool.acquire() as conn:
            names = [
                r["name"]
                for r in await conn.fetch(
                    """SELECT c.relname AS name FROM pg_inherits i
                       JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
                       WHERE p.relname = 'flow_records'"""
                )
            ]
            dropped = partitions_to_drop(names, now, hours)
            for name in dropped:
                await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            await conn.execute("DELETE FROM flow_records_default WHERE at < $1", now - timedelta(hours=hours))
        if dropped:
            log.info("flow_record_partitions_dropped", partitions=dropped, keep_hours=hours)
        return dropped

    async def list(
        self, *, limit: int, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[dict[str, Any]]:
        sql, args = RECORD_LIST.query(filters, limit=limit, offset=offset, after=after)
        return [dict(r) for r in await self.pool.fetch(sql, *args)]
