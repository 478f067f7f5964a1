"""Fixtures of the feed's tests: the strict test server and a sync wired to it and to the test database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ispmon.search.bulk import Deliverer, Policy
from ispmon.search.client import ClientConfig, bulk_sender, classify, make_client
from ispmon.search.documents import Observer
from ispmon.search.setup import es_setup
from ispmon.search.sync import SearchSync
from tests.esserver import EsServer


@pytest.fixture
async def es() -> AsyncIterator[EsServer]:
    server = EsServer(major=8)
    await server.start()
    yield server
    await server.stop()


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def make_sync(pool: asyncpg.Pool, es: EsServer) -> AsyncIterator[Callable[..., Any]]:
    clients = []

    async def build(setup: bool = True, batch_size: int = 100, **client: Any) -> SearchSync:
        c = make_client(ClientConfig(url=es.url, timeout=client.pop("timeout", 5.0), **client))
        clients.append(c)
        if setup:
            await es_setup(c, "isp")
        deliverer = Deliverer(bulk_sender(c), Policy(base_delay=0.001, max_delay=0.01), classify=classify)
        sync = SearchSync(
            pool, deliverer, "isp", Observer("probe-1", "Paris"), interval=1, batch_size=batch_size
        )
        await sync.load()
        return sync

    yield build
    for c in clients:
        await c.close()


async def insert_history(pool: asyncpg.Pool, endpoint: str, n: int, status: str = "up") -> list[int]:
    now = datetime.now(UTC)
    rows = await pool.fetch(
        """INSERT INTO status_history (endpoint_id, checked_at, status, response_time_ms)
           SELECT $1, $2::timestamptz - make_interval(secs => g), $3, 12.5 FROM generate_series(1, $4) g
           RETURNING id""",
        endpoint,
        now,
        status,
        n,
    )
    return [r["id"] for r in rows]


async def add_endpoint(pool: asyncpg.Pool, endpoint: str = "web-1") -> None:
    await pool.execute(
        "INSERT INTO endpoints (id, name, protocol, url, tags, spec) VALUES ($1, $2, 'http', $3, '{edge}', '{}')",
        endpoint,
        f"Web {endpoint}",
        f"http://127.0.0.1:8080/{endpoint}",
    )


def hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Any]:
    """The real app without ELASTICSEARCH_URL (as tests/integration/api's client)."""
    from aiohttp.test_utils import TestClient, TestServer

    from ispmon.api.app import create_app
    from ispmon.config import Settings
    from ispmon.services.context import AppServices
    from ispmon.store.database import Database

    db = await Database.connect(db_dsn, max_size=4)
    c: Any = TestClient(TestServer(create_app(AppServices.build(db, Settings()))))
    await c.start_server()
    try:
        yield c
    finally:
        await c.close()
        await db.close()
