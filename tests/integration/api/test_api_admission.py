"""API_MAX_CONCURRENT_REQUESTS and API_QUEUE_TIMEOUT (api/admission.py) on the real app: real PostgreSQL.

The one place is held by a list request that a real lock in PostgreSQL keeps waiting (another
session holds the endpoints table); a second request waits API_QUEUE_TIMEOUT and gets a 503 in
the API's error shape with Retry-After, while /livez and /readyz keep answering, /readyz counts
it, and the API serves again once the place is free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database

Client = TestClient[web.Request, web.Application]
QUEUE_TIMEOUT = 0.5


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    settings = Settings(api_max_concurrent_requests=1, api_queue_timeout=QUEUE_TIMEOUT)
    client: Client = TestClient(TestServer(create_app(AppServices.build(db, settings))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def test_a_request_that_cannot_get_a_place_in_time_is_a_503_and_health_still_answers(
    client: Client, db: Database, db_dsn: str
) -> None:
    import asyncpg

    locker = await asyncpg.connect(db_dsn)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE endpoints IN ACCESS EXCLUSIVE MODE")
        held = asyncio.create_task(client.get("/services/"))  # takes the one place, waits on the lock
        for _ in range(100):
            if (await (await client.get("/readyz")).json())["api"]["in_progress"] == 1:
                break
            await asyncio.sleep(0.02)
        started = time.monotonic()
        resp = await client.get("/outages/")
        waited = time.monotonic() - started
        body = await resp.json()
        assert resp.status == 503, body
        assert resp.headers["Retry-After"] == "1"
        assert resp.headers["Content-Type"].startswith("application/json")
        assert body["error"] == "unavailable"
        assert body["errors"][0]["field"] == "(request)"
        assert "API_QUEUE_TIMEOUT" in body["message"]
        assert QUEUE_TIMEOUT * 0.9 <= waited < QUEUE_TIMEOUT + 2
        # Health reads have their own places: answered at once while the API's is held.
        started = time.monotonic()
        live = await client.get("/livez")
        assert live.status == 200 and time.monotonic() - started < QUEUE_TIMEOUT
        ready = await client.get("/readyz")
        stats = (await ready.json())["api"]
        assert ready.status == 200
        assert stats["in_progress"] == 1 and stats["shed"] == 1 and stats["max_concurrent_requests"] == 1
        assert not held.done()
        await tx.rollback()
        first = await held
        assert first.status == 200, await first.text()
    finally:
        await locker.close()
    again = await client.get("/outages/")
    assert again.status == 200, await again.text()
    stats = (await (await client.get("/readyz")).json())["api"]
    assert stats["in_progress"] == 0 and stats["queued"] == 0 and stats["shed"] == 1


async def test_waiting_requests_are_served_in_order_when_places_free(client: Client, db_dsn: str) -> None:
    import asyncpg

    locker = await asyncpg.connect(db_dsn)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE endpoints IN ACCESS EXCLUSIVE MODE")
        held = asyncio.create_task(client.get("/services/"))
        await asyncio.sleep(0.1)
        waiting = asyncio.create_task(client.get("/outages/"))
        await asyncio.sleep(0.1)
        stats = (await (await client.get("/readyz")).json())["api"]
        assert stats["queued"] == 1
        await tx.rollback()  # well within the queue timeout: the waiter gets the place, no 503
        assert (await held).status == 200
        assert (await waiting).status == 200
    finally:
        await locker.close()
    stats = (await (await client.get("/readyz")).json())["api"]
    assert stats["waited"] >= 1 and stats["shed"] == 0


async def test_the_settings_are_bounded_and_named() -> None:
    from pydantic import ValidationError

    for bad in ({"api_max_concurrent_requests": 0}, {"api_queue_timeout": 0}):
        with pytest.raises(ValidationError) as exc:
            Settings(**bad)
        assert next(iter(bad)) in str(exc.value)
    assert Settings().api_max_concurrent_requests == 32 and Settings().api_queue_timeout == 5.0
