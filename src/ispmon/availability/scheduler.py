"""The scheduler: when each endpoint's check runs.

* Each endpoint keeps a fixed cadence: due times are ``first + k * interval`` (no drift over hours,
  however long the checks take).
* First runs are spread over the interval by a hash of the id, so 10,000 endpoints added at once
  do not all fire at :00 (and the spread is the same after a restart). Given a wall clock, the
  hash places each endpoint on a grid of wall-clock times (``phase + k * interval``) that every
  agent sharing the endpoints computes alike: an endpoint handed from one agent to another at time
  T is checked by the old one before T and the new one from the first grid point after T, never
  twice in one interval.
* One heap and one dispatcher task for all endpoints (not a task per endpoint: an idle endpoint costs
  a heap entry, not a coroutine frame).
* A global bound on checks in flight. A check that is still running when its next one is due, or
  that could only start late because the bound was reached, is skipped and counted rather than
  queued: queueing is how monitors collapse under load.
* It measures its own lag (dispatch time minus due time) in a ring buffer.

The scheduler knows nothing about probes: it calls `run(key, due)` and awaits it in a task.
"""

from __future__ import annotations

import asyncio
import heapq
import zlib
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("ispmon.availability.scheduler")

RunFn = Callable[[str, float], Awaitable[None]]

# A check may start up to this long before its due time, so that one wake-up of the dispatcher
# starts every check due within the next millisecond instead of waking once per check. Lag is
# recorded as 0 for those.
EARLY = 0.001
# Checks started per pass before the dispatcher yields to the loop.
BURST = 32


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(slots=True)
class SchedulerStats:
    dispatched: int = 0
    skipped_overrun: int = 0  # previous check of the endpoint still running
    skipped_late: int = 0  # could not start within the lateness bound (overload: shed, not queued)
    completed: int = 0
    inflight: int = 0


class _Slot:
    __slots__ = ("catch_up", "generation", "interval", "running")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.generation = 0
        self.running = False
        # The first run may start late without being shed: an endpoint taken over from another
        # agent whose hand-over instant this agent applied late (its grid point is already past).
        self.catch_up = False


def spread_offset(key: str, interval: float) -> float:
    """Deterministic offset in [0, interval) from the key (crc32 is fast and stable across runs)."""
    return (zlib.crc32(key.encode()) / 2**32) * interval


