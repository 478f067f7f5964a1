"""The services over a fresh database and a client of the real app, for the report tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def services(db: Database) -> AsyncIterator[AppServices]:
    yield AppServices.build(db, Settings())


@pytest.fixture
async def client(services: AppServices) -> AsyncIterator[Client]:
    client: Client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
