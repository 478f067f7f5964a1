"""`Admission` (api/admission.py): places, order, timeouts and cancellation, on a real event loop."""

from __future__ import annotations

import asyncio

from ispmon.api.admission import MIN_LIMIT, Admission


async def test_waiters_get_places_in_order_of_arrival() -> None:
    admission = Admission(2, None)
    assert await admission.acquire() and await admission.acquire()
    order: list[int] = []

    async def wait(n: int) -> None:
        assert await admission.acquire()
        order.append(n)

    tasks = [asyncio.create_task(wait(n)) for n in range(4)]
    await asyncio.sleep(0)
    assert admission.queued == 4 and admission.active == 2
    for _ in range(4):
        admission.release()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert admission.active == 2 and admission.queued == 0 and admission.waited == 4
    admission.release()
    admission.release()
    assert admission.active == 0


async def test_a_waiter_past_the_queue_timeout_is_refused_and_counted() -> None:
    admission = Admission(1, 0.05)
    assert await admission.acquire()
    assert await admission.acquire() is False
    assert admission.shed == 1 and admission.queued == 0
    admission.release()
    assert admission.active == 0
    assert await admission.acquire()  # free again: no wait


async def test_a_cancelled_waiter_loses_no_place() -> None:
    admission = Admission(1, None)
    assert await admission.acquire()
    gone = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert admission.queued == 0
    admission.release()
    assert admission.active == 0
    # Handed a place and cancelled before it ran: the place goes on to the next waiter.
    assert await admission.acquire()
    handed = asyncio.create_task(admission.acquire())
    nxt = asyncio.create_task(admission.acquire())
    await asyncio.sleep(0)
    admission.release()  # `handed` now holds the place, but has not run yet
    handed.cancel()
    await asyncio.sleep(0)
    assert await nxt
    assert admission.active == 1 and admission.queued == 0
    admission.release()
    assert admission.active == 0


async def test_the_governor_shrinks_the_places_while_the_loop_is_late_and_grows_them_back() -> None:
    admission = Admission(32, None)
    admission.govern(0.050)
    assert admission.limit == 21
    for _ in range(20):
        admission.govern(0.050)
    assert admission.limit == MIN_LIMIT  # the floor: the API still answers, more slowly
    holders = [await admission.acquire() for _ in range(MIN_LIMIT)]
    assert all(holders)
    waiting = [asyncio.create_task(admission.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    assert admission.queued == 3
    admission.govern(0.001)  # on time, every place taken: one more, given to the first waiter
    assert admission.limit == MIN_LIMIT + 1 and admission.active == MIN_LIMIT + 1 and admission.queued == 2
    await asyncio.sleep(0)
    assert waiting[0].done() and await waiting[0]
    admission.govern(0.050)  # late again: back to the floor; a place given back is dropped
    assert admission.limit == MIN_LIMIT
    admission.release()
    assert admission.active == MIN_LIMIT and admission.queued == 2
    admission.release()
    await asyncio.sleep(0)
    assert waiting[1].done() and admission.active == MIN_LIMIT
    for _ in range(40):
        admission.govern(0.001)
    assert admission.limit == MIN_LIMIT + 2  # grown only while every place was taken
    admission.govern(0.007)  # between half the target and the target: unchanged
    assert admission.limit == MIN_LIMIT + 2
    await asyncio.gather(*waiting)
    small = Admission(1, None)
    small.govern(0.050)
    assert small.limit == 1  # never below one, nor above the setting
