"""Several contenders for the singleton lease on one real PostgreSQL: exactly one holder at any
moment, takeover after expiry (never before the old holder stopped by its own clock), release on a
clean stop, and a holder whose database is cut stops its work before anyone else starts.

Each contender is an `ispmon.agents.election.Lease` with its own pool, as separate agents would
have; their work is a record of (gained, lost) on one monotonic clock, so overlaps are facts, not
timings.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from ispmon.agents.election import Lease
from ispmon.agents.lease_store import lease_holders, release, take_or_renew
from ispmon.agents.leases import LeaseTimes
from ispmon.store.db import create_pool
from tests.e2e.pgproxy import PgProxy

pytestmark = pytest.mark.timeout(120)

TIMES = LeaseTimes.from_dead_after(5.0)  # renewals every second; the smallest AGENT_DEAD_AFTER


class Work:
    """What a contender's singleton work did: [start, end) spans on the monotonic clock."""

    def __init__(self, name: str, spans: list[tuple[str, float, float | None]]) -> None:
        self.name = name
        self.spans = spans
        self.running = False

    async def start(self) -> None:
        assert not self.running, f"{self.name} started twice"
        self.running = True
        self.spans.append((self.name, time.monotonic(), None))

    async def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        for i in range(len(self.spans) - 1, -1, -1):
            if self.spans[i][0] == self.name and self.spans[i][2] is None:
                self.spans[i] = (self.name, self.spans[i][1], time.monotonic())
                return


def overlaps(spans: list[tuple[str, float, float | None]]) -> list[Any]:
    now = time.monotonic()
    closed = sorted((s, e if e is not None else now, n) for n, s, e in spans)
    return [(a, b) for a, b in itertools.pairwise(closed) if b[0] < a[1]]


