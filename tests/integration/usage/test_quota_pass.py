"""The incremental quota pass on a real PostgreSQL: after the first (full) pass it looks only at the
customers whose usage was committed through the tracker, whose definition changed, whose period
ended, or whom an alert rule wants to see again; a crossing committed just before a restart is
found by the restarted daemon's first pass; a failed pass loses nobody."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from ispmon.services.customers import CustomerService
from ispmon.store.database import Database
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.enforce import Enforcer
from ispmon.usage.quota_pass import QuotaTracker
from tests.integration.usage.test_rollups import interim


async def customers(db: Database, n: int) -> None:
    await CustomerService(db).bulk_upsert(
        [{"id": f"c{i}", "name": f"C{i}", "usernames": [f"user{i}"], "quota_bytes": 1000} for i in range(n)]
        + [{"id": "carol", "name": "Carol", "usernames": ["carol"], "quota_bytes": 1000}]
    )


async def crossings(pool: asyncpg.Pool) -> list[tuple[str, int]]:
    rows = await pool.fetch("SELECT customer_id, threshold FROM quota_crossings ORDER BY 1, 2")
    return [(r["customer_id"], r["threshold"]) for r in rows]


async def age_customers(pool: asyncpg.Pool) -> None:
    """As if the customers were written long ago (the changed-customer margin is 2 minutes)."""
    await pool.execute("UPDATE customers SET updated_at = now() - interval '1 hour'")


async def test_after_the_first_pass_only_customers_with_new_usage_are_looked_at(db: Database) -> None:
    await customers(db, 20)
    await age_customers(db.pool)
    tracker = QuotaTracker(Enforcer(db.pool))
    first = await tracker.run_pass()
    assert (first.full, first.looked_at) == (True, 21)
    nothing = await tracker.run_pass()
    assert (nothing.full, nothing.looked_at) == (False, 0)
    commit = tracker.wrap(AccountingStore(db.pool).commit)
    await commit([interim("S-1", 300, 600, 1, datetime.now(UTC))])  # carol: 900 of 1,000
    looked = await tracker.run_pass()
    assert looked.looked_at == 1 and await crossings(db.pool) == [("carol", 80)]
    assert (await tracker.run_pass()).looked_at == 0
    await commit([interim("S-1", 400, 700, 2, datetime.now(UTC))])  # 1,100
    assert (await tracker.run_pass()).looked_at == 1
    assert await crossings(db.pool) == [("carol", 80), ("carol", 100)]


async def test_a_crossing_committed_before_a_restart_is_found_by_the_first_pass(db: Database) -> None:
    await customers(db, 5)
    await age_customers(db.pool)
    before = QuotaTracker(Enforcer(db.pool))
    await before.run_pass()
    # Committed and answered, then the daemon dies before its next pass: the tracker's memory is gone.
    await AccountingStore(db.pool).commit([interim("S-1", 500, 600, 1, datetime.now(UTC))])
    restarted = QuotaTracker(Enforcer(db.pool))
    stats = await restarted.run_pass()
    assert stats.full and await crossings(db.pool) == [("carol", 80), ("carol", 100)]


async def test_a_changed_customer_is_looked_at_without_new_usage(db: Database) -> None:
    await customers(db, 5)
    await AccountingStore(db.pool).commit([interim("S-1", 300, 300, 1, datetime.now(UTC))])  # 600
    await age_customers(db.pool)
    tracker = QuotaTracker(Enforcer(db.pool))
    await tracker.run_pass()
    assert await crossings(db.pool) == []
    await CustomerService(db).update_customer("carol", {"quota_bytes": 700})  # 600 of 700: 85 %
    stats = await tracker.run_pass()
    assert stats.looked_at == 1 and await crossings(db.pool) == [("carol", 80)]


async def test_the_end_of_a_period_makes_a_customer_due(db: Database) -> None:
    await customers(db, 5)
    await age_customers(db.pool)
    fed: list[tuple[str, float]] = []

    def observer(customer_id: str, name: str, percent: float) -> bool:
        fed.append((customer_id, percent))
        return False

    tracker = QuotaTracker(Enforcer(db.pool, observer=observer))
    now = datetime.now(UTC)
    commit = tracker.wrap(AccountingStore(db.pool).commit)
    await commit([interim("S-1", 500, 600, 1, now)])
    await tracker.run_pass(now)
    fed.clear()
    assert (await tracker.run_pass(now)).looked_at == 0 and fed == []
    # Monthly from day 1: 32 days on, every customer's period has ended and is fed its new figure
    # (what clears a quota alert and lifts a restriction), with no usage at all.
    later = now + timedelta(days=32)
    assert (await tracker.run_pass(later)).looked_at == 6
    assert ("carol", 0.0) in fed
    assert (await tracker.run_pass(later)).looked_at == 0


async def test_a_customer_an_alert_rule_wants_again_is_fed_again(db: Database) -> None:
    await customers(db, 2)
    await age_customers(db.pool)
    wanted = {"carol"}

    tracker = QuotaTracker(Enforcer(db.pool, observer=lambda c, n, p: c in wanted))
    await tracker.run_pass()
    assert (await tracker.run_pass()).looked_at == 1  # a rule part-way for carol
    wanted.clear()
    assert (await tracker.run_pass()).looked_at == 1  # the look that settles it
    assert (await tracker.run_pass()).looked_at == 0


async def test_a_pass_that_fails_keeps_what_it_took(db: Database) -> None:
    await customers(db, 2)
    await age_customers(db.pool)
    tracker = QuotaTracker(Enforcer(db.pool))
    await tracker.run_pass()
    commit = tracker.wrap(AccountingStore(db.pool).commit)
    await commit([interim("S-1", 500, 600, 1, datetime.now(UTC))])
    await db.pool.execute("ALTER TABLE quota_crossings RENAME TO quota_crossings_away")
    try:
        try:
            await tracker.run_pass()
        except asyncpg.PostgresError:
            pass
        else:
            raise AssertionError("the pass should have failed")
    finally:
        await db.pool.execute("ALTER TABLE quota_crossings_away RENAME TO quota_crossings")
    stats = await tracker.run_pass()
    assert stats.looked_at == 1 and await crossings(db.pool) == [("carol", 80), ("carol", 100)]
