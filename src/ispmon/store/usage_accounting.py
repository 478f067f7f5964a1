"""The accounting commit: a batch of verified Accounting-Requests into PostgreSQL, in one transaction.

`AccountingStore.commit(batch)` is what the listener's group commit calls; its responses go out
only after it returns. In the transaction: records are inserted with RFC 5080's duplicate key and
ON CONFLICT DO NOTHING (a retransmission, also one that arrives after a restart, adds no row);
Accounting-On/Off close their NAS's open sessions; the sessions the new records touch are locked,
advanced by `ispmon.usage.accounting.apply_record` and written back; each new record gets the
octets it added. Statements are per batch (UNNEST arrays), never per packet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ispmon.usage.accounting import LOST, Received, SessionState, apply_record, event_time
from ispmon.usage.radius import ACCOUNTING_OFF, ACCOUNTING_ON, STATUS_NAMES


@dataclass
class CommitResult:
    stored: int  # new records
    duplicates: int  # already stored (retransmissions)


_SESSION_COLUMNS = (
    "id, nas_id, session_key, customer_id, username, host(framed_ip) AS framed_ip, calling_station,"
    " started_at, last_at, closed_at, terminate_cause, in_octets, out_octets, session_time, interim_interval"
)


def _state(row: asyncpg.Record) -> SessionState:
    return SessionState(
        started_at=row["started_at"],
        last_at=row["last_at"],
        in_octets=int(row["in_octets"]),
        out_octets=int(row["out_octets"]),
        session_time=row["session_time"],
        closed_at=row["closed_at"],
        terminate_cause=row["terminate_cause"],
        interim_interval=row["interim_interval"],
        username=row["username"],
        framed_ip=row["framed_ip"],
        calling_station=row["calling_station"],
    )


class AccountingStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def commit(self, batch: Sequence[Received]) -> CommitResult:
        unique: dict[tuple[str, int, int, bytes], Received] = {}
        for item in batch:
            unique.setdefault(item.key, item)  # a retransmission within the batch: one record
        items = list(unique.values())
        events = [event_time(i.record, i.received_at) for i in items]
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetch(
                """INSERT INTO acct_records (received_at, event_at, nas_id, source_port, identifier,
                       authenticator, status, session_key, in_octets, out_octets, session_time)
                   SELECT * FROM unnest($1::timestamptz[], $2::timestamptz[], $3::text[], $4::int[],
                       $5::smallint[], $6::bytea[], $7::text[], $8::text[], $9::numeric[], $10::numeric[],
                       $11::bigint[])
                   ON CONFLICT (nas_id, source_port, identifier, authenticator) DO NOTHING
                   RETURNING id, nas_id, source_port, identifier, authenticator""",
                [i.received_at for i in items],
                events,
                [i.nas_id for i in items],
                [i.source_port for i in items],
                # smallint is signed; the Identifier is an octet, so 0..255 fits as is.
                [i.identifier for i in items],
                [i.authenticator for i in items],
                [STATUS_NAMES.get(i.record.status, str(i.record.status)) for i in items],
                [i.record.session_key or None for i in items],
                [i.record.in_octets for i in items],
                [i.record.out_octets for i in items],
                [i.record.session_time for i in items],
            )
            ids = {
                (r["nas_id"], r["source_port"], r["identifier"], bytes(r["authenticator"])): r["id"]
                for r in inserted
            }
            new = [(ids[i.key], i, e) for i, e in zip(items, events, strict=True) if i.key in ids]
            if new:
                await self._apply(conn, new)
        return CommitResult(stored=len(new), duplicates=len(batch) - len(new))

    async def _apply(self, conn: asyncpg.Connection, new: list[tuple[int, Received, datetime]]) -> None:
        for _, item, when in new:
            if item.record.status in (ACCOUNTING_ON, ACCOUNTING_OFF):
                # RFC 2866 5.1: the NAS (re)started or stops: every session it had open is over.
                # Only those last heard of before it, so a Start after the On (same batch) stays open.
                await conn.execute(
                    """UPDATE radius_sessions SET closed_at = $2, terminate_cause = $3
                       WHERE nas_id = $1 AND closed_at IS NULL AND last_at <= $2""",
                    item.nas_id,
                    when,
                    "Accounting-On" if item.record.status == ACCOUNTING_ON else "Accounting-Off",
                )
        session_items = [
            (rid, i, w) for rid, i, w in new if i.record.status not in (ACCOUNTING_ON, ACCOUNTING_OFF)
        ]
        if not session_items:
            return
        keys = sorted({(i.nas_id, i.record.session_key) for _, i, _ in session_items})
        # Locked in a fixed order, so two agents committing overlapping batches cannot deadlock.
        rows = await conn.fetch(
            f"""SELECT {_SESSION_COLUMNS} FROM radius_sessions
                WHERE (nas_id, session_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                ORDER BY nas_id, session_key FOR UPDATE""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        states: dict[tuple[str, str], SessionState] = {
            (r["nas_id"], r["session_key"]): _state(r) for r in rows
        }
        customers: dict[tuple[str, str], str | None] = {
            (r["nas_id"], r["session_key"]): r["customer_id"] for r in rows
        }
        counts: dict[tuple[str, str], int] = {}
        deltas: list[tuple[int, tuple[str, str], int, int]] = []
        for record_id, item, _ in session_items:
            key = (item.nas_id, item.record.session_key)
            state, delta_in, delta_out = apply_record(states.get(key), item.record, item.received_at)
            states[key] = state
            counts[key] = counts.get(key, 0) + 1
            deltas.append((record_id, key, delta_in, delta_out))
        await self._attribute(conn, states, customers)
        touched = list(counts)
        written = await conn.fetch(
            """INSERT INTO radius_sessions AS s (nas_id, session_key, customer_id, username, framed_ip,
                   calling_station, started_at, last_at, closed_at, terminate_cause, in_octets, out_octets,
                   session_time, interim_interval, records)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::inet[], $6::text[],
                   $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::text[], $11::numeric[],
                   $12::numeric[], $13::bigint[], $14::int[], $15::int[])
               ON CONFLICT (nas_id, session_key) DO UPDATE SET customer_id = EXCLUDED.customer_id,
                   username = EXCLUDED.username, framed_ip = EXCLUDED.framed_ip,
                   calling_station = EXCLUDED.calling_station, started_at = EXCLUDED.started_at,
                   last_at = EXCLUDED.last_at, closed_at = EXCLUDED.closed_at,
                   terminate_cause = EXCLUDED.terminate_cause, in_octets = EXCLUDED.in_octets,
                   out_octets = EXCLUDED.out_octets, session_time = EXCLUDED.session_time,
                   interim_interval = EXCLUDED.interim_interval, records = s.records + EXCLUDED.records
               RETURNING id, nas_id, session_key""",
            [k[0] for k in touched],
            [k[1] for k in touched],
            [customers.get(k) for k in touched],
            [states[k].username for k in touched],
            [states[k].framed_ip for k in touched],
            [states[k].calling_station for k in touched],
            [states[k].started_at for k in touched],
            [states[k].last_at for k in touched],
            [states[k].closed_at for k in touched],
            [states[k].terminate_cause for k in touched],
            [states[k].in_octets for k in touched],
            [states[k].out_octets for k in touched],
            [states[k].session_time for k in touched],
            [states[k].interim_interval for k in touched],
            [counts[k] for k in touched],
        )
        session_ids = {(r["nas_id"], r["session_key"]): r["id"] for r in written}
        await conn.execute(
            """UPDATE acct_records r SET session_id = u.s, customer_id = u.c, delta_in = u.i, delta_out = u.o
               FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::numeric[], $5::numeric[]) AS u(id, s, c, i, o)
               WHERE r.id = u.id""",
            [d[0] for d in deltas],
            [session_ids[d[1]] for d in deltas],
            [customers.get(d[1]) for d in deltas],
            [d[2] for d in deltas],
            [d[3] for d in deltas],
        )

    @staticmethod
    async def _attribute(
        conn: asyncpg.Connection,
        states: dict[tuple[str, str], SessionState],
        customers: dict[tuple[str, str], str | None],
    ) -> None:
        """Find the customer of sessions that have none yet: by User-Name, else by framed IP
        (the most specific prefix). A customer created after the session started picks it up at
        its next record."""
        pending = [k for k, s in states.items() if customers.get(k) is None]
        if not pending:
            return
        names = list({states[k].username for k in pending if states[k].username})
        by_name: dict[str, str] = {}
        if names:
            rows = await conn.fetch(
                "SELECT username, customer_id FROM customer_usernames WHERE username = ANY($1::text[])", names
            )
            by_name = {r["username"]: r["customer_id"] for r in rows}
        ips = list(
            {
                states[k].framed_ip
                for k in pending
                if states[k].framed_ip and states[k].username not in by_name
            }
        )
        by_ip: dict[str, str] = {}
        if ips:
            rows = await conn.fetch(
                """SELECT DISTINCT ON (ip) host(ip) AS ip, p.customer_id FROM unnest($1::inet[]) AS ip
                   JOIN customer_prefixes p ON ip <<= p.prefix ORDER BY ip, masklen(p.prefix) DESC""",
                ips,
            )
            by_ip = {r["ip"]: r["customer_id"] for r in rows}
        for key in pending:
            state = states[key]
            customers[key] = by_name.get(state.username or "") or by_ip.get(state.framed_ip or "")


async def close_lost(pool: asyncpg.Pool, default_interval: int, now: datetime) -> int:
    """Close, as `lost`, open sessions with no record for twice their Acct-Interim-Interval (else
    `default_interval`). They end at their last activity: that is when usage was last known."""
    result: str = await pool.execute(
        """UPDATE radius_sessions SET closed_at = last_at, terminate_cause = $3
           WHERE closed_at IS NULL
             AND last_at < $1::timestamptz - 2 * coalesce(interim_interval, $2::int) * interval '1 second'""",
        now,
        default_interval,
        LOST,
    )
    return int(result.split()[-1])


def as_int(value: Any) -> int:
    """A numeric(20) column as a Python int (asyncpg returns Decimal)."""
    return int(value) if value is not None else 0
