"""`expected_response_pattern` matching: in worker threads, never on the event loop, with one time
budget per check.

A catastrophic pattern (``(a+)+$`` against a long body) runs until the regex time limit stops it.
On the event loop thread that is 100 ms in which no other endpoint is checked, the API does not
answer and timers fire late; retried, it was that per attempt. So:

* Searches run in a small pool of threads of their own (`PatternWorkers`), not in the loop's
  default executor, which DNS lookups and other blocking work share. The `regex` module releases
  the GIL while it matches (``concurrent=True``), so the loop keeps running meanwhile.
* The time limit is a budget per check (`CheckBudget`, carried by `run_check` in a context
  variable): every search of the check, over every attempt, draws on the same
  `ProbeContext.pattern_timeout`. A check whose budget is spent reports ``pattern_timeout``.
  (regex measures its limit in CPU time of the searching thread, so on a host whose cores are
  busy a search that hits the limit takes longer than that on the clock.)
* Waiting for a free worker is bounded too (`ProbeContext.pattern_wait` per check). When every
  worker stays busy that long, the check's result says so (`PatternOutcome.BUSY`): that is our
  capacity, not the target's failure.

The data searched is always a `bytes` copy: with the GIL released the worker reads the buffer
while the loop may go on, and the TCP probe's receive buffer is a growing `bytearray`.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from time import perf_counter
from typing import Any


class PatternOutcome(Enum):
    MATCH = "match"
    MISMATCH = "mismatch"
    TIMEOUT = "timeout"  # the check's regex budget ran out: report pattern_timeout
    BUSY = "busy"  # no worker became free in time: our capacity, not the target's fault


@dataclass(slots=True)
class CheckBudget:
    """What one check may still spend on pattern work, and what the current attempt has spent."""

    pattern_left: float  # regex seconds left for the whole check
    wait_left: float  # seconds the check may still wait for a free worker
    attempt_spent: float = 0.0  # wall seconds of pattern work (waiting + matching) in this attempt


_budget: ContextVar[CheckBudget | None] = ContextVar("ispmon_check_budget", default=None)


def current_budget() -> CheckBudget | None:
    """The budget of the check running in this task, if `run_check` (or run_attempt) set one."""
    return _budget.get()


class _BudgetScope:
    # A class, not @contextlib.contextmanager: every check enters one, and the generator-based
    # manager cost a generator, a wrapper object and two extra frames per check.
    __slots__ = ("_token", "budget")

    def __init__(self, budget: CheckBudget) -> None:
        self.budget = budget

    def __enter__(self) -> CheckBudget:
        self._token = _budget.set(self.budget)
        return self.budget

    def __exit__(self, *_: object) -> None:
        _budget.reset(self._token)


def check_budget(pattern_seconds: float, wait_seconds: float) -> _BudgetScope:
    """Make a fresh `CheckBudget` the current one for the duration of the ``with`` block."""
    return _BudgetScope(CheckBudget(pattern_seconds, wait_seconds))


def _search(pattern: Any, data: bytes, limit: float) -> tuple[bool | None, float]:
    """In a worker thread: (found, seconds taken); found is None when the time limit stopped it."""
    start = perf_counter()
    try:
        found: bool | None = pattern.search(data, timeout=limit, concurrent=True) is not None
    except TimeoutError:
        found = None
    return found, perf_counter() - start


class PatternWorkers:
    """A fixed number of threads for pattern searches, and a semaphore in front of them.

    The semaphore (not the executor's queue) is where checks wait, so a waiting check can give
    up cleanly and every search that is submitted starts at once: the regex time limit then
    measures matching, not queueing. A permit is returned when the thread finishes, not when
    the awaiting task goes away: a search cannot be interrupted, only bounded by its limit.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("pattern workers: must be at least 1")
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ispmon-pattern")
        self._free = asyncio.Semaphore(workers)

    async def run(self, pattern: Any, data: bytes, limit: float, wait: float) -> tuple[bool | None, float]:
        """(found, seconds matched) as `_search`; raises TimeoutError when no worker frees in `wait`."""
        async with asyncio.timeout(wait):
            await self._free.acquire()
        loop = asyncio.get_running_loop()
        try:
            job = self._pool.submit(_search, pattern, data, limit)
        except BaseException:
            self._free.release()
            raise
        job.add_done_callback(lambda _job: self._release_from_thread(loop))
        return await asyncio.wrap_future(job)

    def _release_from_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        # Runs in the worker thread (or in the loop's, for a job cancelled before it started).
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(self._free.release)

    def close(self) -> None:
        # Running searches end by their own time limit; queued ones (none, normally) are dropped.
        self._pool.shutdown(wait=False, cancel_futures=True)


async def search(
    workers: PatternWorkers, pattern: Any, data: bytes | bytearray, limit: float, wait: float
) -> PatternOutcome:
    """Search `data` for `pattern` within the current check's budget (or `limit` and `wait`
    alone when no check budget is set, as when a probe is called directly)."""
    budget = _budget.get()
    left = limit if budget is None else min(limit, budget.pattern_left)
    wait_left = wait if budget is None else budget.wait_left
    if left <= 0:
        return PatternOutcome.TIMEOUT
    started = perf_counter()
    searched = False
    found: bool | None = None
    used = 0.0
    try:
        found, used = await workers.run(pattern, bytes(data), left, max(wait_left, 0.0))
        searched = True
    except TimeoutError:
        return PatternOutcome.BUSY
    finally:
        if budget is not None:
            spent = perf_counter() - started
            budget.attempt_spent += spent
            budget.wait_left -= max(0.0, spent - used)
            # A search the limit stopped spent the whole budget; the next attempt's body is most
            # likely the same, and the same pattern would take as long again.
            budget.pattern_left = 0.0 if searched and found is None else budget.pattern_left - used
    if found is None:
        return PatternOutcome.TIMEOUT
    return PatternOutcome.MATCH if found else PatternOutcome.MISMATCH