async def wait_until(cond: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond() if asyncio.iscoroutinefunction(cond) else cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def pools(db_dsn: str) -> AsyncIterator[list[asyncpg.Pool]]:
    made = [await create_pool(db_dsn, min_size=1, max_size=2) for _ in range(3)]
    yield made
    for p in made:
        await p.close()


async def test_one_holder_at_a_time_takeover_after_expiry_and_release(pools: list[asyncpg.Pool]) -> None:
    spans: list[tuple[str, float, float | None]] = []
    works = [Work(f"agent-{i}", spans) for i in range(3)]
    leases = [
        Lease(p, w.name, TIMES, on_gain=w.start, on_loss=w.stop) for p, w in zip(pools, works, strict=True)
    ]
    try:
        for lease in leases:
            lease.start()
        await wait_until(lambda: sum(w.running for w in works) == 1, "a first holder")
        # Several renewal periods: the holder keeps it, the others never start.
        first = next(w for w in works if w.running)
        holders = await lease_holders(pools[0])
        assert holders["leader"]["holder"] == first.name and holders["leader"]["epoch"] == 1
        await wait_until(
            lambda: (
                leases[works.index(first)]._last_sent is not None
                and time.monotonic() - spans[0][1] > 3 * TIMES.renew_every
            ),
            "a few renewals",
        )
        assert [w.running for w in works].count(True) == 1 and first.running

        # A crash: the holder's loop stops without releasing (as kill -9 would). Another takes
        # over after the row expires, and never before the old holder's own deadline.
        crashed = leases[works.index(first)]
        assert crashed._task is not None
        crashed._task.cancel()
        await first.stop()  # the process is gone, and its work with it
        old_deadline = crashed.tenure.deadline if crashed.tenure else 0.0
        await wait_until(lambda: any(w.running for w in works if w is not first), "a takeover", 30)
        second = next(w for w in works if w.running and w is not first)
        taken_at = next(s for n, s, _ in spans if n == second.name)
        assert taken_at > old_deadline, "the new holder started before the old one's deadline"
        assert not crashed.holds()  # by its own clock, the crashed holder knows it lost
        holders = await lease_holders(pools[0])
        assert holders["leader"]["holder"] == second.name and holders["leader"]["epoch"] == 2

        # A clean stop releases at once: the third takes it well before the row would have expired.
        row = await pools[0].fetchrow("SELECT expires_at FROM agent_leases WHERE name = 'leader'")
        await leases[works.index(second)].close()
        assert not second.running
        third = next(w for w in works if w is not first and w is not second)
        await wait_until(lambda: third.running, "the third to take the released lease", 30)
        taken = await pools[0].fetchrow(
            "SELECT holder, epoch, acquired_at FROM agent_leases WHERE name = 'leader'"
        )
        assert (taken["holder"], taken["epoch"]) == (third.name, 3)
        assert taken["acquired_at"] < row["expires_at"], "the release did not free the lease early"
        assert overlaps(spans) == []
    finally:
        for lease in leases:
            await lease.close()
    assert not any(w.running for w in works)


async def test_simultaneous_takes_have_one_winner(pools: list[asyncpg.Pool]) -> None:
    """Many statements at once on a free (then an expired) row: exactly one gets an epoch."""
    for round_ in range(5):
        answers = await asyncio.gather(
            *(take_or_renew(pools[i % 3], "race", f"c{i}", 30.0, None) for i in range(12))
        )
        winners = [i for i, a in enumerate(answers) if a is not None]
        assert len(winners) == 1, answers
        assert answers[winners[0]] == round_ + 1  # the epoch grows at each change of holder
        # Expired by the database's clock (no sleeping on a loaded machine): the next round races.
        await pools[0].execute(
            "UPDATE agent_leases SET expires_at = now() - interval '1 second' WHERE name = 'race'"
        )


async def test_renewal_keeps_epoch_and_a_stale_epoch_is_refused(pools: list[asyncpg.Pool]) -> None:
    pool = pools[0]
    assert await take_or_renew(pool, "x", "a", 30, None) == 1
    assert await take_or_renew(pool, "x", "a", 30, 1) == 1  # renewed: same tenure
    assert await take_or_renew(pool, "x", "b", 30, None) is None  # valid: not b's
    assert await take_or_renew(pool, "x", "a", 30, 7) is None  # not this epoch: not a renewal
    assert await take_or_renew(pool, "x", "a", 30, -1) == 2  # a restarted "a" reclaims its own
    assert await release(pool, "x", "a", 1) is False  # an old tenure cannot release the new one
    assert await release(pool, "x", "a", 2) is True
    assert await take_or_renew(pool, "x", "b", 30, None) == 3
    assert (await lease_holders(pool))["x"]["holder"] == "b"


async def test_holder_cut_off_from_the_database_stops_before_another_starts(
    db_dsn: str, pools: list[asyncpg.Pool]
) -> None:
    proxy = PgProxy(db_dsn)
    await proxy.start()
    cut_pool = await create_pool(proxy.dsn(), min_size=1, max_size=2)
    spans: list[tuple[str, float, float | None]] = []
    cut_work, other_work = Work("cut", spans), Work("other", spans)
    cut = Lease(cut_pool, "cut", TIMES, on_gain=cut_work.start, on_loss=cut_work.stop)
    other = Lease(pools[0], "other", TIMES, on_gain=other_work.start, on_loss=other_work.stop)
    try:
        await cut.step()
        assert cut_work.running
        cut.start()
        other.start()
        await asyncio.sleep(2 * TIMES.renew_every)
        assert cut_work.running and not other_work.running
        await proxy.cut()
        await wait_until(lambda: other_work.running, "the other agent to take over", 30)
        assert not cut_work.running
        [(_, _, cut_end)] = [s for s in spans if s[0] == "cut"]
        [(_, other_start, _)] = [s for s in spans if s[0] == "other"]
        assert cut_end is not None and cut_end < other_start
        assert overlaps(spans) == []
    finally:
        await cut.close()
        await other.close()
        await cut_pool.close()
        await proxy.close()


async def test_a_renewal_that_hangs_ends_the_work_by_the_holders_clock(pools: list[asyncpg.Pool]) -> None:
    """The database answers nothing (here: the lease row is locked by another session, so the
    renewal waits): the holder stops at its deadline while its statement still hangs."""
    spans: list[tuple[str, float, float | None]] = []
    work = Work("hung", spans)
    lease = Lease(pools[0], "hung", TIMES, on_gain=work.start, on_loss=work.stop)
    try:
        await lease.step()
        assert work.running and lease.tenure is not None
        deadline = lease.tenure.deadline
        async with pools[1].acquire() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM agent_leases WHERE name = 'leader' FOR UPDATE")
            lease.start()
            await wait_until(lambda: not work.running, "the work stopped by time", 30)
            [(_, _, ended)] = spans
            assert ended is not None and ended >= deadline
            assert not lease.holds()
    finally:
        await lease.close()
