"""The asyncpg pool, schema migration and daily partition upkeep."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from importlib import resources

import asyncpg
import structlog

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
# Any constant works; it only has to be the same for every ispmon process sharing a database.
_MIGRATE_LOCK = 0x15B_0001
PARTITION_DAYS_AHEAD = 3


def schema_sql() -> str:
    return resources.files("ispmon").joinpath("schema.sql").read_text(encoding="utf-8")


def _jsonb_encode(value: object) -> bytes:
    # jsonb's binary wire format is a version byte (1) followed by the JSON text.
    return b"\x01" + json.dumps(value, separators=(",", ":")).encode()


def _jsonb_decode(data: bytes) -> object:
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb <-> Python objects, so repositories pass dicts, not strings. Binary, because COPY
    # (copy_records_to_table) only takes binary encoders.
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )


async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, server_settings: dict[str, str] | None = None
) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
        server_settings=server_settings,
    )


async def migrate(conn: asyncpg.Connection) -> int:
    """Apply schema.sql (idempotent) under an advisory lock; make today's partitions. Returns the version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
        await conn.execute(schema_sql())
    await ensure_partitions(conn)
    version: int = await conn.fetchval("SELECT max(version) FROM schema_version")
    return version


async def ensure_partitions(conn: asyncpg.Connection, today: date | None = None) -> int:
    """Daily status and interface metric partitions from yesterday to PARTITION_DAYS_AHEAD days
    ahead (UTC)."""
    today = today or datetime.now(UTC).date()
    created: int = await conn.fetchval(
        "SELECT ispmon_ensure_status_partitions($1::date, $2)",
        today - timedelta(days=1),
        PARTITION_DAYS_AHEAD + 2,
    )
    if created:
        log.info("status_partitions_created", count=created)
    metrics: int = await conn.fetchval(
        "SELECT ispmon_ensure_daily_partitions('interface_metrics', 'at', $1::date, $2)",
        today - timedelta(days=1),
        PARTITION_DAYS_AHEAD + 2,
    )
    if metrics:
        log.info("interface_metric_partitions_created", count=metrics)
    return created + metrics


async def ping(pool: asyncpg.Pool, timeout: float = 2.0) -> bool:
    try:
        async with pool.acquire(timeout=timeout) as conn:
            await conn.fetchval("SELECT 1", timeout=timeout)
        return True
    except (OSError, asyncpg.PostgresError, TimeoutError, asyncpg.InterfaceError):
        return False
