"""Retention: drop whole daily partitions older than their retention (status history:
CLEANUP_RETENTION_DAYS; interface metrics: INTERFACE_METRICS_RETENTION_DAYS; flow aggregates:
FLOW_RETENTION_DAYS).

Dropping a partition is instant and leaves no bloat, unlike DELETE of millions of rows.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_PARTITION_RE = re.compile(r"^status_history_(\d{8})$")


def partitions_to_drop(
    names: list[str], today: date, retention_days: int, table: str = "status_history"
) -> list[str]:
    """Pure: the daily partitions of `table` whose whole day is older than the retention period."""
    cutoff = today - timedelta(days=retention_days)
    pattern = _PARTITION_RE if table == "status_history" else re.compile(rf"^{re.escape(table)}_(\d{{8}})$")
    out = []
    for name in names:
        match = pattern.match(name)
        if match and datetime.strptime(match[1], "%Y%m%d").date() < cutoff:
            out.append(name)
    return sorted(out)


async def _partitions(conn: asyncpg.Connection, table: str) -> list[str]:
    return [
        r["name"]
        for r in await conn.fetch(
            """SELECT c.relname AS name FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
               WHERE p.relname = $1""",
            table,
        )
    ]


async def drop_old_interface_metrics(
    conn: asyncpg.Connection, retention_days: int, today: date | None = None
) -> list[str]:
    """Drop interface_metrics partitions (and default-partition rows) older than `retention_days`."""
    today = today or datetime.now(UTC).date()
    names = await _partitions(conn, "interface_metrics")
    dropped = partitions_to_drop(names, today, retention_days, "interface_metrics")
    for name in dropped:
        await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    await conn.execute(
        "DELETE FROM interface_metrics_default WHERE at < $1",
        datetime.combine(today - timedelta(days=retention_days), datetime.min.time(), UTC),
    )
    if dropped:
        log.info("interface_metric_partitions_dropped", partitions=dropped, retention_days=retention_days)
    return dropped


async def drop_old_partitions(
    conn: asyncpg.Connection, retention_days: int, today: date | None = None
) -> list[str]:
    today = today or datetime.now(UTC).date()
    names = await _partitions(conn, "status_history")
    dropped = partitions_to_drop(names, today, retention_days)
    for name in dropped:
        await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    # Rows that fell into the default partition age out the same way.
    await conn.execute(
        "DELETE FROM status_history_default WHERE checked_at < $1",
        datetime.combine(today - timedelta(days=retention_days), datetime.min.time(), UTC),
    )
    await conn.execute(
        "DELETE FROM endpoint_events WHERE at < $1",
        datetime.combine(today - timedelta(days=retention_days), datetime.min.time(), UTC),
    )
    if dropped:
        log.info("status_partitions_dropped", partitions=dropped, retention_days=retention_days)
    return dropped


async def drop_old_flow_aggregates(
    conn: asyncpg.Connection, retention_days: int, today: date | None = None
) -> list[str]:
    """Drop flow_aggregates partitions whose day is older than `retention_days` (and delete such
    rows of the default partition); forget flushed batch ids older than a day (a retry of a batch
    comes within seconds of its first try, from the same process)."""
    today = today or datetime.now(UTC).date()
    names = await _partitions(conn, "flow_aggregates")
    dropped = partitions_to_drop(names, today, retention_days, "flow_aggregates")
    for name in dropped:
        await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    await conn.execute(
        "DELETE FROM flow_aggregates_default WHERE at < $1",
        datetime.combine(today - timedelta(days=retention_days), datetime.min.time(), UTC),
    )
    await conn.execute("DELETE FROM flow_batches WHERE written_at < now() - interval '1 day'")
    if dropped:
        log.info("flow_partitions_dropped", partitions=dropped, retention_days=retention_days)
    return dropped
