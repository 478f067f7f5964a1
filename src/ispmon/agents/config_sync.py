"""One configuration for all agents: LISTEN for other agents' changes, with a periodic backstop.

Every change to a configuration table is a row of `config_changes` and a NOTIFY on `ispmon_config`
(payload: the row's id), both written by the table's trigger in the writer's transaction
(schema.sql, version 19). An agent:

* LISTENs on a connection of its own (not the pool's: a pool may close or replace a connection,
  and its LISTEN with it). When that connection drops it reconnects with backoff and then catches
  up from the table, so what was committed meanwhile is applied at once, not at the next poll.
* Folds what arrives within `debounce` seconds into one plan (`config_changes.plan`), leaves out
  its own changes (its API already updated its memory), and hands the plan to the applier
  (`config_apply.DaemonTargets.apply`), which re-reads the changed rows.
* Every `poll_interval` seconds (AGENT_CONFIG_POLL_INTERVAL) reads what is newer than the last id
  it saw, and what was written within `lookback` (a transaction that took id 10 may commit after
  the one that took id 11: ids alone would skip it), and applies whatever it has not applied yet: a
  notification missed while the listener was down, or lost in between. It also prunes rows older
  than `keep`, and when rows it never saw were pruned (the database was out of reach for longer
  than that) it re-reads everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from ispmon.agents.config_changes import CHANNEL, RELOAD, Change, Plan, plan

log = structlog.get_logger("ispmon.agents.config")

Applier = Callable[[Plan], Awaitable[dict[str, Any]]]
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

DEBOUNCE = 0.05  # seconds to gather a burst (a client's loop of 100 PUTs) into one plan
KEEP = timedelta(days=1)
PRUNE_EVERY = 600.0
RECONNECT_MAX = 30.0
PING_TIMEOUT = 10.0


def file_digest(path: Path | None) -> str | None:
    """The config file's digest (announced with a reload), None without a file or if unreadable."""
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


async def announce_reload(pool: asyncpg.Pool, digest: str | None) -> int:
    """Tell the other agents that this one reloaded its config file: they re-read everything."""
    async with pool.acquire() as conn, conn.transaction():
        change_id: int = await conn.fetchval(
            """INSERT INTO config_changes (kind, key, origin)
               VALUES ($1, $2, coalesce(nullif(current_setting('ispmon.agent_id', true), ''), 'external'))
               RETURNING id""",
            RELOAD,
            digest,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(change_id))
    return change_id


