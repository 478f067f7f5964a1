"""The agent registry: this agent's row in `agents`, its heartbeat, and the membership it reads.

One round trip a second (the heartbeat writes this agent's row and reads every agent's), so
coordination costs each agent one small query a second whatever the number of endpoints. Times
are the database's clock (`now()`), and this agent keeps the offset between that clock and its
own, so agents on hosts whose clocks disagree still apply a membership change at the same instant.

Fencing: an agent that has not completed a heartbeat for AGENT_DEAD_AFTER minus two heartbeat
periods (counted from when it sent the last one that succeeded) owns nothing until it has one
again; the others take its endpoints only once AGENT_DEAD_AFTER has passed since that heartbeat's
timestamp, so the two never check the same endpoint. Coming back, it joins afresh (its join takes
effect after the settle time, like a new agent's).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
import structlog

from ispmon.agents.ownership import AgentRow, dead_at, members, next_change, owner

log = structlog.get_logger("ispmon.agents")

HEARTBEAT_SQL = """
WITH me AS (
    INSERT INTO agents AS a (id, location, version, host, pid, api_url, joined_at, last_heartbeat, stats)
    VALUES ($1, $2, $3, $4, $5, $6, now(), now(), $7::jsonb)
    ON CONFLICT (id) DO UPDATE SET
        location = EXCLUDED.location, version = EXCLUDED.version, host = EXCLUDED.host,
        pid = EXCLUDED.pid, api_url = EXCLUDED.api_url, stats = EXCLUDED.stats,
        -- Dead or stopped meanwhile (the others have taken its share): it joins again, and waits
        -- out the settle time like a new agent.
        joined_at = CASE WHEN a.stopped_at IS NOT NULL OR a.location <> EXCLUDED.location
                              OR a.last_heartbeat + make_interval(secs => $8) <= now()
                         THEN now() ELSE a.joined_at END,
        last_heartbeat = now(), stopped_at = NULL
    RETURNING id, location, joined_at, last_heartbeat, stopped_at
)
SELECT id, location, extract(epoch FROM joined_at)::float8 AS joined_at,
       extract(epoch FROM last_heartbeat)::float8 AS last_heartbeat,
       extract(epoch FROM stopped_at)::float8 AS stopped_at,
       extract(epoch FROM now())::float8 AS db_now
FROM me
UNION ALL
SELECT id, location, extract(epoch FROM joined_at)::float8, extract(epoch FROM last_heartbeat)::float8,
       extract(epoch FROM stopped_at)::float8, NULL
