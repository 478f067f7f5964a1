"""The lease loop: takes or renews the singleton lease on its period and starts or stops the work
that runs only on the holder (`on_gain` / `on_loss`), following `ispmon.agents.leases`'s decisions.

Each statement is bounded by the time left in the tenure (a hung connection cannot keep this agent
acting past its deadline), and the loop wakes at the deadline itself, so a database that stops
answering ends the work by time. `close` stops the work and releases the lease at once, so the
next agent takes it within one renewal period instead of waiting for the TTL. One line is logged
when this agent gains or loses the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg
import structlog

from ispmon.agents import lease_store
from ispmon.agents.leases import (
    LEADER_LEASE,
    Change,
    Granted,
    LeaseTimes,
    Tenure,
    attempt_timeout,
    expired,
    holds,
    next_attempt,
    renewed,
)

log = structlog.get_logger("ispmon.agents")

Hook = Callable[[], Awaitable[None]]

# A stopping daemon waits this long at most for the release (else the lease expires by itself).
RELEASE_TIMEOUT = 2.0


async def _nothing() -> None:
    return None


class Lease:
    def __init__(
        self,
        pool: asyncpg.Pool,
        holder: str,
        times: LeaseTimes,
        *,
        name: str = LEADER_LEASE,
        on_gain: Hook = _nothing,
        on_loss: Hook = _nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.holder = holder
        self.times = times
        self.name = name
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.clock = clock
        self.tenure: Tenure | None = None
        self.working = False  # on_gain ran (and on_loss not since)
        self._last_sent: float | None = None
        self._first = True  # this process's first attempt reclaims a lease left by our previous run
        self._failing = False
        self._restart = False  # the epoch changed under running work: stop it before starting again
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def holds(self) -> bool:
        """True while this agent may do the singleton work (checked at the moment of acting)."""
        return holds(self.tenure, self.clock())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"lease:{self.name}")

    async def close(self) -> None:
        """Stop the work, then give the lease up (if the database answers; else it expires)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        tenure = self.tenure
        # Forced: a close during on_gain may have left part of the work started.
        await self._stop_work(force=True)
        self.tenure = None
        if tenure is None or self._failing:
            return  # the database is not answering: the lease expires on its own
        try:
            released = await asyncio.wait_for(
                lease_store.release(self.pool, self.name, self.holder, tenure.epoch), RELEASE_TIMEOUT
            )
        except Exception as exc:  # a stopping daemon goes on stopping: the lease expires by itself
            log.warning("lease_release_failed", lease=self.name, error=str(exc) or type(exc).__name__)
            return
        log.info("lease_released", lease=self.name, holder=self.holder, epoch=tenure.epoch, released=released)

    async def step(self) -> None:
        """One take-or-renew and what follows from it (the loop's body; tests call it directly)."""
        now = self.clock()
        self._apply(*expired(self.tenure, now), reason="deadline")
        await self._settle()
        sent = self.clock()
        self._last_sent = sent
        epoch = self.tenure.epoch if self.tenure is not None else (-1 if self._first else None)
        try:
            got = await asyncio.wait_for(
                lease_store.take_or_renew(self.pool, self.name, self.holder, self.times.ttl, epoch),
                attempt_timeout(self.tenure, sent, self.times),
            )
        except Exception as exc:  # unreachable, timed out, refused: all a failed renewal
            if not self._failing:  # once per failing spell
                log.warning("lease_renew_failed", lease=self.name, error=str(exc) or type(exc).__name__,
                            holding=self.tenure is not None)  # fmt: skip
            self._failing = True
            self._apply(*expired(self.tenure, self.clock()), reason="renewal failed")
            await self._settle()
            return
        self._first = False
        if self._failing:
            log.info("lease_renew_recovered", lease=self.name)
        self._failing = False
        granted = Granted(got) if got is not None else None
        self._apply(*renewed(self.tenure, granted, sent, self.times), reason="taken by another agent")
        # The reply itself may come after the deadline it would extend from an older send.
        self._apply(*expired(self.tenure, self.clock()), reason="deadline")
        await self._settle()

    def _apply(self, tenure: Tenure | None, change: Change | None, *, reason: str) -> None:
        old = self.tenure
        self.tenure = tenure
        if change is Change.LOST:
            log.warning("lease_lost", lease=self.name, holder=self.holder, epoch=old.epoch if old else None,
                        reason=reason)  # fmt: skip
        elif change is Change.GAINED and tenure is not None:
            log.info("lease_gained", lease=self.name, holder=self.holder, epoch=tenure.epoch)
        elif change is Change.RETAKEN and tenure is not None:
            log.warning("lease_retaken", lease=self.name, holder=self.holder, epoch=tenure.epoch,
                        old_epoch=old.epoch if old else None)  # fmt: skip
            self._restart = True

    async def _settle(self) -> None:
        """Make the work match the tenure: stopped without one, started (once per epoch) with one."""
        if self.tenure is None or self._restart:
            self._restart = False
            await self._stop_work()
        if self.tenure is not None and not self.working:
            remaining = self.tenure.deadline - self.clock()
            try:
                # Bounded: starting must not outlive the tenure it was started for.
                await asyncio.wait_for(self.on_gain(), max(0.05, remaining))
                self.working = True
            except Exception:
                log.error("singleton_start_failed", lease=self.name, exc_info=True)
                await self._stop_work(force=True)
                # Held without the work, nobody would do it: give it up for any agent to take.
                tenure, self.tenure = self.tenure, None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        lease_store.release(self.pool, self.name, self.holder, tenure.epoch),
                        self.times.renew_every,
                    )

    async def _stop_work(self, force: bool = False) -> None:
        if not self.working and not force:
            return
        self.working = False
        try:
            await self.on_loss()
        except Exception:
            log.error("singleton_stop_failed", lease=self.name, exc_info=True)

    async def _run(self) -> None:
        while True:
            delay = next_attempt(self.tenure, self._last_sent, self.clock(), self.times)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            try:
                await self.step()
            except Exception:  # a bug of ours must not end the loop: the deadline still has to stop the work
                log.error("lease_step_failed", lease=self.name, exc_info=True)
                self._apply(*expired(self.tenure, self.clock()), reason="deadline")
                with contextlib.suppress(Exception):
                    await self._settle()
