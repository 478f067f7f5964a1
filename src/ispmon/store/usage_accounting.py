"""The accounting commit: a batch of verified Accounting-Requests into PostgreSQL, in one transaction.

`AccountingStore.commit(batch)` is what the listener's group commit calls; its responses go out
only after it returns. In the transaction: records are inserted with RFC 5080's duplicate key and
ON CONFLICT DO NOTHING (a retransmission, also one that arrives after a restart, adds no row);
Accounting-On/Off close their NAS's open sessions; the sessions the new records touch are locked,
advanced by `ispmon.usage.accounting.apply_record` and written back; each new record gets the
octets it added. Statements are per batch (UNNEST of arrays of rows), never per packet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from ispmon.usage.accounting import LOST, Received, SessionState, apply_record, event_time
from ispmon.usage.radius import ACCOUNTING_OFF, ACCOUNTING_ON, STATUS_NAMES

log = structlog.get_logger("ispmon.store.usage_accounting")

# Commits of a batch that lost the race to create a session to another agent's, before the error
# is the listener's (a retry always finds the session: a second race needs another new session).
SESSION_RACE_ATTEMPTS = 3


@dataclass
class CommitResult:
    stored: int  # new records
    duplicates: int  # already stored (retransmissions)


_NAS_WIDE = (ACCOUNTING_ON, ACCOUNTING_OFF)
_SESSION_COLUMNS = (
    "id, nas_id, session_key, customer_id, username, host(framed_ip) AS framed_ip, calling_station,"
    " started_at, last_at, closed_at, terminate_cause, in_octets::text AS in_octets,"
    " out_octets::text AS out_octets, session_time, interim_interval"  # counters as text: int() is exact
)


# Parameters are arrays of rows (the composite types of schema 16), not one array per column:
# asyncpg inspects every element of an array parameter (is it a nested array?) with several
# isinstance calls, and with one array per column that was a third of the client's CPU per record.
_LOCK_AND_SEEN = f"""
    WITH locked AS (
        SELECT {_SESSION_COLUMNS} FROM radius_sessions
        WHERE (nas_id, session_key) IN (SELECT k.nas_id, k.session_key FROM unnest($1::acct_commit_key[]) AS k)
        ORDER BY nas_id, session_key FOR UPDATE),
    seen AS (
        SELECT u.ord::int AS dup
        FROM unnest($2::acct_commit_key[])
             WITH ORDINALITY AS u(nas_id, session_key, source_port, identifier, authenticator, ord)
        JOIN acct_records r ON r.nas_id = u.nas_id AND r.source_port = u.source_port
                           AND r.identifier = u.identifier AND r.authenticator = u.authenticator)
    SELECT seen.dup, locked.* FROM locked FULL JOIN seen ON false"""


_SESSION_FIELDS = (
    "nas_id, session_key, customer_id, username, framed_ip, calling_station, started_at, last_at, closed_at,"
    " terminate_cause, in_octets, out_octets, session_time, interim_interval, records"
)
# Counters go as text: asyncpg encodes a Python int as numeric three times slower than it formats
# and sends the string, and PostgreSQL's text -> numeric is exact.
_SESSION_VALUES = _SESSION_FIELDS.replace("in_octets, out_octets", "in_octets::numeric, out_octets::numeric")


# $1 new sessions, $2 the records, $3 the sessions there already (with their ids).
# The customer's time zone is a scalar subquery, one primary-key probe per record: as a join, the
# generic plan (a few rows estimated from unnest) hashed a sequential scan of all customers in
# every commit, about 1.5 ms of server CPU per transaction at 10,000 customers (EXPLAIN
# (GENERIC_PLAN)), most of the fixed cost that made small batches dear.
# Updates are by primary key, and touch no indexed column, so they stay HOT (no index writes)
# where the page has room. Rollup rows are locked in one order: concurrent commits cannot deadlock.
# Rollups are hourly and daily; a month is read as the sum of its days (schema 16).
_WRITE = f"""
    WITH fresh AS (
        INSERT INTO radius_sessions ({_SESSION_FIELDS})
        SELECT {_SESSION_VALUES} FROM unnest($1::acct_commit_session[])
        RETURNING id, nas_id, session_key),
    added AS (
        INSERT INTO acct_records (received_at, event_at, nas_id, source_port, identifier, authenticator,
            status, session_key, in_octets, out_octets, session_time, session_id, customer_id, delta_in,
            delta_out)
        SELECT r.received_at, r.event_at, r.nas_id, r.source_port, r.identifier, r.authenticator, r.status,
               r.session_key, r.in_octets::numeric, r.out_octets::numeric, r.session_time,
               coalesce(r.session_id, f.id), r.customer_id, r.delta_in::numeric, r.delta_out::numeric
        FROM unnest($2::acct_commit_record[]) AS r
        LEFT JOIN fresh f ON r.session_id IS NULL AND f.nas_id = r.nas_id AND f.session_key = r.session_key
        ON CONFLICT (nas_id, source_port, identifier, authenticator) DO NOTHING
        RETURNING session_id, customer_id, event_at, delta_in, delta_out),
    counted AS (SELECT session_id, count(*) AS n FROM added GROUP BY 1),
    zoned AS MATERIALIZED (
        SELECT a.customer_id, a.event_at, a.delta_in, a.delta_out,
               coalesce((SELECT c.spec->>'timezone' FROM customers c WHERE c.id = a.customer_id), 'UTC') AS tz
        FROM added a WHERE a.customer_id IS NOT NULL AND a.delta_in + a.delta_out > 0),
    rolled AS (
        INSERT INTO usage_rollups AS u (customer_id, step, start, bytes_in, bytes_out)
        SELECT z.customer_id, s.step, date_trunc(s.step, z.event_at, z.tz), sum(z.delta_in), sum(z.delta_out)
        FROM zoned z CROSS JOIN (VALUES ('hour'), ('day')) AS s(step)
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3
        ON CONFLICT (customer_id, step, start) DO UPDATE
            SET bytes_in = u.bytes_in + excluded.bytes_in, bytes_out = u.bytes_out + excluded.bytes_out),
    updated AS (
    UPDATE radius_sessions s SET customer_id = u.customer_id, username = u.username,
           framed_ip = u.framed_ip, calling_station = u.calling_station, started_at = u.started_at,
           last_at = u.last_at, closed_at = u.closed_at, terminate_cause = u.terminate_cause,
           in_octets = u.in_octets::numeric, out_octets = u.out_octets::numeric, session_time = u.session_time,
           interim_interval = u.interim_interval, records = s.records + coalesce(c.n, 0)
    FROM unnest($3::acct_commit_session[]) AS u LEFT JOIN counted c ON c.session_id = u.id
    WHERE s.id = u.id)
    SELECT count(*) FROM added"""


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
        for attempt in range(1, SESSION_RACE_ATTEMPTS + 1):
            try:
                stored = await self._commit_once(items)
                break
            except asyncpg.UniqueViolationError as exc:
                # Another agent (a NAS failing over sends the same Start to both) created one of
                # these sessions between our look and our INSERT; the next attempt finds it
                # stored, and its records with it. Nothing of this attempt was committed.
                if (
                    attempt == SESSION_RACE_ATTEMPTS
                    or exc.constraint_name != "radius_sessions_nas_id_session_key_key"
                ):
                    raise
                log.info("radius_session_created_elsewhere", attempt=attempt, records=len(items))
        return CommitResult(stored=stored, duplicates=len(batch) - stored)

    async def _commit_once(self, items: list[Received]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            # Sessions first, locked in a fixed order (two agents committing overlapping batches
            # cannot deadlock); a retransmission of a stored record is then seen for certain.
            keys = sorted(
                {(i.nas_id, i.record.session_key) for i in items if i.record.status not in _NAS_WIDE}
            )
            # One round trip: the sessions, locked, and which records are stored already (rows
            # with `dup` set carry only that record's position in `items`).
            rows = await conn.fetch(
                _LOCK_AND_SEEN,
                [(k[0], k[1], None, None, None) for k in keys],
                [(i.nas_id, None, i.source_port, i.identifier, i.authenticator) for i in items],
            )
            seen = {items[r["dup"] - 1].key for r in rows if r["dup"] is not None}
            rows = [r for r in rows if r["dup"] is None]
            new = [i for i in items if i.key not in seen]
            # What the INSERT added, not len(new): a record another agent committed while we waited
            # for its session's lock is not in this statement's snapshot of acct_records, and is
            # applied (adding nothing: same counters) but not stored again.
            return await self._apply(conn, new, rows) if new else 0

    async def _apply(self, conn: asyncpg.Connection, new: list[Received], rows: list[asyncpg.Record]) -> int:
        for item in new:
            if item.record.status in _NAS_WIDE:
                # RFC 2866 5.1: the NAS (re)started or stops: every session it had open is over.
                # Only those last heard of before it, so a Start after the On (same batch) stays open.
                when = event_time(item.record, item.received_at)
                # Locked in (nas_id, session_key) order, the order every commit locks its sessions
                # in, so a commit on another lane (or agent) holding some of them cannot deadlock.
                await conn.execute(
                    """UPDATE radius_sessions SET closed_at = $2, terminate_cause = $3
                       WHERE id IN (SELECT id FROM radius_sessions
                                    WHERE nas_id = $1 AND closed_at IS NULL AND last_at <= $2
                                    ORDER BY nas_id, session_key FOR UPDATE)""",
                    item.nas_id,
                    when,
                    "Accounting-On" if item.record.status == ACCOUNTING_ON else "Accounting-Off",
                )
        states: dict[tuple[str, str], SessionState] = {
            (r["nas_id"], r["session_key"]): _state(r) for r in rows
        }
        session_ids: dict[tuple[str, str], int] = {(r["nas_id"], r["session_key"]): r["id"] for r in rows}
        customers: dict[tuple[str, str], str | None] = {
            (r["nas_id"], r["session_key"]): r["customer_id"] for r in rows
        }
        counts: dict[tuple[str, str], int] = {}
        deltas: list[tuple[int, int]] = []
        for item in new:
            if item.record.status in _NAS_WIDE:
                # The same close as the UPDATE above, for the sessions this batch holds in hand
                # (they are written back below and must not reopen).
                when = event_time(item.record, item.received_at)
                cause = "Accounting-On" if item.record.status == ACCOUNTING_ON else "Accounting-Off"
                for key, state in states.items():
                    if key[0] == item.nas_id and state.closed_at is None and state.last_at <= when:
                        states[key] = replace(state, closed_at=when, terminate_cause=cause)
                deltas.append((0, 0))
                continue
            key = (item.nas_id, item.record.session_key)
            state, delta_in, delta_out = apply_record(states.get(key), item.record, item.received_at)
            states[key] = state
            counts[key] = counts.get(key, 0) + 1
            deltas.append((delta_in, delta_out))
        await self._attribute(conn, states, customers)
        fresh = [k for k in counts if k not in session_ids]
        created = set(fresh)
        existing = [k for k in counts if k not in created]
        # One statement writes it all: new sessions, the records (a new session's id joined in
        # from its INSERT), the rollups of the rows that INSERT actually added, and the sessions
        # that were there. One round trip, and one transaction, so records and rollups are
        # committed or lost together.
        added: int = await conn.fetchval(
            _WRITE,
            _session_rows(fresh, states, customers, counts, session_ids),
            [
                (
                    i.received_at,
                    event_time(i.record, i.received_at),
                    i.nas_id,
                    i.source_port,
                    # smallint is signed; the Identifier is an octet, so 0..255 fits as is.
                    i.identifier,
                    i.authenticator,
                    STATUS_NAMES.get(i.record.status, str(i.record.status)),
                    i.record.session_key or None,
                    str(i.record.in_octets),
                    str(i.record.out_octets),
                    i.record.session_time,
                    session_ids.get((i.nas_id, i.record.session_key)),
                    customers.get((i.nas_id, i.record.session_key)),
                    str(d[0]),
                    str(d[1]),
                )
                for i, d in zip(new, deltas, strict=True)
            ],
            _session_rows(existing, states, customers, counts, session_ids),
        )
        return added

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


def _session_rows(
    keys: list[tuple[str, str]],
    states: dict[tuple[str, str], SessionState],
    customers: dict[tuple[str, str], str | None],
    counts: dict[tuple[str, str], int],
    ids: dict[tuple[str, str], int],
) -> list[tuple[Any, ...]]:
    """The sessions as `acct_commit_session` rows (id None for a session not stored yet)."""
    rows = []
    for k in keys:
        state = states[k]
        rows.append(
            (
                k[0],
                k[1],
                customers.get(k),
                state.username,
                state.framed_ip,
                state.calling_station,
                state.started_at,
                state.last_at,
                state.closed_at,
                state.terminate_cause,
                str(state.in_octets),
                str(state.out_octets),
                state.session_time,
                state.interim_interval,
                counts[k],
                ids.get(k),
            )
        )
    return rows


def as_int(value: Any) -> int:
    """A numeric(20) column as a Python int (asyncpg returns Decimal)."""
    return int(value) if value is not None else 0
