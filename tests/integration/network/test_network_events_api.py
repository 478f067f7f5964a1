"""GET /network/events and GET /devices/{device_id}/events: newest first, filtered, keyset paged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.network.events import NetEvent
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from tests.integration.api.documented import assert_documented

Client = TestClient[web.Request, web.Application]
T0 = 1_780_000_000.0


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[tuple[Client, Database]]:
    db = await Database.connect(db_dsn, max_size=4)
    services = AppServices.build(db, Settings())
    client: Client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield client, db
    finally:
        await client.close()
        await services.network.close()
        await db.close()


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def _documented(http: Client, template: str, url: str) -> Any:
    """A 200 answer of GET `url` (a `template` route), checked against the document."""
    resp = await http.get(url)
    assert resp.status == 200, await resp.text()
    return await assert_documented(http, "GET", template, resp)


async def test_events_are_listed_newest_first_and_paged(client: tuple[Client, Database]) -> None:
    http, db = client
    for device in ("core-1", "edge-1"):
        await _json(await http.post("/devices/", json={"id": device, "name": device, "address": "192.0.2.1",
                                                       "community": "c"}), 201)
    events = [NetEvent("interface_down", T0 + i, "core-1", 7, {"name": "xe-0/0/1", "oper_status": "down"})
              for i in range(0, 10, 2)]
    up = {"name": "xe-0/0/1", "oper_status": "up", "admin_status": "up", "duration_s": 1.0}
    events += [NetEvent("interface_up", T0 + i, "core-1", 7, up) for i in range(1, 10, 2)]
    # Two events at the same instant: the id breaks the tie, neither is lost between pages.
    events += [NetEvent("device_unreachable", T0 + 4, "edge-1", None, {"error": "timeout"}),
               NetEvent("device_reachable", T0 + 4, "edge-1", None, {"duration_s": 0.0})]
    await db.interfaces.record_events(events)

    seen: list[dict[str, Any]] = []
    after = ""
    while True:
        page = await _documented(http, "/network/events", f"/network/events?limit=5{after}")
        seen += page["items"]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    assert len(seen) == 12 and len({e["id"] for e in seen}) == 12
    assert [(e["at"], e["id"]) for e in seen] == sorted(((e["at"], e["id"]) for e in seen), reverse=True)
    assert seen[0]["kind"] == "interface_up" and seen[0]["data"] == up

    downs = await _json(await http.get("/network/events?kind=interface_down&device=core-1"), 200)
    assert downs["count"] == 5 and {e["interface_id"] for e in downs["items"]} == {7}
    edge = await _documented(http, "/devices/{device_id}/events", "/devices/edge-1/events")
    assert [e["kind"] for e in edge["items"]] == ["device_reachable", "device_unreachable"]
    first = await _json(await http.get("/devices/core-1/events?limit=3"), 200)
    rest = await _json(await http.get(f"/devices/core-1/events?limit=100&after={first['next_after']}"), 200)
    assert len(first["items"]) + len(rest["items"]) == 10 and rest["next_after"] is None

    assert (await http.get("/devices/nope/events")).status == 404
    bad = await _json(await http.get("/network/events?kind=exploded"), 400)
    assert bad["errors"][0]["field"] == "kind"
    # A cursor of the per-device list is not one of this list.
    bad = await _json(await http.get(f"/network/events?after={first['next_after']}"), 400)
    assert bad["errors"][0]["field"] == "after"
