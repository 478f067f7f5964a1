"""NAS client rows. The secret is read only by `all` (for the listener's directory) and never
returned with the listed fields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ispmon.store.listing import Key, ListSpec

_PUBLIC = "id, name, address::text AS address, coa_port, source, created_at, updated_at"

NAS_LIST = ListSpec("nas", f"SELECT {_PUBLIC} FROM nas_clients", filters=(), keyset=(Key("id", "text"),))


class NasRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert(
        self, nas_id: str, name: str, address: str, secret: str, coa_port: int, source: str = "api"
    ) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"""INSERT INTO nas_clients (id, name, address, secret, coa_port, source)
                VALUES ($1, $2, $3::cidr, $4, $5, $6) ON CONFLICT (id) DO NOTHING RETURNING {_PUBLIC}""",
            nas_id,
            name,
            address,
            secret,
            coa_port,
            source,
        )

    async def get(self, nas_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_PUBLIC} FROM nas_clients WHERE id = $1", nas_id)

    async def list(
        self, *, limit: int | None = 100, offset: int = 0, after: Sequence[Any] | None = None
    ) -> list[asyncpg.Record]:
        sql, args = NAS_LIST.query({}, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def all_with_secrets(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id, name, address::text AS address, secret, coa_port FROM nas_clients ORDER BY id"
        )

    async def delete(self, nas_id: str) -> bool:
        result: str = await self.pool.execute("DELETE FROM nas_clients WHERE id = $1", nas_id)
        return result.endswith(" 1")

    async def sync_config(self, clients: list[tuple[str, str, str, str, int]]) -> list[str]:
        """Make the 'config' rows equal to the file's [[radius_clients]]; returns ids removed."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO nas_clients (id, name, address, secret, coa_port, source)
                   SELECT i, n, a, s, p, 'config' FROM unnest($1::text[], $2::text[], $3::cidr[], $4::text[], $5::int[])
                        AS u(i, n, a, s, p)
                   ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, address = EXCLUDED.address,
                       secret = EXCLUDED.secret, coa_port = EXCLUDED.coa_port, source = 'config', updated_at = now()""",
                *[list(column) for column in zip(*clients, strict=True)] if clients else ([], [], [], [], []),
            )
            removed = await conn.fetch(
                "DELETE FROM nas_clients WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id",
                [c[0] for c in clients],
            )
        return [r["id"] for r in removed]
