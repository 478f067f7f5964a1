"""The webhook and notify quota policies, and lifting a CoA restriction at the period's reset, on
real parts: a real HTTP receiver on 127.0.0.1 (aiohttp's server) that fails, then accepts; the
NAS listener of test_enforcement (pyrad's codec, real UDP). Once per customer, period and
threshold, with the idempotency key in the body and the header of every try."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web

from ispmon.store.database import Database
from ispmon.usage.enforce import Enforcer
from tests.integration.usage.test_enforcement import audit, nas, over_quota


class Billing:
    """Answers the statuses queued in `answers` (then 200) and keeps what it received."""

    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[tuple[str | None, dict]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Idempotency-Key"), json.loads(await request.read())))
        return web.Response(status=self.answers.pop(0) if self.answers else 200)


@pytest.fixture
async def billing() -> AsyncIterator[Billing]:
    found = Billing()
    app = web.Application()
    app.router.add_post("/quota", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}/quota"
    try:
        yield found
    finally:
        await runner.cleanup()


async def test_webhook_is_retried_with_one_idempotency_key_and_sent_once(db: Database, billing: Billing) -> None:
    billing.answers = [503, 429]
    await over_quota(db, {"policy": "webhook", "url": billing.url})
    enforcer = Enforcer(db.pool, timeout=2.0)
    assert await enforcer.check("carol") == [80, 100]
    assert await audit(db.pool) == [("webhook", "pending", 0, None)]
    await enforcer.dispatch()
    assert await audit(db.pool) == [("webhook", "pending", 1, "HTTP 503")]
    await enforcer.dispatch()
    assert await audit(db.pool) == [("webhook", "pending", 2, "HTTP 429")]
    await enforcer.dispatch()
    assert await audit(db.pool) == [("webhook", "sent", 3, "HTTP 200")]
    for _ in range(2):  # nothing more: not on later passes, not after a "restart"
        await Enforcer(db.pool).check("carol")
        await Enforcer(db.pool).dispatch()
    assert len(billing.received) == 3
    keys = {header for header, _ in billing.received} | {body["idempotency_key"] for _, body in billing.received}
    assert len(keys) == 1 and next(iter(keys)).startswith("carol:")
    body = billing.received[-1][1]
    assert (body["event"], body["customer_id"], body["threshold_percent"]) == ("quota_exceeded", "carol", 100)
    assert (body["used_bytes"], body["quota_bytes"]) == (1100, 1000)


async def test_a_webhook_refused_with_a_4xx_fails_at_once(db: Database, billing: Billing) -> None:
    billing.answers = [400]
    await over_quota(db, {"policy": "webhook", "url": billing.url})
    enforcer = Enforcer(db.pool)
    await enforcer.check("carol")
    await enforcer.dispatch()
    await enforcer.dispatch()
    assert await audit(db.pool) == [("webhook", "failed", 1, "HTTP 400")]
    assert len(billing.received) == 1


async def test_notify_is_the_quota_alert_and_says_so_when_there_is_none(db: Database) -> None:
    await over_quota(db, {"policy": "notify"})
    await Enforcer(db.pool).check("carol")
    await Enforcer(db.pool).dispatch()  # no alert engine: nobody was told, and the audit says so
    assert await audit(db.pool) == [("notify", "failed", 0, "no alert engine")]
    await db.pool.execute("UPDATE enforcements SET state = 'pending', detail = NULL")
    await Enforcer(db.pool, observer=lambda *_: None).dispatch()
    assert await audit(db.pool) == [("notify", "sent", 0, "quota alert")]


async def test_a_new_period_lifts_the_coa_restriction_once(db: Database) -> None:
    listener, transport = await nas(db, "ack")
    try:
        now = await over_quota(
            db, {"policy": "coa", "attributes": {"Filter-Id": "throttled"}, "lift_attributes": {"Filter-Id": "full"}}
        )
        enforcer = Enforcer(db.pool, timeout=0.5, tries=2)
        await enforcer.check("carol", now)
        await enforcer.dispatch()
        await enforcer.check("carol", now)  # the same period: nothing to lift
        await enforcer.dispatch()
        assert await audit(db.pool) == [("coa", "acked", 1, None)]
        later = now + timedelta(days=32)  # monthly, reset day 1: the next period
        for _ in range(2):
            await enforcer.check("carol", later)
            await enforcer.dispatch()
        assert await audit(db.pool) == [("coa", "acked", 1, None), ("lift", "acked", 1, None)]
        assert [r["attrs"]["Filter-Id"] for r in listener.received] == [["throttled"], ["full"]]
        assert all(r["verified"] and r["code"] == 43 for r in listener.received)  # CoA-Request
        assert listener.received[1]["attrs"]["Acct-Session-Id"] == ["S-9"]
    finally:
        transport.close()
