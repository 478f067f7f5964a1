"""The API takes protocol names in any case ("HTTPS", as the seed's enum spells it) and stores them lower case."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[TestClient[Any, Any]]:
    db = await Database.connect(db_dsn, max_size=4)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(AppServices.build(db, Settings()))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await db.close()


async def test_create_with_upper_case_protocol(client: TestClient[Any, Any], pool: asyncpg.Pool) -> None:
    body = {"name": "API gateway", "url": "https://api.example.net/health", "protocol": "HTTPS"}
    resp = await client.post("/services/", json=body)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["id"] == "api-gateway"
    assert created["protocol"] == "https"
    row = await pool.fetchrow("SELECT protocol, spec->>'protocol' AS spec_protocol FROM endpoints")
    assert (row["protocol"], row["spec_protocol"]) == ("https", "https")
    listed = await (await client.get("/services/", params={"protocol": "https"})).json()
    assert [e["id"] for e in listed["items"]] == ["api-gateway"]


async def test_update_naming_the_same_protocol_in_upper_case_keeps_its_fields(
    client: TestClient[Any, Any],
) -> None:
    body = {"id": "portal", "name": "Portal", "url": "https://portal.example.net/", "verify_tls": False}
    assert (await client.post("/services/", json=body)).status == 201
    resp = await client.put("/services/portal", json={"protocol": "HTTPS", "timeout": 3})
    assert resp.status == 200, await resp.text()
    updated = await resp.json()
    # "HTTPS" is no change of protocol, so the https-only field set before is kept.
    assert (updated["protocol"], updated["verify_tls"], updated["timeout"]) == ("https", False, 3)


async def test_list_filter_takes_enum_values_in_any_case(client: TestClient[Any, Any]) -> None:
    body = {"id": "web", "name": "Web", "url": "https://127.0.0.1:1/", "protocol": "HTTPS"}
    assert (await client.post("/services/", json=body)).status == 201
    upper = await client.get("/services/?protocol=HTTPS")
    assert upper.status == 200, await upper.text()
    assert [e["id"] for e in (await upper.json())["items"]] == ["web"]
    bad = await client.get("/services/?protocol=GOPHER")
    assert bad.status == 400
    assert (await bad.json())["errors"][0]["field"] == "protocol"
