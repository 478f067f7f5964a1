"""The quota pass, incremental: every 30 s, look only at the customers whose figure can have moved.

A customer's quota percentage changes for four reasons only, and each has its own source:

* **its usage grew**: the accounting commit (wrapped by `QuotaTracker.wrap`) hands over the
  (NAS, Acct-Session-Id) keys of every batch it committed, in memory, after the commit returned;
  the pass maps them to customers through the sessions table (unique index). A cheap set insert
  per record, and nothing on the commit's SQL;
* **its definition changed** (quota, thresholds, period, a new customer, `POST /customers/bulk`):
  `customers.updated_at` after the previous pass's database time, less a margin for transactions
  that started before that time and committed after it;
* **its period ended**: each customer looked at is kept in a heap by the end of its period, and
  is due again then (counters restart, the quota alert clears, a CoA restriction lifts);
* **an alert rule is part-way** (a breach not firing yet, a clear not complete): the observer
  says so and the customer is looked at again next pass.

With several agents the pass runs on the singleton lease's holder only, while every agent's
listener commits: when `others` says other agents are live, the pass also reads the customers of
the accounting records numbered since the pass before the previous one (a primary-key range; the
extra pass of lag covers a commit that took its id before one pass read the highest id and
committed after it).

Nothing in memory survives a restart, so the first pass looks at every customer with a quota:
usage committed just before a crash, and answered, is judged then. A full pass also runs when the
quota alert rules change (a new rule must see customers already over it) and, as a safety net
against anything written behind the daemon's back, every `full_every` seconds. A full pass is the
same batched check over every id, in chunks, not a statement per customer.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from ispmon.usage.enforce import Enforcer

log = structlog.get_logger("ispmon.usage")

QUOTA_PASS_SECONDS = 30.0
FULL_PASS_SECONDS = 3600.0
# A customer written by a transaction that began before the previous pass read the clock, and
# committed after, carries an updated_at before that clock: looked for again for this long.
UPDATED_MARGIN = timedelta(minutes=2)
CHUNK = 1000

Commit = Callable[[Sequence[Any]], Awaitable[Any]]


@dataclass
class PassStats:
    looked_at: int = 0
    crossed: int = 0
    full: bool = False


class QuotaTracker:
    def __init__(
        self,
        enforcer: Enforcer,
        *,
        full_every: float = FULL_PASS_SECONDS,
        rules_changed: Callable[[], bool] | None = None,
        others: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.enforcer = enforcer
        self.pool: asyncpg.Pool = enforcer.pool
        self.full_every = full_every
        self.rules_changed = rules_changed
        self.sessions: set[tuple[str, str]] = set()  # (nas_id, session_key) committed since the last pass
        self.customers: set[str] = set()  # looked at again next pass (observer asked; a pass failed)
        self.ends: dict[str, datetime] = {}  # customer -> the end of the period it was last looked at in
        self._heap: list[tuple[datetime, str]] = []
        self._full_due = True  # a fresh start: nothing in memory says who moved before it
        self._full_at = time.monotonic()
        self._since: datetime | None = None  # database time at the previous pass
        # False on an agent that does not hold the singleton lease: its listener's keys would pile
        # up with no pass to read them (the holder's first pass is a full one).
        self.tracking = True
        self.others = others  # are other agents' listeners committing too? (usage.wiring asks the registry)
        self._marks: list[int] = []  # the highest acct_records id at each of the last two passes

    # -- fed by the accounting commit ------------------------------------------------------------
    def wrap(self, commit: Commit) -> Commit:
        """`commit`, telling the tracker which sessions each batch touched once it returned (or
        failed: a COMMIT whose acknowledgement was lost may still have landed)."""

        async def tracked(batch: Sequence[Any]) -> Any:
            try:
                return await commit(batch)
            finally:
                self.touched(batch)

        return tracked

    def full_due(self) -> None:
        """The next pass looks at everyone (this tracker's memory may have missed commits)."""
        self._full_due = True

    def touched(self, batch: Sequence[Any]) -> None:
        if not self.tracking:
            return
        for item in batch:
            key = item.record.session_key
            if key:  # Accounting-On/Off carry no session and change nobody's usage
                self.sessions.add((item.nas_id, key))

    # -- the pass --------------------------------------------------------------------------------
    async def run_pass(self, now: datetime | None = None) -> PassStats:
        """Look at the customers due (all of them on a full pass); what they cross is planned in
        the audit trail, and `enforce_quotas` sends it. What was taken for this pass is put back
        if it fails, so a database outage loses nobody."""
        if self.rules_changed is not None and self.rules_changed():
            self._full_due = True
        if time.monotonic() - self._full_at >= self.full_every:
            self._full_due = True
        full, sessions, customers = self._full_due, self.sessions, self.customers
        self.sessions, self.customers = set(), set()
        marks = self._marks
        ids: list[str] = []
        try:
            db_now: datetime = await self.pool.fetchval("SELECT now()")
            mark: int = await self.pool.fetchval("SELECT coalesce(max(id), 0) FROM acct_records")
            self._marks = [*marks, mark][-2:]
            when = now or db_now
            if full:
                ids = [r["id"] for r in await self.pool.fetch(
                    "SELECT id FROM customers WHERE spec ? 'quota_bytes' AND spec->'quota_bytes' <> 'null' ORDER BY id"
                )]  # fmt: skip
            else:
                due = (
                    customers
                    | await self._from_sessions(sessions)
                    | await self._changed()
                    | self._period_ended(when)
                    | await self._flow_sourced()
                    | await self._from_other_agents(marks)
                )
                ids = sorted(due)
            stats = PassStats(full=full)
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i : i + CHUNK]
                checked = await self.enforcer.check_many(chunk, when)
                for customer_id in chunk:
                    self._remember(customer_id, checked.get(customer_id))
                stats.looked_at += len(chunk)
                stats.crossed += sum(len(c.crossed) for c in checked.values())
        except BaseException:
            self._marks = marks
            self.sessions |= sessions
            self.customers |= customers | set(ids)
            if full:
                self._full_due = True
            raise
        if full:
            self._full_due, self._full_at = False, time.monotonic()
        self._since = db_now
        return stats

    async def _from_sessions(self, sessions: set[tuple[str, str]]) -> set[str]:
        if not sessions:
            return set()
        keys = list(sessions)
        rows = await self.pool.fetch(
            """SELECT DISTINCT s.customer_id FROM radius_sessions s
               JOIN unnest($1::text[], $2::text[]) AS k(n, k) ON s.nas_id = k.n AND s.session_key = k.k
               WHERE s.customer_id IS NOT NULL""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {r["customer_id"] for r in rows}

    async def _from_other_agents(self, marks: list[int]) -> set[str]:
        """Customers of the records numbered after the mark of the pass before the previous one,
        when other agents are live (their listeners' commits never pass through this tracker)."""
        if not marks or self.others is None or not await self.others():
            return set()
        rows = await self.pool.fetch(
            "SELECT DISTINCT customer_id FROM acct_records WHERE id > $1 AND customer_id IS NOT NULL",
            marks[0],
        )
        return {r["customer_id"] for r in rows}

    async def _flow_sourced(self) -> set[str]:
        """Customers whose quota counts flows (`quota_source = "flow"`, an opt-in): their use grows
        with the collector's flushes, which the accounting commit never sees, so every pass looks."""
        rows = await self.pool.fetch(
            """SELECT id FROM customers WHERE spec->>'quota_source' = 'flow'
               AND spec ? 'quota_bytes' AND spec->'quota_bytes' <> 'null'"""
        )
        return {r["id"] for r in rows}

    async def _changed(self) -> set[str]:
        if self._since is None:
            return set()
        rows = await self.pool.fetch(
            "SELECT id FROM customers WHERE updated_at > $1", self._since - UPDATED_MARGIN
        )
        return {r["id"] for r in rows}

    def _period_ended(self, now: datetime) -> set[str]:
        due: set[str] = set()
        while self._heap and self._heap[0][0] <= now:
            end, customer_id = heapq.heappop(self._heap)
            if self.ends.get(customer_id) == end:  # not a stale entry of an earlier look
                due.add(customer_id)
        return due

    def _remember(self, customer_id: str, checked: Any) -> None:
        if checked is None:  # gone, or no quota any more: nothing to wait for
            self.ends.pop(customer_id, None)
            return
        if checked.again:
            self.customers.add(customer_id)
        if self.ends.get(customer_id) != checked.period_end:
            self.ends[customer_id] = checked.period_end
            heapq.heappush(self._heap, (checked.period_end, customer_id))


async def enforce_quotas(tracker: QuotaTracker, every: float = QUOTA_PASS_SECONDS) -> None:
    """Every `every` seconds: first what a previous run left pending (sent again, same
    Acct-Session-Id), then the customers due, then what that planned."""
    enforcer = tracker.enforcer
    while True:
        try:
            await enforcer.dispatch()
            stats = await tracker.run_pass()
            if stats.full:
                log.info("quota_full_pass", customers=stats.looked_at, crossed=stats.crossed)
            await enforcer.dispatch()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("quota_pass_failed", error=str(exc))
        await asyncio.sleep(every)
