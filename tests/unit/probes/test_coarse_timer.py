"""The shared coarse timer behind the hard limit: asyncio.timeout's semantics, fewer loop timers."""

from __future__ import annotations

import asyncio

import pytest

from ispmon.probes.coarse_timer import GRANULE, HardTimeout, wheel


async def test_it_raises_timeout_at_its_granule_not_before() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    limit = HardTimeout(start + 0.05)
    with pytest.raises(TimeoutError):
        async with limit:
            await asyncio.sleep(1)
    assert limit.expired()
    assert start + 0.05 <= limit.fires_at < start + 0.05 + GRANULE + 1e-9
    assert loop.time() >= limit.fires_at


async def test_a_block_that_ends_in_time_is_left_alone() -> None:
    loop = asyncio.get_running_loop()
    limit = HardTimeout(loop.time() + 0.03)
    async with limit:
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.06)  # its granule fires after the block ended: no stray cancel
    assert not limit.expired()
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    async def guarded() -> None:
        async with HardTimeout(asyncio.get_running_loop().time() + 5):
            await asyncio.sleep(1)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_during_expiry_is_not_swallowed() -> None:
    # Like asyncio.timeout: when someone else also cancelled the task, the block raises
    # CancelledError rather than turning both cancellations into a TimeoutError.
    async def guarded() -> None:
        async with HardTimeout(asyncio.get_running_loop().time()):
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(guarded())


async def test_deadlines_in_one_granule_share_one_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    # The middle of a granule 0.2 s ahead; the deadlines below stay within a quarter granule of it.
    when = (int(loop.time() / GRANULE) + 20.5) * GRANULE
    limits = [HardTimeout(when + (i - 50) * GRANULE / 200) for i in range(100)]
    armed = []

    async def guarded(limit: HardTimeout) -> str:
        try:
            async with limit:
                armed.append(wheel().armed())
                await asyncio.sleep(1)
        except TimeoutError:
            return "timeout"
        return "done"

    results = await asyncio.gather(*(guarded(limit) for limit in limits))
    assert results == ["timeout"] * 100
    assert len({limit.fires_at for limit in limits}) == 1
    # The first deadline armed a loop timer; the 99 others in its granule armed none.
    assert len(set(armed)) == 1, armed
