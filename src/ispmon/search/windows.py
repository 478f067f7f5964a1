"""The maintenance windows family: a window's document with its occurrences (`window_row_doc`),
and deleted rows' documents taken out of Elasticsearch (``search_deletions``, filled by a trigger).

Deletions: only families of one index (maintenance windows): their document's index does not depend on a
date the deleted row no longer gives. Each round, before the windows' own source, the recorded
deletions are sent as ``_bulk`` deletes through the same `Deliverer` as documents (retried item by
item; `Unavailable` stops the round and the records stay for the next one); a record is removed
once Elasticsearch has answered its delete (deleted, or already gone), and only if the row was not
deleted again meanwhile. Sent before the windows' source, so a window deleted and created again
under the same id ends with its new document (the trigger also drops the record on insert).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import structlog

from ispmon.availability.maintenance import MaintenanceWindowSpec, next_occurrence, occurrence_at
from ispmon.search import documents, templates
from ispmon.search.bulk import Deliverer, Item

log = structlog.get_logger("ispmon.search")

MAX_BATCHES = 50  # per round, as the sources


def window_row_doc(row: Any, observer: documents.Observer, now: datetime) -> documents.Doc:
    """A maintenance window with its current/next occurrence and its last start."""
    occ: tuple[datetime, datetime] | None = None
    last: datetime | None = None
    try:
        spec = MaintenanceWindowSpec.model_validate(row["spec"])
        occ = occurrence_at(spec, now) or next_occurrence(spec, now)
        last = spec.starts_at if spec.starts_at <= now else None
    except Exception:
        pass
    data = {
        **dict(row),
        "next_start": occ[0] if occ else None,
        "next_end": occ[1] if occ else None,
        "last_start": last,
    }
    return documents.window_doc(data, observer, now)


async def send_deletions(
    pool: asyncpg.Pool, deliverer: Deliverer, prefix: str, now: datetime, batch_size: int
) -> int:
    """Send what is recorded; returns how many deletes Elasticsearch answered."""
    done = 0
    for _ in range(MAX_BATCHES):
        rows = await pool.fetch(
            "SELECT family, doc_id, deleted_at FROM search_deletions ORDER BY deleted_at, family, doc_id LIMIT $1",
            batch_size,
        )
        rows = [
            r for r in rows if r["family"] in templates.FAMILIES and not templates.FAMILIES[r["family"]].daily
        ]
        if not rows:
            break
        items = [Item.delete(templates.index_name(prefix, r["family"], now), r["doc_id"]) for r in rows]
        outcome = await deliverer.deliver(items)
        refused = {(d.item.index, d.item.doc_id) for d in outcome.dead}
        answered = [r for r, i in zip(rows, items, strict=True) if (i.index, i.doc_id) not in refused]
        for dead in outcome.dead[:3]:  # kept: retried next round (a refused delete is unexpected)
            log.warning(
                "search_delete_refused",
                index=dead.item.index,
                doc_id=dead.item.doc_id,
                status=dead.status,
                error_type=dead.error_type,
                reason=dead.reason[:300],
            )
        if answered:
            await pool.execute(
                """DELETE FROM search_deletions d USING unnest($1::text[], $2::text[], $3::timestamptz[])
                       AS a(family, doc_id, deleted_at)
                   WHERE d.family = a.family AND d.doc_id = a.doc_id AND d.deleted_at = a.deleted_at""",
                [r["family"] for r in answered],
                [r["doc_id"] for r in answered],
                [r["deleted_at"] for r in answered],
            )
            log.info("search_documents_deleted", count=len(answered))
        done += len(answered)
        if len(rows) < batch_size or not answered:
            break
    return done