class ConfigSync:
    def __init__(
        self,
        dsn: str,
        pool: asyncpg.Pool,
        agent_id: str,
        poll_interval: float,
        *,
        file_digest: str | None = None,
        debounce: float = DEBOUNCE,
        keep: timedelta = KEEP,
        reconnect_delay: float = 0.5,
    ) -> None:
        self.dsn = dsn
        self.pool = pool
        self.agent_id = agent_id
        self.poll_interval = poll_interval
        self.file_digest = file_digest
        self.debounce = debounce
        self.keep = keep
        self.reconnect_delay = reconnect_delay  # the first wait after a drop; doubles up to RECONNECT_MAX
        # At least two polls: a change committed late is still inside the window at the next one.
        self.lookback = max(2 * poll_interval, 60.0)
        self.floor = 0  # the highest id seen
        self._seen: dict[int, float] = {}  # id -> when seen (monotonic), kept for 2 x lookback
        self._pending: set[int] = set()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._lock = asyncio.Lock()
        self._apply: Applier | None = None
        self._conn: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._warned_digests: set[str | None] = set()
        self._pruned_at = 0.0
        self.stats = {"notifications": 0, "applied": 0, "plans": 0, "polls": 0, "reconnects": 0}
        self.applied_via: dict[str, int] = {}  # changes applied, by the path that found them
        self.listening = asyncio.Event()

    # -- start and stop ------------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Before the agent loads its state: what is in the table now is reflected by that load, so
        it counts as seen; what is committed later is applied once `start` runs."""
        rows = await self.pool.fetch(
            "SELECT id FROM config_changes WHERE id > $1 OR at > now() - $2::interval",
            self.floor,
            timedelta(seconds=self.lookback),
        )
        self.floor = max([self.floor, *(r["id"] for r in rows)])
        now = time.monotonic()
        self._seen.update((r["id"], now) for r in rows)

    def start(self, apply: Applier) -> None:
        self._apply = apply
        self._tasks = [
            asyncio.create_task(self._listen(), name="config-listener"),
            asyncio.create_task(self._applier(), name="config-applier"),
            asyncio.create_task(self._backstop(), name="config-backstop"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._drop_connection()

    # -- the listener ----------------------------------------------------------------------------------
    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self.stats["notifications"] += 1
        try:
            self._pending.add(int(payload))
        except ValueError:
            log.warning("config_notification_unreadable", payload=payload[:100])
            return
        self._wake.set()

    async def _listen(self) -> None:
        delay = self.reconnect_delay
        connected_once = False
        while True:
            try:
                self._lost.clear()
                conn = await asyncpg.connect(
                    self.dsn,
                    timeout=PING_TIMEOUT,
                    server_settings={"application_name": f"ispmon-listen:{self.agent_id}"},
                )
                self._conn = conn
                conn.add_termination_listener(lambda _: self._lost.set())
                await conn.add_listener(CHANNEL, self._notified)
                if connected_once:
                    self.stats["reconnects"] += 1
                log.info("config_listener_connected", reconnected=connected_once)
                connected_once = True
                delay = self.reconnect_delay
                self.listening.set()
                # What was committed while nobody listened (or before the first LISTEN).
                await self.catch_up("reconnect" if self.stats["reconnects"] else "start")
                await self._lost.wait()
                log.warning(
                    "config_listener_lost",
                    retry_in=delay,
                    effect="changes are applied by the poll until it is back",
                )
            except DB_ERRORS as exc:
                log.warning("config_listener_failed", error=str(exc)[:300], retry_in=delay)
            finally:
                self.listening.clear()
                await self._drop_connection()
            await asyncio.sleep(delay)
            delay = max(self.reconnect_delay, min(delay * 2, RECONNECT_MAX))

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(*DB_ERRORS):
                await asyncio.wait_for(conn.close(), PING_TIMEOUT)
            if not conn.is_closed():
                conn.terminate()

    async def _ping(self) -> None:
        """A connection can die without a word (a network partition): then no termination event."""
        conn = self._conn
        if conn is None:
            return
        try:
            await conn.execute("SELECT 1", timeout=PING_TIMEOUT)
        except DB_ERRORS:
            self._lost.set()

    async def _applier(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.debounce)
            self._wake.clear()
            ids, self._pending = self._pending, set()
            ids = {i for i in ids if i not in self._seen}
            if not ids:
                continue
            try:
                rows = await self.pool.fetch(
                    "SELECT id, kind, key, origin FROM config_changes WHERE id = ANY($1::bigint[])", list(ids)
                )
            except DB_ERRORS as exc:
                log.warning("config_changes_unreadable", error=str(exc)[:300], effect="the poll applies them")
                continue
            await self._apply_rows(rows, "notification")

    # -- the backstop ------------------------------------------------------------------------------------
    async def _backstop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.stats["polls"] += 1
            await self._ping()
            await self.catch_up("poll")
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                await self.prune()

    async def catch_up(self, via: str) -> None:
        """Apply whatever the table holds that this agent has not applied yet."""
        try:
            rows = await self.pool.fetch(
                """SELECT id, kind, key, origin FROM config_changes
                   WHERE id > $1 OR at > now() - $2::interval ORDER BY id""",
                self.floor,
                timedelta(seconds=self.lookback),
            )
            oldest = await self.pool.fetchval("SELECT min(id) FROM config_changes")
        except DB_ERRORS as exc:
            log.warning("config_changes_unreadable", via=via, error=str(exc)[:300])
            return
        fresh = [r for r in rows if r["id"] not in self._seen]
        if oldest is not None and self.floor and oldest > self.floor + 1 and self._apply is not None:
            # Rows after the last one seen were pruned before this agent read them.
            log.warning(
                "config_changes_pruned_unseen",
                last_seen=self.floor,
                oldest=oldest,
                effect="re-reading everything",
            )
            fresh.append({"id": 0, "kind": RELOAD, "key": None, "origin": "(pruned)"})
        await self._apply_rows(fresh, via)

    async def prune(self) -> int:
        """Drop rows older than `keep`, always leaving the newest (the next agent's starting point)."""
        self._pruned_at = time.monotonic()
        try:
            result: str = await self.pool.execute(
                """DELETE FROM config_changes WHERE at < now() - $1::interval
                   AND id < (SELECT max(id) FROM config_changes)""",
                self.keep,
            )
        except DB_ERRORS as exc:
            log.warning("config_changes_prune_failed", error=str(exc)[:300])
            return 0
        return int(result.split()[-1])

    # -- applying -------------------------------------------------------------------------------------------
    async def _apply_rows(self, rows: list[Any], via: str) -> None:
        if not rows or self._apply is None:
            return
        async with self._lock:
            rows = [r for r in rows if r["id"] not in self._seen]  # the other path may have applied them
            if not rows:
                return
            changes = [Change(r["id"], r["kind"], r["key"], r["origin"]) for r in rows]
            todo = plan(changes, self.agent_id)
            try:
                done = await self._apply(todo) if todo else {}
            except DB_ERRORS as exc:
                # Not marked seen: the next poll applies them again (every update is a re-read).
                log.warning("config_apply_failed", via=via, error=str(exc)[:300], retry="at the next poll")
                return
            except Exception:  # a bug: the listener and the poll must go on; retried at the next poll
                log.error("config_apply_crashed", via=via, kinds=sorted(todo.kinds), exc_info=True)
                return
            now = time.monotonic()
            for change in changes:
                if change.id:
                    self._seen[change.id] = now
                    self.floor = max(self.floor, change.id)
            self._forget_old(now)
            if todo:
                self.stats["applied"] += todo.changes
                self.stats["plans"] += 1
                self.applied_via[via] = self.applied_via.get(via, 0) + todo.changes
                log.info(
                    "config_applied",
                    via=via,
                    changes=todo.changes,
                    origins=sorted(todo.origins),
                    last_id=max(c.id for c in changes),
                    **done,
                )
                self._check_digests(todo)
            if todo.unknown:
                log.warning(
                    "config_change_kinds_unknown",
                    kinds=sorted(todo.unknown),
                    effect="ignored by this version",
                )

    def _forget_old(self, now: float) -> None:
        horizon = now - 2 * self.lookback
        if len(self._seen) > 1000 or next(iter(self._seen.values()), now) < horizon:
            self._seen = {i: t for i, t in self._seen.items() if t >= horizon}

    def _check_digests(self, todo: Plan) -> None:
        """A reload elsewhere re-reads the rows here; what only the file holds (its [alerting]
        section, report schedules, settings) must be the same file on every agent: say when not."""
        for digest in todo.reload_digests - {self.file_digest} - self._warned_digests:
            self._warned_digests.add(digest)
            log.warning(
                "config_file_differs",
                announced=digest,
                ours=self.file_digest,
                effect="channels, rules and escalation policies of the file, report schedules and settings "
                "come from each agent's own file: give every agent the same file and reload each",
            )
