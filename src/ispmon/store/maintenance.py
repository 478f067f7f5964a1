"""Maintenance window rows (spec as JSON, validated by ispmon.availability.maintenance on the way in and out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ispmon.store.listing import Key, ListSpec

_COLUMNS = "id, name, spec, source, created_at, updated_at"

# GET /maintenance/, by id. There were never more than a few windows, so a page holds 1000 (the
# route listed them all before it paged).
MAINTENANCE_LIST = ListSpec(
    "maintenance",
    f"SELECT {_COLUMNS} FROM maintenance_windows",
    filters=(),
    keyset=(Key("id", "text"),),
    default_limit=1000,
)


class MaintenanceRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(
        self, window_id: str, name: str, spec: dict[str, Any], source: str = "api"
    ) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"""INSERT INTO maintenance_windows (id, name, spec, source) VALUES ($1, $2, $3, $4)
                ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}""",
            window_id,
            name,
            spec,
            source,
        )

    async def update(self, window_id: str, name: str, spec: dict[str, Any]) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"""UPDATE maintenance_windows SET name = $2, spec = $3, updated_at = now()
                WHERE id = $1 RETURNING {_COLUMNS}""",
            window_id,
            name,
            spec,
        )

    async def get(self, window_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM maintenance_windows WHERE id = $1", window_id
        )

    async def all(self) -> list[asyncpg.Record]:
        return await self.list(limit=None)

    async def list(
        self, *, limit: int | None = 1000, offset: int = 0, after: Sequence[Any] | None = None
    ) -> list[asyncpg.Record]:
        """By id; `after` the last id seen; `limit` None for every window."""
        sql, args = MAINTENANCE_LIST.query({}, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def delete(self, window_id: str) -> bool:
        result: str = await self.pool.execute("DELETE FROM maintenance_windows WHERE id = $1", window_id)
        return result.endswith(" 1")

    async def sync_config(self, windows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        """Make the 'config' rows equal to the file; returns ids removed."""
        ids = [w[0] for w in windows]
        async with self.pool.acquire() as conn, conn.transaction():
            for window_id, name, spec in windows:
                await conn.execute(
                    """INSERT INTO maintenance_windows (id, name, spec, source) VALUES ($1, $2, $3, 'config')
                       ON CONFLICT (id) DO UPDATE SET name = $2, spec = $3, source = 'config', updated_at = now()""",
                    window_id,
                    name,
                    spec,
                )
            removed = await conn.fetch(
                "DELETE FROM maintenance_windows WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id",
                ids,
            )
        return [r["id"] for r in removed]
