"""Dead letters: documents Elasticsearch refused for good (a mapping error), kept with the reason.

Listed with the shared keyset paging (`DEAD_LETTERS`), and retried one at a time on request (after
the mapping or the document's source was fixed): accepted -> the row is deleted; refused again ->
the row keeps the new reason and counts the retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from ispmon.search.bulk import Deliverer, Item
from ispmon.store.listing import Filter, Key, ListSpec

_COLUMNS = (
    "id, family, index_name, doc_id, document, status, error_type, reason, created_at, retries, last_retry_at"
)
DEAD_LETTERS = ListSpec(
    "search_dead_letters",
    f"SELECT {_COLUMNS} FROM search_dead_letters",
    filters=(Filter("family", "text", "family", description="Index family (e.g. service_status)"),),
    keyset=(Key("id", "integer"),),
)


async def list_dead_letters(
    pool: asyncpg.Pool,
    *,
    family: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
    after: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    sql, args = DEAD_LETTERS.query({"family": family}, limit=limit, offset=offset, after=after)
    return [dict(r) for r in await pool.fetch(sql, *args)]


async def retry_dead_letter(
    pool: asyncpg.Pool, deliverer: Deliverer, letter_id: int
) -> dict[str, Any] | None:
    """Send one dead letter again. None: no such id. Raises bulk.Unavailable when ES is away."""
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM search_dead_letters WHERE id = $1", letter_id)
    if row is None:
        return None
    outcome = await deliverer.deliver([Item.make(row["index_name"], row["doc_id"], row["document"])])
    if outcome.accepted:
        await pool.execute("DELETE FROM search_dead_letters WHERE id = $1", letter_id)
        return {
            "id": letter_id,
            "result": "indexed",
            "index": row["index_name"],
            "doc_id": row["doc_id"],
            "reason": None,
        }
    dead = outcome.dead[0]
    await pool.execute(
        """UPDATE search_dead_letters SET status = $2, error_type = $3, reason = $4, retries = retries + 1,
                  last_retry_at = now() WHERE id = $1""",
        letter_id,
        dead.status,
        dead.error_type,
        dead.reason,
    )
    return {
        "id": letter_id,
        "result": "refused",
        "index": row["index_name"],
        "doc_id": row["doc_id"],
        "reason": dead.reason,
    }
