"""Device rows (SNMP devices from the API or the config file) and what the poller learnt of them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ispmon.network.devices import DeviceSpec
from ispmon.store.listing import Filter, Key, ListSpec

_COLUMNS = (
    "id, name, address, tags, is_active, spec, source, sys_name, sys_descr, sys_object_id, sys_uptime,"
    " reachable, last_error, last_poll_at, last_discovery_at, unreachable_since, created_at, updated_at"
)

# GET /devices/ and DeviceRepo.list, by id.
DEVICE_LIST = ListSpec(
    "devices",
    f"SELECT {_COLUMNS} FROM devices",
    filters=(
        Filter("tag", "text", "tags", "any", "Only devices carrying this tag"),
        Filter("active", "boolean", "is_active", description="Only active (true) or inactive (false) devices"),
        Filter("reachable", "boolean", "reachable", description="Only devices that answered (true) or not"),
    ),
    keyset=(Key("id", "text"),),
)

_INSERT = """INSERT INTO devices (id, name, address, tags, is_active, spec, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"""
_ON_CONFLICT_UPDATE = """ON CONFLICT (id) DO UPDATE SET name = $2, address = $3, tags = $4, is_active = $5,
                             spec = $6, source = $7, updated_at = now()"""


def _values(spec: DeviceSpec, source: str) -> tuple[Any, ...]:
    return (spec.id, spec.name, spec.address, spec.tags, spec.is_active, spec.stored_dict(), source)


class DeviceRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(self, spec: DeviceSpec, source: str = "api") -> asyncpg.Record | None:
        """Insert; None when the id exists already."""
        return await self.pool.fetchrow(
            f"{_INSERT} ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}", *_values(spec, source)
        )

    async def upsert(self, spec: DeviceSpec, source: str = "api") -> asyncpg.Record:
        row: asyncpg.Record = await self.pool.fetchrow(
            f"{_INSERT} {_ON_CONFLICT_UPDATE} RETURNING {_COLUMNS}", *_values(spec, source)
        )
        return row

    async def get(self, device_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE id = $1", device_id)

    async def list(
        self, *, limit: int = 1000, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[asyncpg.Record]:
        sql, args = DEVICE_LIST.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def all(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"SELECT {_COLUMNS} FROM devices ORDER BY id")

    async def delete(self, device_id: str) -> bool:
        result: str = await self.pool.execute("DELETE FROM devices WHERE id = $1", device_id)
        return result.endswith(" 1")

    async def sync_config(self, specs: list[DeviceSpec]) -> dict[str, Any]:
        """Make the 'config' rows equal to the config file's [[devices]]; an API device with the same
        id is taken over by the file (listed in "taken_over")."""
        ids = [s.id for s in specs]
        async with self.pool.acquire() as conn, conn.transaction():
            existing = {
                r["id"]: r["source"]
                for r in await conn.fetch("SELECT id, source FROM devices WHERE id = ANY($1::text[]) FOR UPDATE", ids)
            }
            for spec in specs:
                await conn.execute(
                    f"""{_INSERT} {_ON_CONFLICT_UPDATE}
                        WHERE devices.spec IS DISTINCT FROM $6 OR devices.source <> $7""",
                    *_values(spec, "config"),
                )
            removed = await conn.fetch(
                "DELETE FROM devices WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id", ids
            )
        return {
            "synced": len(ids),
            "removed": [r["id"] for r in removed],
            "taken_over": [i for i in ids if i in existing and existing[i] != "config"],
        }

    async def record_poll(
        self,
        device_id: str,
        at: datetime,
        *,
        reachable: bool,
        error: str | None = None,
        system: dict[str, Any] | None = None,
        discovered: bool = False,
        unreachable_since: datetime | None = None,
    ) -> None:
        """What a poll learnt of the device: reachable or not (and why), sysName/sysDescr/sysUpTime."""
        system = system or {}
        await self.pool.execute(
            """UPDATE devices SET reachable = $2, last_error = $3, last_poll_at = $4,
                      sys_name = coalesce($5, sys_name), sys_descr = coalesce($6, sys_descr),
                      sys_object_id = coalesce($7, sys_object_id), sys_uptime = coalesce($8, sys_uptime),
                      last_discovery_at = CASE WHEN $9 THEN $4 ELSE last_discovery_at END,
                      unreachable_since = $10
               WHERE id = $1""",
            device_id,
            reachable,
            error,
            at,
            system.get("sys_name"),
            system.get("sys_descr"),
            system.get("sys_object_id"),
            system.get("sys_uptime"),
            discovered,
            unreachable_since,
        )
