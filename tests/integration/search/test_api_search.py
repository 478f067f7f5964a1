"""/search/status, the dead-letter list and retry, and /readyz's feed figures, on the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.search.wiring import SearchFeed
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from tests.esserver import EsServer
from tests.integration.api.documented import assert_documented
from tests.integration.search.conftest import add_endpoint, insert_history

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def feed_client(db_dsn: str, es: EsServer) -> AsyncIterator[tuple[Client, SearchFeed, Database]]:
    db = await Database.connect(db_dsn, max_size=4)
    settings = Settings(elasticsearch_url=es.url, elasticsearch_sync_interval=1)
    app = create_app(AppServices.build(db, settings))
    feed = SearchFeed.build(db.pool, settings)
    feed.attach(app)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, feed, db
    finally:
        await client.close()
        await feed.close()
        await db.close()


async def test_status_dead_letters_and_retry(feed_client: Any, es: EsServer) -> None:
    client, feed, db = feed_client
    assert await feed.setup()
    await add_endpoint(db.pool)
    ids = await insert_history(db.pool, "web-1", 3)
    # Break the mapping of one field, so the three documents are dead letters.
    props = es.component_templates["isp-service-status-mappings"]["template"]["mappings"]["properties"]
    props["response_time"] = {"type": "ip"}
    await feed.sync.sync_once()
    resp = await client.get("/search/status")
    status = await assert_documented(client, "get", "/search/status", resp)
    fam = status["families"]["service_status"]
    assert status["state"] == "ok" and status["setup_done"] is True and status["server_version"] == es.version
    assert fam["dead_letters"] == 3 and fam["backlog"] == 0 and fam["lag_seconds"] is not None
    assert status["families"]["system_logs"]["index_pattern"] == "isp-system-logs-*"

    resp = await client.get("/search/dead-letters", params={"limit": 2})
    page = await assert_documented(client, "get", "/search/dead-letters", resp)
    assert page["count"] == 2 and page["next_after"]
    first = page["items"][0]
    assert first["error_type"] == "mapper_parsing_exception" and "response_time" in first["reason"]
    resp = await client.get("/search/dead-letters", params={"after": page["next_after"]})
    rest = await assert_documented(client, "get", "/search/dead-letters", resp)
    assert {int(x["doc_id"]) for x in page["items"] + rest["items"]} == set(ids)

    # Still broken: refused again, the reason kept.
    resp = await client.post(f"/search/dead-letters/{first['id']}/retry")
    result = await assert_documented(client, "post", "/search/dead-letters/{letter_id}/retry", resp)
    assert result["result"] == "refused"
    # Fixed: indexed and removed.
    props["response_time"] = {"type": "float"}
    es.index_mappings.clear()
    resp = await client.post(f"/search/dead-letters/{first['id']}/retry")
    result = await assert_documented(client, "post", "/search/dead-letters/{letter_id}/retry", resp)
    assert result["result"] == "indexed" and result["doc_id"] in es.ids("isp-service-status-*")
    resp = await client.post(f"/search/dead-letters/{first['id']}/retry")
    assert resp.status == 404 and "letter_id" in (await resp.text())
    resp = await client.post("/search/dead-letters/abc/retry")
    assert resp.status == 400

    resp = await client.get("/readyz")
    ready = await assert_documented(client, "get", "/readyz", resp)
    assert ready["search"]["families"]["service_status"]["dead_letters"] == 2


async def test_status_says_why_when_elasticsearch_is_down(feed_client: Any, es: EsServer) -> None:
    client, feed, db = feed_client
    es.faults.down = True
    assert not await feed.setup()
    await add_endpoint(db.pool)
    await insert_history(db.pool, "web-1", 2)
    await feed.sync.sync_once()
    resp = await client.get("/search/status")
    status = await assert_documented(client, "get", "/search/status", resp)
    assert status["state"] == "failing" and status["error_kind"] == "connection"
    assert "cannot connect" in status["families"]["service_status"]["last_error"]
    resp = await client.get("/readyz")
    assert resp.status == 200  # the monitor is ready; the feed's trouble is a figure, not a failure


async def test_status_without_elasticsearch_url(client: Any) -> None:
    resp = await client.get("/search/status")
    status = await assert_documented(client, "get", "/search/status", resp)
    assert status == {
        "enabled": False,
        "state": "disabled",
        "error_kind": None,
        "interval_seconds": None,
        "last_round_at": None,
        "families": {},
    }
    resp = await client.post("/search/dead-letters/1/retry")
    assert resp.status == 409 and "ELASTICSEARCH_URL" in await resp.text()
