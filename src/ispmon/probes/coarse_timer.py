"""A timeout whose deadlines share loop timers: the hard limit around every probe attempt.

`asyncio.timeout` arms one loop timer per use, and under uvloop `loop.call_at` is the single most
expensive line of the per-check bookkeeping (about 10 % of it in a profile of `Monitor.check`
around an instant probe: uvloop starts and stops a libuv timer for each). The hard limit is a
safety net that almost never fires, and a few milliseconds of slack do not matter to it, so its
deadlines are rounded up to `GRANULE` and every deadline in the same granule shares one loop
timer: at 1,000 checks/s that is at most 100 timers armed per second instead of 1,000, and leaving
the block is a flag, not a timer cancellation.

`hard_timeout(when)` behaves like `asyncio.timeout_at(when)` (Python 3.11's semantics: the task is
cancelled at the deadline and the block raises TimeoutError; a cancellation from elsewhere stays a
CancelledError), except that it fires up to `GRANULE` late; `fires_at` says when it was due to fire.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Any

GRANULE = 0.01  # seconds


class _Wheel:
    """The granules of one event loop that have timeouts waiting on them."""

    __slots__ = ("buckets", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buckets: dict[int, list[HardTimeout]] = {}

    def add(self, timeout: HardTimeout, when: float) -> float:
        """File `timeout` under the granule `when` falls in; returns when that granule fires."""
        slot = math.ceil(when / GRANULE)
        bucket = self.buckets.get(slot)
        if bucket is None:
            bucket = self.buckets[slot] = []
            self.loop.call_at(slot * GRANULE, self._fire, slot)
        bucket.append(timeout)
        return slot * GRANULE

    def _fire(self, slot: int) -> None:
        for timeout in self.buckets.pop(slot, ()):
            timeout._expire()

    def armed(self) -> int:
        """Loop timers this wheel has armed and not yet fired."""
        return len(self.buckets)


_last: tuple[asyncio.AbstractEventLoop | None, _Wheel | None] = (None, None)
_wheels: dict[int, _Wheel] = {}


def wheel() -> _Wheel:
    """The running loop's wheel (one loop in the daemon; tests run several, one after another)."""
    global _last
    loop = asyncio.get_running_loop()
    if _last[0] is loop:
        return _last[1]  # type: ignore[return-value]
    found = _wheels.get(id(loop))
    if found is None or found.loop is not loop:
        # A loop that is gone left its wheel here; only closed loops' wheels are dropped.
        for key in [k for k, w in _wheels.items() if w.loop.is_closed()]:
            del _wheels[key]
        found = _wheels[id(loop)] = _Wheel(loop)
    _last = (loop, found)
    return found


class HardTimeout:
    """``async with HardTimeout(when):`` — see the module docstring."""

    __slots__ = ("_active", "_cancelling", "_expired", "_task", "fires_at", "when")

    def __init__(self, when: float) -> None:
        self.when = when
        self.fires_at = when
        self._active = False
        self._expired = False
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0

    async def __aenter__(self) -> HardTimeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("HardTimeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._active = True
        self.fires_at = wheel().add(self, self.when)
        return self

    def _expire(self) -> None:
        if self._active and self._task is not None:
            self._expired = True
            self._task.cancel()

    def expired(self) -> bool:
        return self._expired

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._active = False
        task, self._task = self._task, None  # the wheel keeps this object until its granule fires
        # uncancel() first, whatever the exception: our cancel() must be taken back either way.
        expired = self._expired and task is not None and task.uncancel() <= self._cancelling
        if expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
