"""Customer rows and their identities (User-Names, prefixes), one or tens of thousands at a time.

`upsert` writes any number of customers in one transaction with one statement per table (UNNEST
arrays, not a loop of INSERTs): the bulk route of provisioning systems goes through it, and so do
single creates and updates. An identity another customer holds is refused, never moved silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ispmon.store.listing import Filter, Key, ListSpec

_COLUMNS = "id, name, spec, source, created_at, updated_at"

CUSTOMER_LIST = ListSpec(
    "customers",
    f"SELECT {_COLUMNS} FROM customers",
    filters=(Filter("plan", "text", "spec->>'plan'", description="Only customers on this plan"),),
    keyset=(Key("id", "text"),),
)


@dataclass(frozen=True)
class IdentityConflict:
    kind: str  # "usernames" or "prefixes"
    value: str
    owner: str  # the customer that holds it


@dataclass(frozen=True)
class CustomerRow:
    """One customer to write: its id, name, spec (JSON) and identities."""

    id: str
    name: str
    spec: dict[str, Any]
    usernames: Sequence[str]
    prefixes: Sequence[str]


class CustomerRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def get(self, customer_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM customers WHERE id = $1", customer_id)

    async def existing(self, ids: Sequence[str]) -> dict[str, str]:
        """id -> source of those of `ids` that exist."""
        rows = await self.pool.fetch("SELECT id, source FROM customers WHERE id = ANY($1::text[])", list(ids))
        return {r["id"]: r["source"] for r in rows}

    async def list(
        self,
        *,
        plan: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[asyncpg.Record]:
        sql, args = CUSTOMER_LIST.query({"plan": plan}, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def delete(self, customer_id: str) -> bool:
        result: str = await self.pool.execute("DELETE FROM customers WHERE id = $1", customer_id)
        return result.endswith(" 1")

    async def upsert(
        self, rows: Sequence[CustomerRow], source: str = "api", *, create_only: bool = False
    ) -> tuple[list[str], list[IdentityConflict]]:
        """Insert or replace `rows` and their identities, all or nothing. Returns (ids created,
        conflicts); with conflicts nothing is written. `create_only`: an existing id is skipped
        and not in the first list (the caller answers 409)."""
        ids = [r.id for r in rows]
        names = [(u, r.id) for r in rows for u in r.usernames]
        prefixes = [(p, r.id) for r in rows for p in r.prefixes]
        async with self.pool.acquire() as conn, conn.transaction():
            conflicts = await self._conflicts(conn, ids, names, prefixes)
            if conflicts:
                return [], conflicts
            conflict = (
                "DO NOTHING"
                if create_only
                else (
                    "DO UPDATE SET name = EXCLUDED.name, spec = EXCLUDED.spec, source = EXCLUDED.source,"
                    " updated_at = now()"
                )
            )
            # xmax = 0 only for a row this statement inserted (an updated row carries our xid).
            written = await conn.fetch(
                f"""INSERT INTO customers (id, name, spec, source)
                    SELECT i, n, s, $4 FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS u(i, n, s)
                    ON CONFLICT (id) {conflict}
                    RETURNING id, (xmax = 0) AS created""",
                ids,
                [r.name for r in rows],
                [r.spec for r in rows],
                source,
            )
            done = [r["id"] for r in written]
            await conn.execute("DELETE FROM customer_usernames WHERE customer_id = ANY($1::text[])", done)
            await conn.execute("DELETE FROM customer_prefixes WHERE customer_id = ANY($1::text[])", done)
            keep = set(done)
            await conn.execute(
                """INSERT INTO customer_usernames (username, customer_id)
                   SELECT * FROM unnest($1::text[], $2::text[])""",
                [u for u, c in names if c in keep],
                [c for _, c in names if c in keep],
            )
            await conn.execute(
                """INSERT INTO customer_prefixes (prefix, customer_id)
                   SELECT * FROM unnest($1::cidr[], $2::text[])""",
                [p for p, c in prefixes if c in keep],
                [c for _, c in prefixes if c in keep],
            )
        return [r["id"] for r in written if r["created"]], []

    async def _conflicts(
        self,
        conn: asyncpg.Connection,
        ids: list[str],
        names: list[tuple[str, str]],
        prefixes: list[tuple[str, str]],
    ) -> list[IdentityConflict]:
        rows = await conn.fetch(
            """SELECT 'usernames' AS kind, u.username AS value, u.customer_id AS owner
                 FROM customer_usernames u JOIN unnest($1::text[], $2::text[]) AS w(v, c) ON u.username = w.v
                WHERE u.customer_id <> w.c AND NOT (u.customer_id = ANY($5::text[]))
               UNION ALL
               SELECT 'prefixes', p.prefix::text, p.customer_id
                 FROM customer_prefixes p JOIN unnest($3::cidr[], $4::text[]) AS w(v, c) ON p.prefix = w.v
                WHERE p.customer_id <> w.c AND NOT (p.customer_id = ANY($5::text[]))""",
            [n for n, _ in names],
            [c for _, c in names],
            [p for p, _ in prefixes],
            [c for _, c in prefixes],
            ids,
        )
        return [IdentityConflict(r["kind"], r["value"], r["owner"]) for r in rows]

    async def identities(self, customer_id: str) -> tuple[list[str], list[str]]:
        names = await self.pool.fetch(
            "SELECT username FROM customer_usernames WHERE customer_id = $1 ORDER BY username", customer_id
        )
        prefixes = await self.pool.fetch(
            "SELECT prefix::text FROM customer_prefixes WHERE customer_id = $1 ORDER BY prefix", customer_id
        )
        return [r[0] for r in names], [r[0] for r in prefixes]

    async def remove_config_except(self, ids: Sequence[str]) -> list[str]:
        """Delete the 'config' customers not in `ids` (the file no longer declares them)."""
        rows = await self.pool.fetch(
            "DELETE FROM customers WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id",
            list(ids),
        )
        return [r["id"] for r in rows]
