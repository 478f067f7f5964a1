"""Endpoint rows: the definitions the scheduler runs, from the API or the config file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from ispmon.availability.endpoints import EndpointSpec, target_key
from ispmon.models import Protocol
from ispmon.store.listing import Filter, Key, ListSpec

_COLUMNS = "id, name, protocol, url, criticality, tags, is_active, spec, source, created_at, updated_at"

# GET /services/ and EndpointRepo.list, by id.
ENDPOINT_LIST = ListSpec(
    "services",
    f"SELECT {_COLUMNS} FROM endpoints",
    filters=(
        Filter(
            "protocol",
            "enum",
            "protocol",
            choices=tuple(p.value for p in Protocol),
            description="Only this protocol",
        ),
        Filter("tag", "text", "tags", "any", "Only endpoints carrying this tag"),
        Filter(
            "active", "boolean", "is_active", description="Only active (true) or inactive (false) endpoints"
        ),
    ),
    keyset=(Key("id", "text"),),
)
# The same list (filters, order, cursors) with the definition as jsonb's text, not decoded: the API's
# cache of encoded endpoints (services/public_cache.py) compares it with the text its bytes were made
# from, and decodes it only when they differ.
ENDPOINT_LIST_TEXT = replace(
    ENDPOINT_LIST,
    select="SELECT id, spec::text AS spec_text, source, created_at, updated_at FROM endpoints",
)


_INSERT = """INSERT INTO endpoints (id, name, protocol, url, criticality, tags, is_active, spec, source)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""
_ON_CONFLICT_UPDATE = """ON CONFLICT (id) DO UPDATE SET name = $2, protocol = $3, url = $4, criticality = $5,
                             tags = $6, is_active = $7, spec = $8, source = $9, updated_at = now()"""


def _values(spec: EndpointSpec, source: str) -> tuple[Any, ...]:
    """The row for `spec`, in _INSERT's parameter order."""
    return (
        spec.id,
        spec.name,
        spec.protocol.value,
        spec.url,
        spec.criticality.value,
        spec.tags,
        spec.is_active,
        spec.stored_dict(),
        source,
    )


async def _close_outages(conn: asyncpg.Connection, endpoint_ids: list[str], notes: str) -> list[str]:
    """Close the open outages of these endpoints by hand (resolution 'manual', `notes` says why):
    a deleted endpoint's would stay in /outages/active forever, and a retargeted one's is about a
    target that is no longer probed. Returns the endpoint ids whose outage was closed."""
    rows = await conn.fetch(
        """UPDATE outages SET resolved_at = now(), resolution = 'manual',
                  duration_seconds = GREATEST(0, EXTRACT(EPOCH FROM (now() - started_at))),
                  resolution_notes = $2, updated_at = now()
           WHERE endpoint_id = ANY($1::text[]) AND resolved_at IS NULL RETURNING endpoint_id""",
        endpoint_ids,
        notes,
    )
    return [r["endpoint_id"] for r in rows]


REMOVED = "endpoint removed"
TARGET_CHANGED = "target changed"


class EndpointRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, spec: EndpointSpec, source: str = "api") -> asyncpg.Record:
        """Create or replace; a changed target closes the open outage (notes 'target changed')."""
        async with self.pool.acquire() as conn, conn.transaction():
            old = await conn.fetchval("SELECT spec FROM endpoints WHERE id = $1 FOR UPDATE", spec.id)
            row = await conn.fetchrow(
                f"{_INSERT} {_ON_CONFLICT_UPDATE} RETURNING {_COLUMNS}", *_values(spec, source)
            )
            if old is not None and target_key(old) != target_key(spec):
                await _close_outages(conn, [spec.id], TARGET_CHANGED)
        return row

    async def insert(self, spec: EndpointSpec, source: str = "api") -> asyncpg.Record | None:
        """Insert; None when the id exists already."""
        return await self.pool.fetchrow(
            f"{_INSERT} ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}", *_values(spec, source)
        )

    async def get(self, endpoint_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM endpoints WHERE id = $1", endpoint_id)

    async def list(
        self, *, limit: int = 1000, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[asyncpg.Record]:
        """By id; `filters` by ENDPOINT_LIST's keys (protocol, tag, active), `after` the last id seen."""
        sql, args = ENDPOINT_LIST.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def list_text(
        self, *, limit: int = 1000, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[asyncpg.Record]:
        """`list`, with `spec_text` (the stored definition as text) in place of the decoded `spec`."""
        sql, args = ENDPOINT_LIST_TEXT.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def count(self) -> int:
        n: int = await self.pool.fetchval("SELECT count(*) FROM endpoints")
        return n

    async def all(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(f"SELECT {_COLUMNS} FROM endpoints ORDER BY id")

    async def delete(self, endpoint_id: str) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            result: str = await conn.execute("DELETE FROM endpoints WHERE id = $1", endpoint_id)
            await _close_outages(conn, [endpoint_id], REMOVED)
        return result.endswith(" 1")

    async def sync_config(self, specs: list[EndpointSpec]) -> dict[str, Any]:
        """Make the 'config' rows equal to the config file: upsert each, delete those no longer there.

        An API-created endpoint with the same id as a config one is taken over by the config file
        (listed in "taken_over"); one whose target changed has its open outage closed (listed in
        "retargeted"), as a removed one has.
        """
        ids = [s.id for s in specs]
        async with self.pool.acquire() as conn, conn.transaction():
            existing = {
                r["id"]: r
                for r in await conn.fetch(
                    "SELECT id, spec, source FROM endpoints WHERE id = ANY($1::text[]) FOR UPDATE", ids
                )
            }
            taken_over = [i for i in ids if i in existing and existing[i]["source"] != "config"]
            retargeted = [
                s.id
                for s in specs
                if s.id in existing and target_key(existing[s.id]["spec"]) != target_key(s)
            ]
            for spec in specs:
                # Rows that already match are left alone (their updated_at says when they last changed).
                await conn.execute(
                    f"""{_INSERT} {_ON_CONFLICT_UPDATE}
                        WHERE endpoints.spec IS DISTINCT FROM $8 OR endpoints.source <> $9""",
                    *_values(spec, "config"),
                )
            await _close_outages(conn, retargeted, TARGET_CHANGED)
            removed = await conn.fetch(
                "DELETE FROM endpoints WHERE source = 'config' AND NOT (id = ANY($1::text[])) RETURNING id",
                ids,
            )
            await _close_outages(conn, [r["id"] for r in removed], REMOVED)
        return {
            "synced": len(ids),
            "removed": [r["id"] for r in removed],
            "taken_over": taken_over,
            "retargeted": retargeted,
        }
