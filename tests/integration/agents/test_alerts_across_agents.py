"""Alerts across agents on one real PostgreSQL (issue 16 §5): the endpoint's agent opens and
resolves its alert; the singleton lease's holder, another process with an engine of its own, pages
the escalation steps. Each engine here has its own monitor, as agents do; they share the database.

What must hold: the holder's tick sees alerts another agent opened; its writes never land on an
alert another agent resolved meanwhile (the row decides, under its lock); a resolution pages every
channel the alert reached, whoever paged them; an agent resolves an alert it never held in memory;
two agents resolving one outage page it once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from ispmon.alerts.rules import AlertRule
from tests.integration.alerts.test_alert_engine import NOC_POLICY, Targets, World, sent_to

RULES = [AlertRule(id="core", kind="outage", escalation="noc", tags=["core"])]


@pytest.fixture
async def agents(pool: asyncpg.Pool) -> AsyncIterator[tuple[World, World]]:
    targets = Targets()
    await targets.start()
    owner, leader = World(pool, targets), World(pool, targets)
    leader.clock = owner.clock  # one time for both (escalation is minutes from notify_from)
    leader.engine = leader.new_engine()
    for world in (owner, leader):
        world.engine.configure(RULES, {"noc": NOC_POLICY})
    owner.engine.leading = False  # the endpoint's agent; the other holds the lease
    try:
        yield owner, leader
    finally:
        for world in (owner, leader):
            await world.close()
        await targets.runner.cleanup()


async def test_holder_pages_steps_of_an_alert_another_agent_opened_and_resolved(
    agents: tuple[World, World],
) -> None:
    owner, leader = agents
    await leader.engine.load()  # before the alert exists: only a refresh can show it
    router = owner.add("router", tags=["core"])
    await owner.fail(router)
    [alert] = await owner.alerts()
    assert sent_to(await owner.outbox()) == [("declared", "oncall")]
    assert alert["id"] not in leader.engine.open

    await owner.engine.tick(owner.clock.advance(15))  # not the holder: no step from it
    assert len(await owner.outbox()) == 1
    await leader.engine.tick(leader.clock.now)
    assert alert["id"] in leader.engine.open
    assert sent_to(await owner.outbox())[1:] == [("step", "sms")]
    await leader.engine.tick(leader.clock.now)  # again: nothing more
    assert len(await owner.outbox()) == 2

    # The owner resolves: its memory says step 0, the row says 1; the row decides who hears of it.
    await owner.recover(router)
    resolved = await owner.outbox(event="resolved")
    assert sorted(r["channel"] for r in resolved) == ["oncall", "sms"]
    # The holder's next tick (past the 60-minute step) drops the alert and writes nothing.
    await leader.engine.tick(leader.clock.advance(60))
    assert alert["id"] not in leader.engine.open
    assert len(await owner.outbox()) == 4


async def test_a_step_never_lands_on_an_alert_resolved_while_the_tick_waited(
    agents: tuple[World, World], pool: asyncpg.Pool
) -> None:
    owner, leader = agents
    router = owner.add("router", tags=["core"])
    await owner.fail(router)
    [alert] = await owner.alerts()
    await leader.engine.load()
    # Another agent's resolution holds the row (as `_resolve` does) while the holder's tick, due to
    # page step 1, reaches it; the resolution commits first.
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("SELECT 1 FROM alerts WHERE id = $1 FOR UPDATE", alert["id"])
        tick = asyncio.create_task(leader.engine.tick(leader.clock.advance(15)))
        await _until_waiting_on_a_lock(pool)
        await conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at = now() WHERE id = $1", alert["id"]
        )
        await tx.commit()
    await tick
    assert sent_to(await owner.outbox()) == [("declared", "oncall")], "a step after the resolution"
    assert alert["id"] not in leader.engine.open
    row = await pool.fetchrow("SELECT last_step FROM alerts WHERE id = $1", alert["id"])
    assert row["last_step"] == 0


async def test_an_agent_resolves_an_alert_it_never_held(agents: tuple[World, World]) -> None:
    owner, _leader = agents
    router = owner.add("router", tags=["core"])
    await owner.fail(router)
    [alert] = await owner.alerts()
    outage_id = alert["outage_id"]
    # A third agent gained the endpoint (its open outage loaded from the database) with an empty
    # engine: the resolution finds the alert in the database.
    third = World(owner.pool, owner.targets)
    third.clock = owner.clock
    third.engine = third.new_engine()
    third.engine.configure(RULES, {"noc": NOC_POLICY})
    try:
        assert third.engine.open == {}
        await third.engine.outage_resolved("router", outage_id, datetime.now(UTC), 42.0)
    finally:
        await third.close()
    [row] = await owner.alerts()
    assert row["state"] == "resolved" and row["details"]["duration_seconds"] == 42.0
    assert sent_to(await owner.outbox(event="resolved")) == [("resolved", "oncall")]


async def test_two_agents_resolving_one_outage_page_it_once(agents: tuple[World, World]) -> None:
    owner, leader = agents
    router = owner.add("router", tags=["core"])
    await owner.fail(router)
    [alert] = await owner.alerts()
    await leader.engine.tick(leader.clock.advance(15))  # step 1 paged by the holder
    await asyncio.gather(
        owner.engine.outage_resolved("router", alert["outage_id"], datetime.now(UTC), 10.0),
        leader.engine.outage_resolved("router", alert["outage_id"], datetime.now(UTC), 11.0),
    )
    resolved = await owner.outbox(event="resolved")
    assert sorted(r["channel"] for r in resolved) == ["oncall", "sms"]
    [row] = await owner.alerts()
    assert row["state"] == "resolved"


async def _until_waiting_on_a_lock(pool: asyncpg.Pool) -> None:
    for _ in range(600):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the tick never reached the row lock")


class NotOurs:
    """An agent registry for which this agent owns nothing (another agent checks every endpoint)."""

    def owns(self, endpoint_id: str, locations: object = None) -> bool:
        return False


async def test_the_holder_keeps_a_dependency_suppression_it_cannot_see_itself(
    agents: tuple[World, World],
) -> None:
    owner, leader = agents
    router = owner.add("router", tags=["core"])
    server = owner.add("server", tags=["core"], parent="router")
    # The holder knows both endpoints but checks neither: its copies of their state say nothing.
    leader.add("router", tags=["core"])
    leader.add("server", tags=["core"], parent="router")
    leader.monitor.agents = NotOurs()  # type: ignore[assignment]
    await owner.fail(router)
    await owner.fail(server)
    alerts = {a["endpoint_id"]: a for a in await owner.alerts()}
    assert alerts["server"]["suppressed_by"] == "dependency:router"
    await leader.engine.tick(leader.clock.advance(15))
    alerts = {a["endpoint_id"]: a for a in await owner.alerts()}
    assert alerts["server"]["suppressed_by"] == "dependency:router"
    assert [r["endpoint_id"] for r in await owner.outbox(event="declared")] == ["router"]
    assert sent_to(await owner.outbox(endpoint_id="server")) == []
    # The parent recovers (on its agent): the holder's next tick lifts the suppression and pages.
    await owner.recover(router)
    await leader.engine.tick(leader.clock.advance(1))
    alerts = {a["endpoint_id"]: a for a in await owner.alerts()}
    assert alerts["server"]["suppressed_by"] is None
    assert sent_to(await owner.outbox(endpoint_id="server")) == [("declared", "oncall")]
