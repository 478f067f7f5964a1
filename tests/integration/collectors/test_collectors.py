"""The seed's collectors: check endpoints now against a real server and record the results."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ispmon.collectors import collect_service_availability, collect_specific_service_availability
from ispmon.models import Status
from ispmon.services import AvailabilityService, NotFoundError
from ispmon.store.database import Database


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    async with TestServer(app) as server:
        yield str(server.make_url("/health"))


async def test_collect_one_endpoint(db: Database, pool: asyncpg.Pool, url: str) -> None:
    await AvailabilityService(db).create_endpoint({"name": "API gateway", "url": url})
    result = await collect_specific_service_availability(db, "api-gateway")
    assert (result.endpoint_id, result.status) == ("api-gateway", Status.UP)
    assert await pool.fetchval("SELECT count(*) FROM status_history WHERE endpoint_id = 'api-gateway'") == 1
    with pytest.raises(NotFoundError):
        await collect_specific_service_availability(db, "nosuch")


async def test_collect_every_active_endpoint(db: Database, pool: asyncpg.Pool, url: str) -> None:
    svc = AvailabilityService(db)
    for name in ("Web A", "Web B"):
        await svc.create_endpoint({"name": name, "url": url})
    await svc.create_endpoint({"name": "Retired", "url": url, "is_active": False})
    results = await collect_service_availability(db, concurrency=1)
    assert [(r.endpoint_id, r.status) for r in results] == [("web-a", Status.UP), ("web-b", Status.UP)]
    rows = await pool.fetch("SELECT endpoint_id FROM status_history ORDER BY endpoint_id")
    assert [r["endpoint_id"] for r in rows] == ["web-a", "web-b"]
