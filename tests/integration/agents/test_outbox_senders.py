"""The notification outbox with several senders (issue 16 §5): three `Sender`s, as three agents
would run them (a pool each), drain one database's outbox into a real webhook receiver on
127.0.0.1 while rows keep arriving, some deliveries fail and are retried, and one sender stops and
starts again mid-way. Every notification arrives exactly once; none is left pending.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from ispmon.alerts.sender import DeliveryPolicy, Sender
from ispmon.store.db import create_pool
from ispmon.store.notifications import NotificationRepo
from tests.integration.alerts.test_alert_delivery import Receiver, draft, json_url, make_sender

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

POLICY = DeliveryPolicy(max_attempts=10, retry_base=0.05, retry_max=0.2, rate_per_minute=0, timeout=5.0)
CHANNELS = 5
ROWS = 300


def now() -> datetime:
    return datetime.now(UTC)


async def wait_until(cond: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond() if asyncio.iscoroutinefunction(cond) else cond():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def pools(db_dsn: str) -> AsyncIterator[list[asyncpg.Pool]]:
    made = [await create_pool(db_dsn, min_size=1, max_size=3) for _ in range(3)]
    yield made
    for p in made:
        await p.close()


def senders(pools: list[asyncpg.Pool], receiver: Receiver) -> list[Sender]:
    channels = {f"c{i}": json_url(receiver.port, f"path{i}x") for i in range(CHANNELS)}
    return [make_sender(p, channels, receiver.port, POLICY, clock=now) for p in pools]


def delivered(receiver: Receiver) -> Counter[str]:
    return Counter(json.loads(h.body)["title"].removeprefix("DOWN: router ") for h in receiver.accepted)


async def test_three_senders_deliver_each_notification_exactly_once(
    pools: list[asyncpg.Pool], receiver: Receiver
) -> None:
    receiver.delay = 0.005
    # Failures spread over the channels: those rows are retried, by whichever sender leases them.
    receiver.plan = {f"/path{i}x": [500, 200, 500, 500] * 5 for i in range(CHANNELS)}
    three = senders(pools, receiver)
    attempts_by_sender = [0, 0, 0]
    for number, sender in enumerate(three):
        deliver = sender._deliver

        async def counted(row: object, number: int = number, deliver: Callable = deliver) -> int:
            attempts_by_sender[number] += 1
            return await deliver(row)

        sender._deliver = counted  # type: ignore[method-assign]
    repo = NotificationRepo(pools[0])
    keys = [f"n{i:04d}" for i in range(ROWS)]
    await repo.enqueue([draft(k, f"c{i % CHANNELS}") for i, k in enumerate(keys[: ROWS // 2])])
    try:
        for s in three:
            s.start()
        # The rest arrive while they run, in small batches, each waking every sender.
        for start in range(ROWS // 2, ROWS, 15):
            await repo.enqueue([draft(k, f"c{i % CHANNELS}") for i, k in enumerate(keys[start : start + 15])])
            for s in three:
                s.wake()
            await asyncio.sleep(0.02)
        # One agent stops mid-way (its unstarted leased rows go back) and starts again.
        await wait_until(lambda: len(receiver.accepted) >= ROWS // 3, "a third delivered")
        # Grace enough for the attempts in flight: no new one starts, those finish (a cancelled
        # attempt would come back after its send lease: at least once, not this test's subject).
        await three[1].close(grace=10.0)
        three[1].start()
        await wait_until(lambda: len(delivered(receiver)) == ROWS, "every notification delivered")
        await _drained(repo)
    finally:
        for s in three:
            await s.close()
    got = delivered(receiver)
    assert set(got) == set(keys)
    assert [k for k, n in got.items() if n != 1] == [], "sent more than once"
    assert await repo.count_by_state() == {"pending": 0, "sent": ROWS, "dead": 0, "cancelled": 0}
    # The failures did happen, and were retried: more attempts than rows.
    attempts = await pools[0].fetchval("SELECT sum(attempts) FROM notifications")
    assert attempts > ROWS
    # Every sender took part (the outbox is shared, not drained by whichever happens to be first).
    assert all(n > 0 for n in attempts_by_sender), attempts_by_sender


async def test_a_stopping_sender_gives_back_rows_it_leased_and_did_not_attempt(
    pools: list[asyncpg.Pool], receiver: Receiver
) -> None:
    receiver.delay = 0.5  # slow: the first row is in flight when the sender stops
    first, second, _ = senders(pools, receiver)
    repo = NotificationRepo(pools[0])
    await repo.enqueue([draft(f"s{i}", "c0") for i in range(6)])
    first.start()
    await wait_until(lambda: len(receiver.hits) >= 1 or first._unstarted, "rows leased")
    await wait_until(lambda: len(receiver.hits) >= 1, "the first attempt in flight")
    await first.close(grace=2.0)
    # The rows it had not attempted are due again at once, not after its send lease (60 s).
    pending = await pools[0].fetch(
        "SELECT id, next_attempt_at <= now() AS due FROM notifications WHERE state = 'pending'"
    )
    assert pending and all(r["due"] for r in pending)
    receiver.delay = 0.0
    assert await second.run_once() == len(pending)
    got = delivered(receiver)
    assert sorted(got) == [f"s{i}" for i in range(6)] and set(got.values()) == {1}


async def test_a_sender_without_the_lease_sends_nothing(
    pools: list[asyncpg.Pool], receiver: Receiver
) -> None:
    """Fenced: `may_send` (the singleton lease, by its holder's clock) is asked before leasing."""
    (sender, *_) = senders(pools, receiver)
    allowed = False
    sender.may_send = lambda: allowed
    repo = NotificationRepo(pools[0])
    await repo.enqueue([draft(f"f{i}", "c1") for i in range(3)])
    assert await sender.run_once() == 0
    assert receiver.hits == [] and (await repo.count_by_state())["pending"] == 3
    allowed = True
    assert await sender.run_once() == 3
    assert sorted(delivered(receiver)) == ["f0", "f1", "f2"]


async def _drained(repo: NotificationRepo) -> None:
    for _ in range(1200):
        if (await repo.count_by_state())["pending"] == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the outbox did not drain: {await repo.count_by_state()}")