FROM agents WHERE id <> $1
"""


def _quiet(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class AgentRegistry:
    """This agent's membership in its location, and who owns which endpoint."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        agent_id: str,
        location: str,
        dead_after: float,
        version: str,
        single: bool = False,
    ) -> None:
        self.pool = pool
        self.agent_id = agent_id
        self.location = location
        self.dead_after = dead_after
        self.version = version
        self.interval = min(1.0, dead_after / 10)
        # A join takes effect this long after the new row was written: by then every other agent
        # has either read the row (and hands its endpoints over at the same instant) or has
        # fenced itself (no heartbeat for dead_after - 2 intervals: it checks nothing), so a loaded
        # agent that did not hear of the join in time cannot check what the new one now checks.
        # An embedded database has one agent by construction: nothing to wait for.
        self.settle = 0.0 if single else dead_after - self.interval
        self.api_url: str | None = None
        self.stats: Callable[[], dict[str, Any]] = dict
        self.rows: list[AgentRow] = []
        self.offset = 0.0  # database clock minus this host's
        self.generation = 0  # grows with each change of membership
        # The database time at which the latest change took effect (a listener applying it late
        # still knows when it should have): the newest join or end that is not in the future.
        self.changed_at = 0.0
        self._recomputed_at = -math.inf
        self.listeners: list[Callable[[], None]] = []
        self._members: dict[str, tuple[str, ...]] = {}
        self._change_at = math.inf  # loop time of the next computed change
        self._timer: asyncio.TimerHandle | None = None
        self._last_ok_sent = -math.inf  # loop time at which the last successful heartbeat was sent
        self._fenced = True
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    # -- clocks ------------------------------------------------------------------------------------
    def db_time(self) -> float:
        """Seconds since the epoch on the database's clock (this host's, corrected)."""
        return time.time() + self.offset

    # -- the heartbeat -----------------------------------------------------------------------------
    async def heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        sent, wall_sent = loop.time(), time.time()
        rows = await self.pool.fetch(
            HEARTBEAT_SQL,
            self.agent_id,
            self.location,
            self.version,
            socket.gethostname(),
            os.getpid(),
            self.api_url,
            self.stats(),
            self.dead_after,
        )
        wall_back = time.time()
        self._last_ok_sent = sent
        self.offset = rows[0]["db_now"] - (wall_sent + wall_back) / 2
        self.rows = [
            AgentRow(r["id"], r["location"], r["joined_at"], r["last_heartbeat"], r["stopped_at"])
            for r in rows
        ]
        if self._failing:
            self._failing = False
            log.info("agent_heartbeat_restored", agent_id=self.agent_id)
        self.recompute()

    async def start(self) -> None:
        """The first heartbeat (registers this agent), then one per `interval`."""
        await self.heartbeat()
        me = next((r for r in self.rows if r.id == self.agent_id), None)
        now = self.db_time()
        others = [
            r
            for r in self.rows
            if r.id != self.agent_id and r.location == self.location and now < dead_at(r, self.dead_after)
        ]
        if self.settle and me is not None and me.joined_at > now - self.settle and not others:
            # Alone in its location: nobody to hand anything over, so it need not wait out the
            # settle time (its join is dated back by it, so any agent reading the row agrees).
            await self.pool.execute(
                "UPDATE agents SET joined_at = joined_at - make_interval(secs => $2) WHERE id = $1",
                self.agent_id,
                self.settle,
            )
            await self.heartbeat()
        log.info(
            "agent_registered",
            agent_id=self.agent_id,
            location=self.location,
            agents=len(self.rows),
            dead_after=self.dead_after,
            settle=self.settle,
        )
        self._task = asyncio.create_task(self._run(), name="agent-heartbeat")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.wait_for(self.heartbeat(), timeout=max(self.interval, self.dead_after / 4))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if not self._failing:
                    self._failing = True
                    log.error("agent_heartbeat_failed", agent_id=self.agent_id, error=_quiet(exc))
                self.recompute()
            except Exception:
                log.error("agent_heartbeat_crashed", exc_info=True)

    async def close(self) -> None:
        """A clean stop: the others take this agent's share at their next heartbeat."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._timer is not None:
            self._timer.cancel()
        try:
            # Bounded: with the database gone the stop must not wait for it (the others then see
            # the heartbeat run out instead).
            await asyncio.wait_for(
                self.pool.execute("UPDATE agents SET stopped_at = now() WHERE id = $1", self.agent_id),
                timeout=3.0,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("agent_stop_not_recorded", agent_id=self.agent_id, error=_quiet(exc))

    # -- membership --------------------------------------------------------------------------------
    def fenced(self) -> bool:
        loop_now = asyncio.get_running_loop().time()
        return loop_now - self._last_ok_sent > self.dead_after - 2 * self.interval

    def recompute(self) -> None:
        """Membership as of now; the listeners hear of a change. Schedules the next known change."""
        loop = asyncio.get_running_loop()
        now = self.db_time()
        fenced = self.fenced()
        current = {} if fenced else members(self.rows, now, self.dead_after, self.settle)
        if fenced != self._fenced:
            self._fenced = fenced
            if fenced:
                log.error(
                    "agent_fenced",
                    agent_id=self.agent_id,
                    effect="owns no endpoint until a heartbeat succeeds; the other agents take them over",
                )
        upcoming = next_change(self.rows, now, self.dead_after, self.settle)
        fence_at = self._last_ok_sent + self.dead_after - 2 * self.interval
        at = min(
            loop.time() + (upcoming - now) if upcoming is not None else math.inf,
            fence_at if not fenced else math.inf,
        )
        if at != self._change_at:
            self._change_at = at
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(at, self.recompute) if at != math.inf else None
        previous, self._recomputed_at = self._recomputed_at, now
        if current != self._members:
            instants = [
                x
                for row in self.rows
                for x in (row.joined_at + self.settle, dead_at(row, self.dead_after))
                if previous < x <= now
            ]
            # At this process's first look there is nothing it could have applied late (a restart
            # after kill -9 must not "catch up" grid points its previous life already checked).
            self.changed_at = max(instants) if instants and previous != -math.inf else now
            mine_before = self._members.get(self.location, ())
            self._members = current
            self.generation += 1
            mine = current.get(self.location, ())
            if mine != mine_before:
                log.info(
                    "agent_membership_changed",
                    agent_id=self.agent_id,
                    location=self.location,
                    agents=list(mine),
                    member=self.agent_id in mine,
                )
            for listener in self.listeners:
                listener()

    def poke(self) -> None:
        """Before acting on ownership: apply a change that is due but whose timer has not run yet
        (a busy loop runs timers late)."""
        if asyncio.get_running_loop().time() >= self._change_at:
            self.recompute()

    def members_of(self, location: str) -> tuple[str, ...]:
        return self._members.get(location, ())

    def live_locations(self) -> set[str]:
        return set(self._members)

    def owns(self, key: str, locations: Sequence[str] | None) -> bool:
        """Whether this agent checks `key` (an endpoint id) now."""
        if locations and self.location not in locations:
            return False
        agents = self._members.get(self.location, ())
        if self.agent_id not in agents:
            return False
        return owner(key, agents) == self.agent_id
