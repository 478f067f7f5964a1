"""The scheduler alone, on a real event loop with short intervals and a fake `run` that records
(key, due, loop.time()) and can sleep. Margins are generous for a loaded 2-core machine, but each
one is far below the effect it guards against (a drift, a thundering herd, a queue of late checks)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ispmon.availability.scheduler import Scheduler, spread_offset

# How late a dispatch may be on a busy test machine; every assertion it enters guards a bigger effect.
SLACK = 0.06


class Recorder:
    """A fake `run`: records each call, tracks how many run at once (overall and per key)."""

    def __init__(self, sleep: float | Callable[[str], float] = 0.0) -> None:
        self.sleep = sleep
        self.calls: list[tuple[str, float, float]] = []
        self.inflight = 0
        self.max_inflight = 0
        self.per_key: Counter[str] = Counter()
        self.max_per_key = 0
        self.cancelled: list[str] = []
        self.fail: set[str] = set()
        self.counted: asyncio.Event = asyncio.Event()
        self.wait_for: tuple[str | None, int] = (None, 0)

    async def __call__(self, key: str, due: float) -> None:
        self.calls.append((key, due, asyncio.get_running_loop().time()))
        want_key, want_n = self.wait_for
        if want_n and sum(1 for k, _, _ in self.calls if want_key in (None, k)) >= want_n:
            self.counted.set()
        if key in self.fail:
            raise ValueError(f"boom in {key}")
        self.inflight += 1
        self.per_key[key] += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.max_per_key = max(self.max_per_key, self.per_key[key])
        try:
            delay = self.sleep(key) if callable(self.sleep) else self.sleep
            if delay:
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise
        finally:
            self.inflight -= 1
            self.per_key[key] -= 1

    def of(self, key: str) -> list[tuple[float, float]]:
        """(due, dispatched_at) of every call for `key`, in order."""
        return [(due, at) for k, due, at in self.calls if k == key]


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await scheduler.close()


def now() -> float:
    return asyncio.get_running_loop().time()


def assert_on_grid(dues: list[float], interval: float) -> None:
    """The due times are first + k * interval (k need not be consecutive): no drift, ever."""
    first = dues[0]
    for due in dues:
        k = round((due - first) / interval)
        assert due == pytest.approx(first + k * interval, abs=1e-9), (due, first, k)


def test_spread_offset_is_deterministic_and_inside_the_interval() -> None:
    offsets = [spread_offset(f"ep-{i}", 60.0) for i in range(1000)]
    assert offsets == [spread_offset(f"ep-{i}", 60.0) for i in range(1000)]  # same after a restart
    assert all(0.0 <= o < 60.0 for o in offsets)
    assert len(set(offsets)) > 990
    # Scales with the interval: the same key sits at the same fraction of any interval.
    assert spread_offset("ep-1", 10.0) == pytest.approx(spread_offset("ep-1", 60.0) / 6)


async def test_first_runs_are_spread_over_the_interval() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    keys = [f"endpoint-{i}" for i in range(100)]
    start = now()
    for key in keys:
        sched.add(key, 1.0)
    rec.wait_for = (None, 100)
    async with running(sched):
        await asyncio.wait_for(rec.counted.wait(), 10.0)
    # The due times the scheduler chose, not the wall clock of the calls: a loaded CI machine
    # may stall the loop for a moment, and that says nothing about where the offsets are.
    first: dict[str, float] = {}
    for key, due, _at in rec.calls:
        first.setdefault(key, due - start)
    assert set(first) == set(keys)
    # Each key starts at its own deterministic offset, not all at once at the start. (If a stall
    # made the scheduler shed a key's first run, its first call is a whole interval later.)
    for key in keys:
        off = first[key] - spread_offset(key, 1.0)
        assert abs(off - round(off)) < SLACK, (key, first[key])
        first[key] -= round(off)
    # Roughly uniform: every tenth of the interval gets some first runs, none gets a herd
    # (100 keys in 10 buckets: 10 expected; all at once would put 100 in one).
    buckets = Counter(min(int(t * 10), 9) for t in first.values())
    assert len(buckets) == 10, buckets
    assert max(buckets.values()) <= 25, buckets
    assert max(first.values()) - min(first.values()) > 0.8


async def test_fixed_cadence_without_drift() -> None:
    interval, runs = 0.1, 50
    rec = Recorder(sleep=0.03)
    sched = Scheduler(rec)
    rec.wait_for = ("steady", runs)
    sched.add("steady", interval, first_due=now() + 0.02)
    async with running(sched):
        await asyncio.wait_for(rec.counted.wait(), runs * interval + 3.0)
    calls = rec.of("steady")[:runs]
    dues = [due for due, _ in calls]
    # Every due time is first + k * interval, for consecutive k: nothing skipped, nothing drifts.
    for k, due in enumerate(dues):
        assert due == pytest.approx(dues[0] + k * interval, abs=1e-9)
    lags = [at - due for due, at in calls]
    assert min(lags) >= -0.002  # the dispatcher may start a check up to 1 ms early (one wake-up)
    assert max(lags) < SLACK, lags
    # The actual dispatches do not accumulate the run time (30 ms x 49 = 1.5 s if they did).
    assert calls[-1][1] - calls[0][1] == pytest.approx((runs - 1) * interval, abs=SLACK)
    assert sched.stats.skipped_overrun == 0
    assert sched.stats.skipped_late == 0


async def test_overrunning_check_is_skipped_not_run_twice() -> None:
    interval = 0.2
    rec = Recorder(sleep=0.5)  # longer than two intervals, shorter than three
    sched = Scheduler(rec)
    first = now() + 0.02
    sched.add("slow", interval, first_due=first)
    async with running(sched):
        await asyncio.sleep(1.3)
    dues = [due for due, _ in rec.of("slow")]
    assert rec.max_per_key == 1  # never two runs of the same key at once
    # Runs at 0, 0.6 and 1.2 s; the ticks at 0.2, 0.4, 0.8 and 1.0 s found it still running.
    assert len(dues) == 3, dues
    assert_on_grid(dues, interval)
    assert [round((d - first) / interval) for d in dues] == [0, 3, 6]
    assert sched.stats.skipped_overrun == 4
    assert sched.stats.dispatched == 3
    assert sched.stats.skipped_late == 0


async def test_concurrency_is_bounded_and_late_checks_are_skipped() -> None:
    interval, limit = 0.5, 5
    rec = Recorder(sleep=0.2)  # 50 keys x 0.2 s per 0.5 s needs 20 slots; there are 5
    sched = Scheduler(rec, max_concurrency=limit)
    for i in range(50):
        sched.add(f"k{i}", interval)
    async with running(sched):
        await asyncio.sleep(1.5)
        assert rec.max_inflight == limit  # saturated, and never above the bound
        assert sched.stats.inflight <= limit
    assert rec.max_inflight == limit
    stats = sched.stats
    assert stats.skipped_late > 0
    assert stats.dispatched == len(rec.calls)
    assert stats.completed == stats.dispatched  # close() cancelled the last ones; they still count
    assert stats.inflight == 0
    # What did start, started within the lateness bound (min(max_lateness, interval / 2)): the checks
    # held up by the bound are skipped, not run a whole interval late.
    bound = min(sched.max_lateness, interval / 2)
    lags = [at - due for _, due, at in rec.calls]
    assert max(lags) <= bound + SLACK, sorted(lags)[-5:]
    assert sched.lag_percentiles(1.0)[0] <= bound + 1e-9
    # Work kept flowing at the bound's pace: 5 slots x 1.5 s / 0.2 s = ~37 runs.
    assert 25 <= stats.dispatched <= 45, stats


async def test_a_hanging_check_does_not_delay_the_others() -> None:
    interval = 0.1
    rec = Recorder(sleep=lambda key: 60.0 if key == "hang" else 0.01)
    sched = Scheduler(rec)
    sched.add("hang", interval, first_due=now())
    others = [f"ok-{i}" for i in range(20)]
    for key in others:
        sched.add(key, interval)
    async with running(sched):
        await asyncio.sleep(1.0)
        assert rec.per_key["hang"] == 1
    assert len(rec.of("hang")) == 1
    assert sched.stats.skipped_overrun >= 8  # its ticks were skipped, not queued
    for key in others:
        calls = rec.of(key)
        assert len(calls) >= 8, (key, len(calls))
        assert max(at - due for due, at in calls) < SLACK
    # close() cancelled the hanging run instead of waiting a minute for it.
    assert rec.cancelled.count("hang") == 1


async def test_add_remove_and_readd_take_effect_without_restart() -> None:
    rec = Recorder()
    sched = Scheduler(rec)
    t0 = now()
    sched.add("a", 0.1, first_due=t0)
    sched.add("b", 0.1, first_due=t0 + 0.05)
    assert "a" in sched and len(sched) == 2
    async with running(sched):
        await asyncio.sleep(0.45)
        sched.remove("a")
        assert "a" not in sched and len(sched) == 1
        removed_at, runs_a = now(), len(rec.of("a"))
        assert runs_a >= 4
        # b moves to a slower cadence while running.
        sched.add("b", 0.25)
        changed_b_at = now()
        await asyncio.sleep(0.4)
        assert len(rec.of("a")) == runs_a  # removed: not dispatched any more
        assert all(at <= removed_at for _, at in rec.of("a"))
        # Re-added with a faster interval.
        readded_at = now()
        sched.add("a", 0.05, first_due=readded_at)
        await asyncio.sleep(0.5)
    before = [due for due, _ in rec.of("a") if due < removed_at]
    after = [due for due, _ in rec.of("a") if due >= readded_at]
    assert_on_grid(before, 0.1)
    assert len(after) >= 8
    assert [round(b - a, 6) for a, b in itertools.pairwise(after)] == [0.05] * (len(after) - 1)
    b_new = [due for due, _ in rec.of("b") if due >= changed_b_at]
    assert len(b_new) >= 3
    assert [round(y - x, 6) for x, y in itertools.pairwise(b_new)] == [0.25] * (len(b_new) - 1)
    # The removed key's old heap entries never ran: no dues between removal and re-add.
    assert not [due for due, _ in rec.of("a") if removed_at <= due < readded_at]


async def test_removed_and_readded_within_an_interval_runs_one_chain_not_two() -> None:
    """An endpoint handed to another agent and back (or paused and resumed) before its pending heap
    entry came up: the old entry must stay dead, or the key runs on two schedules at once."""
    rec = Recorder()
    sched = Scheduler(rec)
    t0 = now()
    sched.add("a", 0.2, first_due=t0)
    async with running(sched):
        await asyncio.sleep(0.25)  # ran at t0 and t0 + 0.2; the entry for t0 + 0.4 is in the heap
        sched.remove("a")
        readded_at = now()
        sched.add("a", 0.2, first_due=readded_at + 0.1)  # off the old grid by 0.05 s
        await asyncio.sleep(1.0)
    after = [due for due, _ in rec.of("a") if due >= readded_at]
    assert len(after) >= 4
    assert [round(b - a, 6) for a, b in itertools.pairwise(after)] == [0.2] * (len(after) - 1), after


def test_lag_percentiles_ring_buffer() -> None:
    async def run(key: str, due: float) -> None:
        return None

    sched = Scheduler(run, lag_samples=100)
    assert sched.lag_percentiles(0.5, 0.99) == [0.0, 0.0]
    for ms in range(1, 101):  # 1..100 ms
        sched._record_lag(ms / 1000)
    p0, p50, p99, p100 = sched.lag_percentiles(0.0, 0.5, 0.99, 1.0)
    assert (p0, p50, p99, p100) == pytest.approx((0.001, 0.051, 0.1, 0.1))
    # The buffer keeps the last `lag_samples` values: 100 more samples of 5 ms replace all of them.
    for _ in range(100):
        sched._record_lag(0.005)
    assert sched.lag_percentiles(0.5, 1.0) == pytest.approx([0.005, 0.005])
    sched.reset_lag()
    assert sched.lag_percentiles(0.5) == [0.0]


async def test_lag_percentiles_measure_a_blocked_loop() -> None:
    def blocking(key: str) -> float:
        if key == "hog":
            time.sleep(0.15)  # a CPU hog holding the loop, the kind of lag the scheduler must show
        return 0.0

    rec = Recorder(sleep=blocking)
    sched = Scheduler(rec)
    for i in range(50):  # ~15 of them fall due inside the 0.15 s block
        sched.add(f"k{i}", 0.5)  # lateness bound: min(1 s, 0.25 s) > the 0.15 s block
    async with running(sched):
        await asyncio.sleep(0.6)
        p50, p99 = sched.lag_percentiles(0.5, 0.99)
        assert 0.0 <= p50 <= p99 < SLACK  # an idle loop: small lag
        sched.add("hog", 10.0, first_due=now())
        await asyncio.sleep(0.6)
    p50, p100 = sched.lag_percentiles(0.5, 1.0)
    assert p50 < SLACK
    assert p100 >= 0.08  # the checks due while the loop was blocked were dispatched that late
    assert sched.stats.skipped_late == 0


async def test_checks_later_than_the_bound_are_shed_not_started_late() -> None:
    """Overload (here: a loop blocked for longer than the bound): late checks are skipped and
    counted instead of started late, where they would measure the monitor's delay as the target's."""

    def blocking(key: str) -> float:
        if key == "hog":
            time.sleep(0.3)
        return 0.0

    rec = Recorder(sleep=blocking)
    sched = Scheduler(rec, max_lateness=0.1)
    for i in range(20):
        sched.add(f"k{i}", 0.2)
    async with running(sched):
        await asyncio.sleep(0.4)
        sched.add("hog", 10.0, first_due=now())
        await asyncio.sleep(0.6)
    assert sched.stats.skipped_late >= 5
    (p100,) = sched.lag_percentiles(1.0)
    assert p100 <= 0.1 + 1e-6  # nothing was dispatched later than the bound


async def test_an_exception_in_run_does_not_kill_the_dispatcher() -> None:
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        rec = Recorder()
        rec.fail.add("bad")
        sched = Scheduler(rec)
        sched.add("bad", 0.05, first_due=now())
        sched.add("good", 0.05, first_due=now() + 0.01)
        async with running(sched) as task:
            await asyncio.sleep(0.5)
            assert not task.done()
        assert len(rec.of("bad")) >= 6  # keeps its schedule after failing
        assert len(rec.of("good")) >= 6
        assert sched.stats.inflight == 0
        assert sched.stats.completed == sched.stats.dispatched
        del task
        gc.collect()  # an unretrieved task exception is reported when the task is collected
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert unhandled == []
