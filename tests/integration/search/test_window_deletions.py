"""A maintenance window deleted here (API, config reload) leaves the index too, reliably."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.search.sync import SearchSync
from ispmon.search.wiring import SearchFeed
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.store.maintenance import MaintenanceRepo
from tests.esserver import EsServer

Client = TestClient[web.Request, web.Application]
INDEX = "isp-maintenance-windows"
SPEC = {
    "starts_at": "2030-01-01T02:00:00+00:00",
    "ends_at": "2030-01-01T04:00:00+00:00",
    "all_endpoints": True,
}


@pytest.fixture
async def api(db_dsn: str, es: EsServer) -> AsyncIterator[tuple[Client, SearchFeed]]:
    db = await Database.connect(db_dsn, max_size=4)
    settings = Settings(elasticsearch_url=es.url, elasticsearch_sync_interval=1)
    app = create_app(AppServices.build(db, settings))
    feed = SearchFeed.build(db.pool, settings)
    feed.attach(app)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, feed
    finally:
        await client.close()
        await feed.close()
        await db.close()


async def add_window(
    pool: asyncpg.Pool, window_id: str, name: str = "Core upgrade", source: str = "api"
) -> None:
    assert await MaintenanceRepo(pool).insert(
        window_id, name, {"id": window_id, "name": name, **SPEC}, source
    )


async def pending(pool: asyncpg.Pool) -> list[str]:
    return [r["doc_id"] for r in await pool.fetch("SELECT doc_id FROM search_deletions ORDER BY doc_id")]


async def test_a_window_deleted_through_the_api_leaves_the_index(api: Any, es: EsServer) -> None:
    client, feed = api
    assert await feed.setup()
    ids = []
    for name in ("Core upgrade", "Edge upgrade"):
        resp = await client.post("/maintenance/", json={"name": name, **SPEC})
        assert resp.status == 201, await resp.text()
        ids.append((await resp.json())["id"])
    await feed.sync.sync_once()
    assert sorted(es.ids(INDEX)) == sorted(ids)
    assert (await client.delete(f"/maintenance/{ids[0]}")).status == 204
    await feed.sync.sync_once()
    assert feed.sync.failing is None, feed.sync.status()
    assert es.ids(INDEX) == [ids[1]]  # the other window stays
    assert await pending(feed.sync.pool) == []
    # Nothing more to delete: the next round sends no delete.
    before = es.bulk_items
    await feed.sync.sync_once()
    assert es.bulk_items == before


async def test_a_window_removed_from_the_config_leaves_the_index(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    repo = MaintenanceRepo(pool)
    window = {"name": "Nightly", **SPEC}
    await repo.sync_config(
        [("nightly", "Nightly", {"id": "nightly", **window}), ("kept", "Kept", {**window})]
    )
    sync: SearchSync = await make_sync()
    await sync.sync_once()
    assert sorted(es.ids(INDEX)) == ["kept", "nightly"]
    assert await repo.sync_config([("kept", "Kept", {**window})]) == ["nightly"]  # a reload without it
    await sync.sync_once()
    assert es.ids(INDEX) == ["kept"] and await pending(pool) == []


async def test_elasticsearch_down_during_the_delete_and_a_restart(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_window(pool, "mw1")
    sync: SearchSync = await make_sync()
    await sync.sync_once()
    assert es.ids(INDEX) == ["mw1"]
    es.faults.down = True
    assert await MaintenanceRepo(pool).delete("mw1")
    await sync.sync_once()
    assert sync.failing == "connection"
    assert await pending(pool) == ["mw1"]  # recorded in PostgreSQL, not lost with the round
    # The daemon restarts before Elasticsearch is back: a new sync finds the record.
    restarted: SearchSync = await make_sync(setup=False)
    await restarted.sync_once()
    assert restarted.failing == "connection" and await pending(pool) == ["mw1"]
    es.faults.down = False
    await restarted.sync_once()
    assert restarted.failing is None, restarted.status()
    assert es.ids(INDEX) == [] and await pending(pool) == []


async def test_a_refused_delete_is_retried_and_an_already_gone_document_is_done(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_window(pool, "mw1")
    await add_window(pool, "mw2")
    sync: SearchSync = await make_sync()
    await sync.sync_once()
    es.docs[INDEX].pop("mw2")  # gone from the index already (deleted by hand): a 404 not_found
    # 429 on every attempt: the deletes are retried item by item, then the round gives up as for
    # documents (Unavailable: nothing of the batch is final) and the records stay.
    es.faults.reject_ids = {"mw1"}
    repo = MaintenanceRepo(pool)
    assert await repo.delete("mw1") and await repo.delete("mw2")
    await sync.sync_once()
    assert sync.failing == "rejected" and await pending(pool) == ["mw1", "mw2"] and es.ids(INDEX) == ["mw1"]
    es.faults.reject_ids = set()
    await sync.sync_once()
    assert es.ids(INDEX) == [] and await pending(pool) == []


async def test_a_window_deleted_then_created_again_keeps_its_new_document(
    pool: asyncpg.Pool, es: EsServer, make_sync
) -> None:
    await add_window(pool, "mw1", "Old name")
    sync: SearchSync = await make_sync()
    await sync.sync_once()
    repo = MaintenanceRepo(pool)
    assert await repo.delete("mw1")
    assert await pending(pool) == ["mw1"]
    await add_window(pool, "mw1", "New name")  # before the feed's next round
    assert await pending(pool) == []  # the trigger took the record back
    await sync.sync_once()
    assert es.all_docs(INDEX)[(INDEX, "mw1")]["name"] == "New name"
