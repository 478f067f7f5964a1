"""The notification outbox and the channels created through the API.

Every notification is a row here before anything is sent. The sender leases due rows (moves their
`next_attempt_at` forward in the statement that picks them), so a crash mid-send retries them once
the lease runs out, and two senders never pick the same row. `delivered_targets` grows as each
target of a channel accepts, so a retry after a partial failure skips the ones that already have it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from ispmon.store.listing import Filter, Key, ListSpec

NOTIFICATION_COLUMNS = (
    "id, idempotency_key, alert_id, outage_id, endpoint_id, event, step, channel, notification_type, title,"
    " body, short_body, state, attempts, next_attempt_at, last_error, delivered_targets, created_at, sent_at,"
    " updated_at"
)
STATES = ("pending", "sent", "dead", "cancelled")
DEFAULT_LEASE = 60.0

# GET /notifications/ and NotificationRepo.list: newest first. Items show created_at as alert_time
# (the seed's ServiceAlert field), so the cursor reads it there.
NOTIFICATION_LIST = ListSpec(
    "notifications",
    f"SELECT {NOTIFICATION_COLUMNS} FROM notifications",
    filters=(
        Filter("state", "enum", "state", choices=STATES, description="Only this state"),
        Filter("channel", "text", "channel", description="Only this channel"),
        Filter(
            "alert",
            "integer",
            "alert_id",
            key="alert_id",
            minimum=1,
            description="Only notifications of this alert",
        ),
        Filter("since", "date-time", "created_at", ">=", "Created at or after this instant (no offset: UTC)"),
        Filter("until", "date-time", "created_at", "<", "Created before this instant (no offset: UTC)"),
    ),
    keyset=(Key("created_at", "date-time", field="alert_time"), Key("id", "integer")),
    descending=True,
)


@dataclass(slots=True)
class NotificationDraft:
    idempotency_key: str
    channel: str
    event: str
    step: int
    title: str
    body: str
    short_body: str
    notification_type: str = "other"
    alert_id: int | None = None
    outage_id: int | None = None
    endpoint_id: str | None = None


class NotificationRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def enqueue(
        self, drafts: Sequence[NotificationDraft], conn: asyncpg.Connection | None = None
    ) -> list[int]:
        """Insert drafts; ids of the new rows only (a known idempotency key is a no-op). Pass `conn`
        to write in the caller's transaction, together with the alert change that caused them."""
        if not drafts:
            return []
        columns = list(
            zip(
                *(
                    (
                        d.idempotency_key,
                        d.alert_id,
                        d.outage_id,
                        d.endpoint_id,
                        d.event,
                        d.step,
                        d.channel,
                        d.notification_type,
                        d.title,
                        d.body,
                        d.short_body,
                    )
                    for d in drafts
                ),
                strict=True,
            )
        )
        sql = """INSERT INTO notifications (idempotency_key, alert_id, outage_id, endpoint_id, event, step,
                                            channel, notification_type, title, body, short_body)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                                      $6::int[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[])
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"""
        if conn is not None:
            rows = await conn.fetch(sql, *columns)
        else:
            rows = await self.pool.fetch(sql, *columns)
        return sorted(r["id"] for r in rows)

    async def due(
        self, now: datetime, limit: int = 100, lease: float = DEFAULT_LEASE
    ) -> list[asyncpg.Record]:
        """Pending rows due at `now`, oldest first, leased until now + `lease` seconds (the
        rows' `next_attempt_at`). Several senders on one database each get rows of their own."""
        return await self.pool.fetch(
            """WITH picked AS (
                    SELECT id, next_attempt_at AS due_at FROM notifications
                    WHERE state = 'pending' AND next_attempt_at <= $1
                    ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED),
                leased AS (
                    UPDATE notifications n SET next_attempt_at = $2, updated_at = now()
                    FROM picked WHERE n.id = picked.id
                    RETURNING n.*, picked.due_at)
                SELECT * FROM leased ORDER BY due_at, id""",
            now,
            now + timedelta(seconds=lease),
            limit,
        )

    async def unlease(self, ids: Sequence[int], leased_until: datetime) -> int:
        """Give back rows leased (until `leased_until`) and not attempted: a sender that stops
        lets the next one send them at once instead of after the lease. How many."""
        if not ids:
            return 0
        result: str = await self.pool.execute(
            """UPDATE notifications SET next_attempt_at = now(), updated_at = now()
               WHERE id = ANY($1::bigint[]) AND state = 'pending' AND next_attempt_at = $2""",
            list(ids),
            leased_until,
        )
        return int(result.split()[-1])

    async def next_due_at(self) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            "SELECT min(next_attempt_at) FROM notifications WHERE state = 'pending'"
        )
        return value

    async def add_delivered(self, notification_id: int, fingerprint: str) -> None:
        await self.pool.execute(
            """UPDATE notifications SET updated_at = now(),
                      delivered_targets = CASE WHEN delivered_targets ? $2 THEN delivered_targets
                                               ELSE delivered_targets || jsonb_build_array($2::text) END
               WHERE id = $1""",
            notification_id,
            fingerprint,
        )

    async def mark_sent(self, notification_id: int, now: datetime) -> None:
        # A row cancelled while it was being sent was sent all the same: record the truth.
        await self.pool.execute(
            """UPDATE notifications SET state = 'sent', sent_at = $2, attempts = attempts + 1, updated_at = now()
               WHERE id = $1 AND state IN ('pending', 'cancelled')""",
            notification_id,
            now,
        )

    async def mark_failed(
        self, notification_id: int, error: str, attempts: int, next_attempt_at: datetime
    ) -> None:
        await self.pool.execute(
            """UPDATE notifications SET last_error = $2, attempts = $3, next_attempt_at = $4, updated_at = now()
               WHERE id = $1 AND state = 'pending'""",
            notification_id,
            error,
            attempts,
            next_attempt_at,
        )

    async def mark_dead(self, notification_id: int, error: str, attempts: int) -> None:
        await self.pool.execute(
            """UPDATE notifications SET state = 'dead', last_error = $2, attempts = $3, updated_at = now()
               WHERE id = $1 AND state = 'pending'""",
            notification_id,
            error,
            attempts,
        )

    async def postpone(self, notification_id: int, until: datetime) -> None:
        """Move a row's next attempt (rate limit); not counted as an attempt."""
        await self.pool.execute(
            "UPDATE notifications SET next_attempt_at = $2, updated_at = now() WHERE id = $1 AND state = 'pending'",
            notification_id,
            until,
        )

    async def cancel_for_alert(
        self, alert_id: int, events: Sequence[str] | None = None, conn: asyncpg.Connection | None = None
    ) -> int:
        """Cancel an alert's pending notifications (of `events` only, if given); how many. Pass
        `conn` to cancel in the caller's transaction."""
        target = conn if conn is not None else self.pool
        result: str = await target.execute(
            """UPDATE notifications SET state = 'cancelled', updated_at = now()
               WHERE alert_id = $1 AND state = 'pending' AND ($2::text[] IS NULL OR event = ANY($2))""",
            alert_id,
            list(events) if events is not None else None,
        )
        return int(result.split()[-1])

    async def get(self, notification_id: int) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            f"SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1", notification_id
        )

    async def list(
        self, *, limit: int = 100, offset: int = 0, after: Sequence[Any] | None = None, **filters: Any
    ) -> list[asyncpg.Record]:
        """Newest first; `filters` by NOTIFICATION_LIST's keys (state, channel, alert_id, since,
        until), `after` the (created_at, id) of the last notification seen."""
        sql, args = NOTIFICATION_LIST.query(filters, limit=limit, offset=offset, after=after)
        return await self.pool.fetch(sql, *args)

    async def count_by_state(self) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT state, count(*) AS n FROM notifications GROUP BY state")
        counts = dict.fromkeys(STATES, 0)
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    async def retry(self, notification_id: int) -> asyncpg.Record | None:
        """Give a dead-lettered row another round (an operator's action); None unless it was dead."""
        return await self.pool.fetchrow(
            f"""UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
                WHERE id = $1 AND state = 'dead' RETURNING {NOTIFICATION_COLUMNS}""",
            notification_id,
        )


class ChannelRepo:
    """Channels created through the API (config-file channels are never stored)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def all(self) -> list[tuple[str, list[str]]]:
        rows = await self.pool.fetch("SELECT name, urls FROM alert_channels ORDER BY name")
        return [(r["name"], _url_list(r["urls"])) for r in rows]

    async def upsert(self, name: str, urls: Sequence[str]) -> None:
        await self.pool.execute(
            """INSERT INTO alert_channels (name, urls) VALUES ($1, $2)
               ON CONFLICT (name) DO UPDATE SET urls = EXCLUDED.urls, updated_at = now()""",
            name,
            list(urls),
        )

    async def delete(self, name: str) -> bool:
        result: str = await self.pool.execute("DELETE FROM alert_channels WHERE name = $1", name)
        return result != "DELETE 0"


def _url_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]
