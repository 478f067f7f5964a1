"""The agent registry on a real PostgreSQL: two agents see each other after the settle time, a
clean stop hands over at once, and an agent cut off from the database fences itself before the
others take its share."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from ispmon.agents.registry import AgentRegistry
from ispmon.store.db import create_pool


async def _until(cond, timeout: float = 20.0) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, "condition not reached"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_join_stop_and_fencing(db_dsn: str) -> None:
    pool_a = await create_pool(db_dsn)
    pool_b = await create_pool(db_dsn)
    a = AgentRegistry(pool_a, agent_id="a", location="fra1", dead_after=5.0, version="t")
    b = AgentRegistry(pool_b, agent_id="b", location="fra1", dead_after=5.0, version="t")
    changes: list[tuple[str, ...]] = []
    a.listeners.append(lambda: changes.append(a.members_of("fra1")))
    try:
        await a.start()
        await _until(lambda: a.members_of("fra1") == ("a",))
        assert a.owns("ep-1", None) and not a.owns("ep-1", ["ams1"])
        await b.start()
        # Both come to the same view, and split the keys between them.
        await _until(lambda: a.members_of("fra1") == ("a", "b") and b.members_of("fra1") == ("a", "b"))
        keys = [f"ep-{i}" for i in range(200)]
        mine_a = {k for k in keys if a.owns(k, None)}
        mine_b = {k for k in keys if b.owns(k, None)}
        assert mine_a and mine_b and not (mine_a & mine_b) and mine_a | mine_b == set(keys)

        # A clean stop: the other takes over at its next heartbeat, not after AGENT_DEAD_AFTER.
        await b.close()
        took = await _until(lambda: a.members_of("fra1") == ("a",))
        assert took < 3.0
        assert all(a.owns(k, None) for k in keys)

        # b again, then cut off from the database: it owns nothing before a takes its keys.
        b = AgentRegistry(pool_b, agent_id="b", location="fra1", dead_after=5.0, version="t")
        await b.start()
        await _until(lambda: a.members_of("fra1") == ("a", "b") and b.members_of("fra1") == ("a", "b"))
        await pool_b.close()
        fenced_after = await _until(lambda: b.members_of("fra1") == ())
        taken_after = await _until(lambda: a.members_of("fra1") == ("a",))
        assert fenced_after < 5.0
        assert taken_after > 0.5  # b let go of its keys before a took them
        row = await pool_a.fetchrow("SELECT stopped_at, location FROM agents WHERE id = 'a'")
        assert row["stopped_at"] is None and row["location"] == "fra1"
    finally:
        await a.close()
        await b.close()
        await pool_a.close()
        if not pool_b._closed:
            await pool_b.close()
    assert changes  # the listener heard of each change
    assert isinstance(pool_a, asyncpg.Pool)
