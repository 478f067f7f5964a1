"""`run_bounded`, the dispatcher's concurrency: per-key and total bounds, order within a key, a
slow key that holds up nobody else, and one failure that cancels nothing."""

from __future__ import annotations

import asyncio

import pytest

from ispmon.usage.dispatch import run_bounded


async def test_bounds_hold_and_each_key_keeps_its_order() -> None:
    items = [(k, n) for n in range(20) for k in "abc"]
    running: dict[str, int] = {"a": 0, "b": 0, "c": 0}
    peaks = {"a": 0, "b": 0, "c": 0, "all": 0}
    done: list[tuple[str, int]] = []
    started: list[tuple[str, int]] = []

    async def work(item: tuple[str, int]) -> None:
        started.append(item)
        running[item[0]] += 1
        peaks[item[0]] = max(peaks[item[0]], running[item[0]])
        peaks["all"] = max(peaks["all"], sum(running.values()))
        await asyncio.sleep(0.001)
        running[item[0]] -= 1
        done.append(item)

    await run_bounded(items, lambda i: i[0], work, per_key=2, total=5)
    assert sorted(done) == sorted(items)
    assert peaks["a"] == peaks["b"] == 2 and peaks["all"] == 5
    for k in "abc":
        assert [n for key, n in started if key == k] == list(range(20))  # each key in its order
    assert len(asyncio.all_tasks()) == 1  # no worker left behind


async def test_a_slow_key_does_not_hold_up_another() -> None:
    slow = asyncio.Event()
    fast_done: list[int] = []

    async def work(item: tuple[str, int]) -> None:
        if item[0] == "slow":
            await slow.wait()
        else:
            fast_done.append(item[1])
            if len(fast_done) == 10:
                slow.set()

    items = [("slow", n) for n in range(10)] + [("fast", n) for n in range(10)]
    await asyncio.wait_for(run_bounded(items, lambda i: i[0], work, per_key=1, total=4), 5)
    assert fast_done == list(range(10))


async def test_one_failure_cancels_nothing_and_is_raised_at_the_end() -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        if n == 3:
            raise RuntimeError("boom")
        await asyncio.sleep(0.001)
        done.append(n)

    with pytest.raises(RuntimeError, match="boom"):
        await run_bounded(list(range(10)), lambda n: n % 2, work, per_key=2, total=3)
    assert sorted(done) == [0, 1, 2, 4, 5, 6, 7, 8, 9]