class Scheduler:
    def __init__(
        self,
        run: RunFn,
        *,
        max_concurrency: int = 500,
        max_lateness: float = 0.25,
        lag_samples: int = 8192,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self._run = run
        # Seconds since the epoch on the clock the agents share (agents/: the database's).
        self.wall_clock = wall_clock
        self.max_concurrency = max_concurrency
        self.max_lateness = max_lateness
        self.stats = SchedulerStats()
        self._heap: list[tuple[float, int, str, int]] = []
        self._slots: dict[str, _Slot] = {}
        self._seq = 0
        self._generation = 0
        # The dispatcher sleeps on a bare future woken by loop.call_at (cheaper than asyncio.timeout
        # around an Event, which showed up in profiles at 1,000 dispatches/s); add() wakes it early.
        self._waiter: asyncio.Future[None] | None = None
        self._slot_free = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._lag = array("d", bytes(8 * lag_samples))
        self._lag_n = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._skip_logged_at = float("-inf")

    # -- the registry -----------------------------------------------------------------------------
    def add(
        self, key: str, interval: float, first_due: float | None = None, *, since: float | None = None
    ) -> None:
        """Add or reschedule `key`. A changed interval takes effect at once (new spread offset).

        `since` (wall-clock time, with `wall_clock` set): the first run is the first grid point at
        or after it, even if that is already past (it then runs at once, not shed)."""
        loop = self._loop or asyncio.get_running_loop()
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(interval)
        slot.interval = interval
        # Invalidates heap entries of the old schedule. Counted per scheduler, not per slot: a key
        # removed and added again within an interval (an endpoint handed away and back, paused and
        # resumed) gets a new slot, whose own count would restart at the old entry's and revive it
        # as a second chain of checks beside the new one.
        self._generation += 1
        slot.generation = self._generation
        slot.catch_up = False
        if first_due is not None:
            due = first_due
        elif self.wall_clock is not None and since is not None:
            wall_now = self.wall_clock()
            due = loop.time() - (wall_now - since) + (spread_offset(key, interval) - since) % interval
            slot.catch_up = due < loop.time()
        elif self.wall_clock is not None:
            due = loop.time() + (spread_offset(key, interval) - self.wall_clock()) % interval
        else:
            due = loop.time() + spread_offset(key, interval)
        self._push(due, key, slot.generation)

    def remove(self, key: str) -> None:
        self._slots.pop(key, None)  # its heap entries are discarded when popped

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def _push(self, due: float, key: str, generation: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key, generation))
        if self._waiter is not None and self._heap[0][2] == key:
            _wake(self._waiter)

    # -- measurement -------------------------------------------------------------------------------
    def _record_lag(self, lag: float) -> None:
        self._lag[self._lag_n % len(self._lag)] = lag
        self._lag_n += 1

    def lag_percentiles(self, *qs: float) -> list[float]:
        """Lag percentiles in seconds over the last `lag_samples` dispatches."""
        n = min(self._lag_n, len(self._lag))
        if n == 0:
            return [0.0 for _ in qs]
        data = sorted(self._lag[:n])
        return [data[min(n - 1, int(q * n))] for q in qs]

    def reset_lag(self) -> None:
        self._lag_n = 0

    # -- the dispatcher ----------------------------------------------------------------------------
    async def run(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        heap = self._heap
        burst = 0
        while True:
            if not heap:
                await self._sleep(None)
                continue
            due, _, key, generation = heap[0]
            now = loop.time()
            if due > now + EARLY:
                burst = 0
                await self._sleep(due)
                continue
            heapq.heappop(heap)
            slot = self._slots.get(key)
            if slot is None or slot.generation != generation:
                continue  # removed or rescheduled
            next_due = due + slot.interval
            if next_due <= now:
                # Fell more than a whole interval behind (suspend, clock jump): rejoin the grid ahead.
                missed = int((now - due) // slot.interval)
                next_due = due + (missed + 1) * slot.interval
            self._push(next_due, key, generation)
            if slot.running:
                self.stats.skipped_overrun += 1
                continue
            if self.stats.inflight >= self.max_concurrency:
                await self._wait_for_slot()
                now = loop.time()
            # Load shedding: a check that cannot start within the lateness bound is skipped and
            # counted, whether the concurrency bound or a saturated CPU held it up. Started late, it
            # would measure the monitor's own delay as the target's response time (false DEGRADED or
            # DOWN) and push every later check further back.
            if now - due > min(self.max_lateness, slot.interval / 2) and not slot.catch_up:
                self.stats.skipped_late += 1
                if now - self._skip_logged_at > 60:
                    self._skip_logged_at = now
                    log.warning(
                        "checks_skipped_overload",
                        late_ms=round((now - due) * 1000, 1),
                        skipped_late_total=self.stats.skipped_late,
                        inflight=self.stats.inflight,
                        hint="more checks are due than this host can run: lengthen intervals or add a core",
                    )
                continue
            slot.catch_up = False
            self._record_lag(max(0.0, now - due))
            self._start(key, slot, due)
            burst += 1
            if burst >= BURST:
                # Let the checks just started (and everything else) run before starting more: a
                # dispatcher that started thousands in one pass would make the next loop iteration
                # take about a second under load, and the loop would settle into one-second batches.
                burst = 0
                await asyncio.sleep(0)

    async def _sleep(self, until: float | None) -> None:
        """Sleep until `until` (loop time), or until add() schedules something earlier."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_at(until, _wake, waiter) if until is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if handle is not None:
                handle.cancel()

    async def _wait_for_slot(self) -> None:
        while self.stats.inflight >= self.max_concurrency:
            self._slot_free.clear()
            await self._slot_free.wait()

    def _start(self, key: str, slot: _Slot, due: float) -> None:
        slot.running = True
        self.stats.inflight += 1
        self.stats.dispatched += 1
        task = asyncio.get_running_loop().create_task(self._execute(key, slot, due))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, key: str, slot: _Slot, due: float) -> None:
        try:
            await self._run(key, due)
        except Exception:
            # The task's exception would never be retrieved (nobody awaits these tasks): log it here.
            log.error("scheduled_run_failed", key=key, exc_info=True)
        finally:
            slot.running = False
            self.stats.inflight -= 1
            self.stats.completed += 1
            self._slot_free.set()

    async def close(self) -> None:
        """Cancel checks in flight (used at shutdown, after the dispatcher task is cancelled)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
