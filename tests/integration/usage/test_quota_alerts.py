"""Quota rules (kind `quota`) of the alert engine on real parts: the usage domain's quota pass
feeds each customer's use as a percentage of the quota to the real engine and outbox, and the real
sender delivers to the alert tests' webhook receiver. Crossing the rule's percentage pages once,
later passes over it page nothing more, a new period clears it once, and a rule for other
customers never fires."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.rules import AlertRule
from ispmon.store.alerts import AlertRepo
from ispmon.store.database import Database
from ispmon.store.notifications import NotificationRepo
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.enforce import Enforcer
from ispmon.usage.quota_pass import QuotaTracker
from ispmon.usage.wiring import quota_observer, quota_rules_changed
from tests.integration.alerts.test_alert_delivery import Receiver, json_url, make_sender, receiver  # noqa: F401
from tests.integration.usage.test_enforcement import over_quota

RULES = [
    {"id": "over-quota", "kind": "quota", "severity": "major", "channels": ["hook"]},
    {"id": "dave-near", "kind": "quota", "above": 50, "customers": ["dave"], "channels": ["hook"]},
]


async def test_a_quota_crossing_pages_once_and_a_new_period_clears_it(
    db: Database, receiver: Receiver  # noqa: F811
) -> None:
    engine = AlertEngine(
        pool=db.pool, alerts=AlertRepo(db.pool), notifications=NotificationRepo(db.pool),
        channels=ChannelRegistry([parse_channel("hook", json_url(receiver.port))]),
        default_channels=["hook"], link_base=None,
    )  # fmt: skip
    engine.configure([AlertRule.model_validate(r) for r in RULES], {})
    sender = make_sender(
        db.pool, {"hook": json_url(receiver.port)}, receiver.port,
        clock=lambda: datetime.now(UTC) + timedelta(seconds=1),
    )  # fmt: skip
    enforcer = Enforcer(db.pool, observer=quota_observer(engine))

    async def quota_pass(now: datetime | None = None) -> None:
        await enforcer.check("carol", now)
        while engine._tasks:
            await asyncio.gather(*list(engine._tasks))
        await sender.run_once()

    async def alerts() -> list[tuple[str, str, str | None]]:
        rows = await db.pool.fetch("SELECT rule_id, endpoint_id, resolved_at FROM alerts ORDER BY id")
        return [(r["rule_id"], r["endpoint_id"], "resolved" if r["resolved_at"] else None) for r in rows]

    def delivered() -> list[str]:
        return [json.loads(h.body)["title"] for h in receiver.accepted]

    try:
        now = await over_quota(db, {"policy": "notify"})  # 1,100 of 1,000 bytes: 110 %
        await quota_pass()
        assert await alerts() == [("over-quota", "customer:carol", None)]
        assert len(delivered()) == 1
        assert "Carol" in delivered()[0] and "quota_percent 110" in delivered()[0], delivered()
        for _ in range(3):  # still over: the same alert, nothing sent again
            await quota_pass()
        assert await alerts() == [("over-quota", "customer:carol", None)]
        assert len(delivered()) == 1
        # The next period (monthly from reset day 1): nothing used yet, the alert clears once.
        await quota_pass(now + timedelta(days=32))
        assert await alerts() == [("over-quota", "customer:carol", "resolved")]
        assert len(delivered()) == 2 and "CLEARED" in delivered()[1]
        await quota_pass(now + timedelta(days=32))
        assert len(delivered()) == 2
    finally:
        await engine.close()


async def test_the_incremental_pass_feeds_a_part_way_rule_until_it_fires_and_everyone_after_a_rule_change(
    db: Database, receiver: Receiver  # noqa: F811
) -> None:
    """A rule that fires after 3 looks (`for_checks`) is fed at the next passes although carol's
    usage does not change; once it fires she is left alone; new quota rules make a full pass."""
    engine = AlertEngine(
        pool=db.pool, alerts=AlertRepo(db.pool), notifications=NotificationRepo(db.pool),
        channels=ChannelRegistry([parse_channel("hook", json_url(receiver.port))]),
        default_channels=["hook"], link_base=None,
    )  # fmt: skip
    slow = {"id": "slow", "kind": "quota", "for_checks": 3, "channels": ["hook"]}
    engine.configure([AlertRule.model_validate(slow)], {})
    tracker = QuotaTracker(
        Enforcer(db.pool, observer=quota_observer(engine)), rules_changed=quota_rules_changed(engine)
    )
    try:
        assert (await tracker.run_pass()).full
        await over_quota(db, {"policy": "notify"}, tracker.wrap(AccountingStore(db.pool).commit))
        await db.pool.execute("UPDATE customers SET updated_at = now() - interval '1 hour'")
        looked = [(await tracker.run_pass()).looked_at for _ in range(5)]
        while engine._tasks:
            await asyncio.gather(*list(engine._tasks))
        rows = await db.pool.fetch("SELECT rule_id, endpoint_id FROM alerts")
        assert [(r["rule_id"], r["endpoint_id"]) for r in rows] == [("slow", "customer:carol")]
        assert looked == [1, 1, 1, 0, 0]  # three looks to fire, then nothing is part-way
        engine.configure([AlertRule.model_validate({**slow, "id": "slow-2"})], {})
        stats = await tracker.run_pass()
        assert stats.full and stats.looked_at == 1
        assert not (await tracker.run_pass()).full
    finally:
        await engine.close()
