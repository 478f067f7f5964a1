"""The feed: every ELASTICSEARCH_SYNC_INTERVAL seconds, each source's due rows -> ``_bulk``.

One task beside the monitor (probing never waits on it: it only reads PostgreSQL through the
shared pool and awaits Elasticsearch). Per source, a batch of at most ELASTICSEARCH_BATCH_SIZE
rows is read in commit order (`search.cursor`), turned into documents, delivered item by item
(`search.bulk`), and only then is the cursor advanced — in the transaction that also stores the
batch's dead letters. A crash between the bulk and that commit resends the batch: same ids, so it
overwrites. When Elasticsearch is unreachable, refuses the credentials or is read-only, the
round stops, the cursor stays, `/search/status` says why, and one log line marks each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from ispmon.search import documents, templates
from ispmon.search.bulk import DeadLetter, Deliverer, Item, Unavailable
from ispmon.search.cursor import Cursor, Mark, ScanFloors, clamp_window, initial_watermark, lag_seconds
from ispmon.search.sources import SOURCES, WINDOWS, Source
from ispmon.search.windows import send_deletions, window_row_doc

log = structlog.get_logger("ispmon.search")

MAX_BATCHES_PER_ROUND = 50  # per source, so one source's backlog does not starve the others
BACKLOG_CAP = 100_000
WINDOWS_REFRESH = 3600.0  # seconds: recurring windows' next occurrence moves without a row change

_SNAPSHOT = (
    "SELECT pg_snapshot_xmin(s)::text::bigint AS xmin, pg_snapshot_xmax(s)::text::bigint AS xmax,"
    " clock_timestamp() AS now FROM pg_current_snapshot() s"
)


@dataclass
class SourceState:
    source: Source
    cursor: Cursor
    floors: ScanFloors
    window_at: datetime | None = None
    backlog: int = 0
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: datetime | None = None
    last_success_at: datetime | None = None


def _encode_key(key: list[Any] | None) -> str | None:
    return None if key is None else json.dumps(key, default=lambda v: v.isoformat())


def _decode_key(source: Source, raw: Any) -> list[Any] | None:
    if raw is None:
        return None
    key = list(raw)
    if source.floor == "time" and key and isinstance(key[0], str):
        key[0] = datetime.fromisoformat(key[0])
    return key


class SearchSync:
    def __init__(
        self,
        pool: asyncpg.Pool,
        deliverer: Deliverer,
        prefix: str,
        observer: documents.Observer,
        interval: float = 300.0,
        batch_size: int = 1000,
        sources: tuple[Source, ...] = SOURCES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.deliverer = deliverer
        self.prefix = prefix
        self.observer = observer
        self.interval = interval
        self.batch_size = batch_size
        self.sources = sources
        self.clock = clock
        self.states: dict[str, SourceState] = {}
        self.failing: str | None = None  # the error kind while failing; None while healthy
        self.last_round_at: datetime | None = None
        self.dead_letters: dict[str, int] = {}
        self.server_version: str | None = None
        self._windows_refreshed = 0.0
        self.wake = asyncio.Event()

    # ----- cursors ----------------------------------------------------------------------------------

    async def load(self) -> None:
        rows = await self.pool.fetch(
            "SELECT family, watermark::text::bigint AS watermark, window_end::text::bigint AS window_end,"
            " after_key, scan_floor_id, scan_floor_at, watermark_at, sent FROM search_cursors"
        )
        stored = {r["family"]: r for r in rows}
        snap = await self.pool.fetchrow(_SNAPSHOT)
        for src in self.sources:
            r = stored.get(src.key)
            if r is None:
                cur = Cursor(src.key, initial_watermark(snap["xmin"]))
            else:
                floor_at = r["scan_floor_at"]
                cur = Cursor(
                    src.key,
                    r["watermark"],
                    r["window_end"],
                    _decode_key(src, r["after_key"]),
                    r["scan_floor_id"],
                    # '-infinity' (no floor yet) comes back as a naive datetime.min.
                    floor_at if isinstance(floor_at, datetime) and floor_at.tzinfo is not None else None,
                    r["watermark_at"],
                    r["sent"],
                )
            self.states[src.key] = SourceState(src, cur, ScanFloors())
        await self._count_dead_letters()

    async def _save(self, conn: asyncpg.Connection, cur: Cursor) -> None:
        await conn.execute(
            """INSERT INTO search_cursors (family, watermark, window_end, after_key, scan_floor_id, scan_floor_at,
                                           watermark_at, sent, updated_at)
               VALUES ($1, $2::bigint::text::xid8, $3::bigint::text::xid8, $4::text::jsonb, $5,
                       coalesce($6, '-infinity'::timestamptz), coalesce($7, now()), $8, now())
               ON CONFLICT (family) DO UPDATE SET watermark = EXCLUDED.watermark, window_end = EXCLUDED.window_end,
                   after_key = EXCLUDED.after_key, scan_floor_id = EXCLUDED.scan_floor_id,
                   scan_floor_at = EXCLUDED.scan_floor_at, watermark_at = EXCLUDED.watermark_at,
                   sent = EXCLUDED.sent, updated_at = now()""",
            cur.family,
            cur.watermark,
            cur.window_end,
            _encode_key(cur.after_key),
            cur.floor_id,
            cur.floor_at,
            cur.watermark_at,
            cur.sent,
        )

    # ----- one source -------------------------------------------------------------------------------

    async def _mark(self, state: SourceState) -> asyncpg.Record:
        src = state.source
        async with self.pool.acquire() as conn:
            snap = await conn.fetchrow(_SNAPSHOT)
            value: int | datetime = snap["now"]
            if src.floor == "id" and src.sequence:
                value = int(await conn.fetchval(f"SELECT last_value FROM {src.sequence}"))
        state.floors.add(Mark(snap["xmax"], value, time.monotonic()))
        return snap

    def _docs(self, src: Source, rows: list[asyncpg.Record], now: datetime) -> list[Item]:
        if src.to_items is not None:
            return src.to_items(rows, self.observer, self.prefix, now)
        items = []
        for row in rows:
            if src is WINDOWS or src.to_doc is None:
                at, doc_id, doc = window_row_doc(row, self.observer, now)
            else:
                at, doc_id, doc = src.to_doc(row, self.observer)
            doc["event"] = {**doc.get("event", {}), "ingested": now.isoformat()}
            items.append(Item.make(templates.index_name(self.prefix, src.family, at), doc_id, doc))
        return items

    async def _fetch(self, src: Source, cur: Cursor, after: list[Any] | None) -> list[asyncpg.Record]:
        floor: int | datetime | None = cur.floor_id if src.floor == "id" else cur.floor_at
        args = [cur.watermark, cur.window_end, src.floor_param(floor), self.batch_size]
        if after is not None:
            args.extend(after)
        return await self.pool.fetch(src.query(after), *args)

    async def _fetch_items(
        self, src: Source, cur: Cursor, after: list[Any] | None
    ) -> tuple[int, list[Any] | None, list[Item]]:
        """How many rows were read, the last one's key, their items. The records themselves are
        dropped here: kept across the bulk's await, a thousand of them per batch reached the
        collector's oldest generation and made its full collections frequent."""
        rows = await self._fetch(src, cur, after)
        return len(rows), (src.key_of(rows[-1]) if rows else None), self._docs(src, rows, self.clock())

    async def sync_source(self, state: SourceState) -> int:
        """Send what is due for one source; returns how many documents Elasticsearch accepted."""
        src, cur = state.source, state.cursor
        snap = await self._mark(state)
        if cur.window_end is None:
            cur.window_end = clamp_window(cur.watermark, snap["xmin"])
            cur.after_key = None
            state.window_at = snap["now"]
        accepted = 0
        n, last_key, items = await self._fetch_items(src, cur, cur.after_key)
        for batch in range(MAX_BATCHES_PER_ROUND):
            # The next batch is read and made into documents while this one is in flight (at most
            # two in memory): the database's time, ours and Elasticsearch's overlap.
            more = n == self.batch_size and batch + 1 < MAX_BATCHES_PER_ROUND
            ahead = asyncio.create_task(self._fetch_items(src, cur, last_key)) if more else None
            try:
                outcome = await self.deliverer.deliver(items) if items else None
            except BaseException:
                if ahead is not None:
                    ahead.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await ahead
                raise
            done = n < self.batch_size
            if last_key is not None:
                cur.after_key = last_key
            cur.sent += outcome.accepted if outcome else 0
            accepted += outcome.accepted if outcome else 0
            if done:
                self._close_window(state)
            async with self.pool.acquire() as conn, conn.transaction():
                if outcome and outcome.dead:
                    await self._store_dead(conn, src.family, outcome.dead)
                await self._save(conn, cur)
            if outcome and outcome.dead:
                for dead in outcome.dead[:3]:
                    log.warning(
                        "search_document_dead_lettered",
                        family=src.family,
                        index=dead.item.index,
                        doc_id=dead.item.doc_id,
                        status=dead.status,
                        error_type=dead.error_type,
                        reason=dead.reason[:300],
                        batch_dead=len(outcome.dead),
                    )
                await self._count_dead_letters()
            if done or ahead is None:
                break
            n, last_key, items = await ahead
        state.last_success_at = self.clock()
        return accepted

    def _close_window(self, state: SourceState) -> None:
        src, cur = state.source, state.cursor
        assert cur.window_end is not None
        cur.watermark = cur.window_end
        cur.window_end = None
        cur.after_key = None
        if state.window_at is not None:
            cur.watermark_at = state.window_at
        safe = state.floors.safe_floor(cur.watermark)
        if src.floor == "id" and isinstance(safe, int):
            cur.floor_id = max(cur.floor_id, safe)
        elif src.floor == "time" and isinstance(safe, datetime):
            candidate = safe - src.margin
            cur.floor_at = candidate if cur.floor_at is None else max(cur.floor_at, candidate)

    async def _store_dead(self, conn: asyncpg.Connection, family: str, dead: list[DeadLetter]) -> None:
        await conn.executemany(
            """INSERT INTO search_dead_letters (family, index_name, doc_id, document, status, error_type, reason)
               VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (family, doc_id) DO UPDATE SET index_name = EXCLUDED.index_name,
                   document = EXCLUDED.document, status = EXCLUDED.status, error_type = EXCLUDED.error_type,
                   reason = EXCLUDED.reason, created_at = now()""",
            [
                (family, d.item.index, d.item.doc_id, d.item.source, d.status, d.error_type, d.reason)
                for d in dead
            ],
        )

    async def _count_dead_letters(self) -> None:
        rows = await self.pool.fetch("SELECT family, count(*) AS n FROM search_dead_letters GROUP BY family")
        self.dead_letters = {r["family"]: r["n"] for r in rows}

    async def _backlog(self, state: SourceState) -> None:
        src, cur = state.source, state.cursor
        snap = await self.pool.fetchrow(_SNAPSHOT)
        end = clamp_window(cur.watermark, snap["xmin"])
        floor: int | datetime | None = cur.floor_id if src.floor == "id" else cur.floor_at
        state.backlog = int(
            await self.pool.fetchval(
                src.count_query(), cur.watermark, end, src.floor_param(floor), BACKLOG_CAP
            )
        )

    # ----- rounds -----------------------------------------------------------------------------------

    async def sync_once(self) -> int:
        """One round over every source. Returns documents accepted; raises nothing for ES trouble."""
        if not self.states:
            await self.load()
        total = 0
        if time.monotonic() - self._windows_refreshed > WINDOWS_REFRESH:
            # Recurring windows: their next occurrence moved though the row did not; resend all.
            state = self.states.get(WINDOWS.key)
            if state is not None and state.cursor.window_end is None:
                state.cursor.watermark = initial_watermark(state.cursor.watermark)
            self._windows_refreshed = time.monotonic()
        for state in self.states.values():
            try:
                if state.source is WINDOWS:  # deleted windows first: one re-created ends indexed
                    await send_deletions(
                        self.pool, self.deliverer, self.prefix, self.clock(), self.batch_size
                    )
                total += await self.sync_source(state)
                state.last_error = state.last_error_kind = None
                await self._backlog(state)
            except Unavailable as exc:
                now = self.clock()
                for other in self.states.values():
                    other.last_error, other.last_error_kind, other.last_error_at = exc.reason, exc.kind, now
                self._set_failing(exc.kind, exc.reason)
                self.last_round_at = now
                return total
        self._set_failing(None, None)
        self.last_round_at = self.clock()
        return total

    def _set_failing(self, kind: str | None, reason: str | None) -> None:
        if kind == self.failing:
            return
        if kind is None:
            log.info("search_sync_recovered", was=self.failing)
        else:
            log.warning("search_sync_failing", kind=kind, reason=reason, was=self.failing)
        self.failing = kind

    async def run(self) -> None:
        """Rounds until cancelled; a failing round is retried sooner (backoff up to the interval)."""
        failures = 0
        while True:
            try:
                await self.sync_once()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                # The database is away: the monitor's own figures say so; the feed waits.
                self._set_failing("database", f"PostgreSQL: {type(exc).__name__}")
            except Exception as exc:  # a bug of ours must not end the feed for the daemon's lifetime
                if self.failing != "internal":
                    log.exception("search_sync_error", error_type=type(exc).__name__)
                self._set_failing("internal", f"{type(exc).__name__}: {str(exc)[:200]}")
            failures = failures + 1 if self.failing else 0
            delay = self.interval if not self.failing else min(self.interval, 0.5 * 2 ** min(failures, 10))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=delay)

    # ----- status -----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock()
        families: dict[str, dict[str, Any]] = {}
        for key in templates.FAMILIES:
            states = [s for s in self.states.values() if s.source.family == key]
            lags = [lag_seconds(s.cursor.watermark_at, now) for s in states]
            errors = [s for s in states if s.last_error]
            successes = [s.last_success_at for s in states if s.last_success_at]
            families[key] = {
                "index_pattern": templates.index_pattern(self.prefix, key),
                "lag_seconds": round(max((x for x in lags if x is not None), default=0.0), 3)
                if states
                else None,
                "backlog": sum(s.backlog for s in states),
                "sent": sum(s.cursor.sent for s in states),
                "dead_letters": self.dead_letters.get(key, 0),
                "last_error": errors[0].last_error if errors else None,
                "last_error_at": errors[0].last_error_at.isoformat()
                if errors and errors[0].last_error_at
                else None,
                "last_success_at": max(successes).isoformat() if successes else None,
            }
        return {
            "enabled": True,
            "state": "failing" if self.failing else "ok",
            "error_kind": self.failing,
            "interval_seconds": self.interval,
            "last_round_at": self.last_round_at.isoformat() if self.last_round_at else None,
            "families": families,
        }


def status_disabled() -> dict[str, Any]:
    return {
        "enabled": False,
        "state": "disabled",
        "error_kind": None,
        "interval_seconds": None,
        "last_round_at": None,
        "families": {},
    }
