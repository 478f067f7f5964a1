"""The quota pass on the singleton lease's holder sees usage that other agents' RADIUS listeners
committed (their commits never pass through its tracker), when the registry shows other agents
live; alone, it reads nothing more than before."""

from __future__ import annotations

from datetime import UTC, datetime

from ispmon.store.database import Database
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.enforce import Enforcer
from ispmon.usage.quota_pass import QuotaTracker
from ispmon.usage.wiring import other_agents_live
from tests.integration.usage.test_quota_pass import age_customers, crossings, customers
from tests.integration.usage.test_rollups import interim


async def test_usage_committed_by_another_agent_is_judged_by_the_holder(db: Database) -> None:
    await customers(db, 3)
    await age_customers(db.pool)
    others = [True]

    async def live() -> bool:
        return others[0]

    holder = QuotaTracker(Enforcer(db.pool), others=live)
    assert (await holder.run_pass()).full
    elsewhere = AccountingStore(db.pool).commit  # another agent's listener: not wrapped by `holder`
    await elsewhere([interim("S-1", 300, 600, 1, datetime.now(UTC))])  # carol: 900 of 1,000
    looked = await holder.run_pass()
    assert looked.looked_at == 1 and await crossings(db.pool) == [("carol", 80)]
    # Seen again one more pass (the lag that covers late commits), then no more.
    assert (await holder.run_pass()).looked_at == 1
    assert (await holder.run_pass()).looked_at == 0
    # Alone (no other agent live): nothing is read beyond its own listener's commits.
    others[0] = False
    await elsewhere([interim("S-1", 400, 700, 2, datetime.now(UTC))])
    assert (await holder.run_pass()).looked_at == 0
    others[0] = True
    assert (await holder.run_pass()).looked_at == 1
    assert await crossings(db.pool) == [("carol", 80), ("carol", 100)]


async def test_other_agents_live_reads_the_registry(db: Database) -> None:
    live = other_agents_live(db.pool, "me", 5.0)
    assert await live() is False
    insert = """INSERT INTO agents (id, location, version, host, pid, joined_at, last_heartbeat, stopped_at)
                VALUES ($1, 'default', 'test', 'h', 1, now(), now() - make_interval(secs => $2), $3)"""
    await db.pool.execute(insert, "me", 0.0, None)
    await db.pool.execute(insert, "dead", 60.0, None)
    await db.pool.execute(insert, "stopped", 0.0, datetime.now(UTC))
    assert await live() is False
    await db.pool.execute(insert, "other", 1.0, None)
    assert await live() is True
