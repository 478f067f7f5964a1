"""The dashboard's own routes: the page and its files, /dashboard/grid and /dashboard/checks
(documented exactly), and the /events stream (authenticated, holding no admission place)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.models import ProbeResult, Status
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS, history_row
from ispmon.web.stream import HUB
from tests.integration.api.conftest import Client
from tests.integration.api.documented import assert_documented

TOKEN = "dashboard-test-token-0123456789"
READ_TOKEN = "dashboard-read-token-0123456789"


async def _endpoints(client: Client) -> None:
    for body in (
        {"id": "web", "name": "Web", "url": "http://127.0.0.1:9/", "tags": ["core", "http"]},
        {"id": "dns", "name": "DNS", "url": "dns://127.0.0.1/example.org", "tags": ["core"]},
        {"id": "off", "name": "Off", "url": "tcp://127.0.0.1:9", "is_active": False},
    ):
        resp = await client.post("/services/", json=body)
        assert resp.status == 201, await resp.text()


async def test_the_grid_lists_active_endpoints_with_their_last_status(client: Client, services: AppServices) -> None:
    await _endpoints(client)
    now = datetime.now(UTC)
    rows = [
        history_row("web", now - timedelta(minutes=2), ProbeResult(Status.UP, 5.0)),
        history_row("web", now - timedelta(minutes=1), ProbeResult(Status.DOWN, None)),
    ]
    await services.db.pool.copy_records_to_table("status_history", records=rows, columns=HISTORY_COLUMNS)
    resp = await client.get("/dashboard/grid", headers={"Accept-Encoding": "gzip"})
    assert resp.headers.get("Content-Encoding") == "gzip"
    body = await assert_documented(client, "GET", "/dashboard/grid", resp)
    assert body["count"] == 2
    by_id = {e["id"]: e for e in body["endpoints"]}
    assert by_id["web"]["status"] == "down" and by_id["web"]["tags"] == ["core", "http"]
    assert by_id["dns"]["status"] == "unknown" and by_id["dns"]["response_time_ms"] is None
    # The fixed part is cached until the endpoints change: a rename shows on the next read.
    assert (await client.put("/services/dns", json={"name": "Resolver"})).status == 200
    resp = await client.get("/dashboard/grid")
    assert {e["id"]: e["name"] for e in (await resp.json())["endpoints"]} == {"web": "Web", "dns": "Resolver"}


async def test_checks_by_status_per_step_and_filter(client: Client, services: AppServices) -> None:
    await _endpoints(client)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    rows = [
        history_row("web", hour + timedelta(minutes=1), ProbeResult(Status.UP, 1.0)),
        history_row("web", hour + timedelta(minutes=2), ProbeResult(Status.DOWN, None)),
        history_row("dns", hour + timedelta(minutes=3), ProbeResult(Status.UP, 1.0)),
        history_row("dns", hour + timedelta(minutes=65), ProbeResult(Status.DEGRADED, 1.0)),
    ]
    await services.db.pool.copy_records_to_table("status_history", records=rows, columns=HISTORY_COLUMNS)
    params = {"since": hour.isoformat(), "until": (hour + timedelta(hours=2)).isoformat(), "step": "1h"}
    resp = await client.get("/dashboard/checks", params=params)
    body = await assert_documented(client, "GET", "/dashboard/checks", resp)
    assert body["step_seconds"] == 3600
    assert [b["counts"] for b in body["buckets"]] == [{"up": 2, "down": 1}, {"degraded": 1}]
    resp = await client.get("/dashboard/checks", params={**params, "protocol": "http"})
    assert [b["counts"] for b in (await resp.json())["buckets"]] == [{"up": 1, "down": 1}]
    resp = await client.get("/dashboard/checks", params={**params, "tag": "http", "step": "1d"})
    assert [b["counts"] for b in (await resp.json())["buckets"]] == [{"up": 1, "down": 1}]
    resp = await client.get("/dashboard/checks", params={"step": "raw", "since": "2020-01-01T00:00:00Z"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "step"
    resp = await client.get("/dashboard/checks", params={"step": "2m"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "step"


async def test_the_page_and_its_files_are_served_with_etags(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert '<script src="/static/app.js">' in await resp.text()
    etag = resp.headers["ETag"]
    assert (await client.get("/", headers={"If-None-Match": etag})).status == 304
    resp = await client.get("/static/vendor/uplot/uPlot.iife.min.js", headers={"Accept-Encoding": "gzip"})
    assert resp.status == 200 and resp.content_type == "text/javascript"
    assert resp.headers["Content-Encoding"] == "gzip"
    assert b"uPlot" in await resp.read()
    resp = await client.get("/static/vendor/uplot/LICENSE", headers={"Accept-Encoding": "identity"})
    assert "MIT License" in await resp.text()
    assert (await client.get("/static/nope.js")).status == 404
    assert (await client.get("/static/../app.py")).status == 404
    # The gzip form is the same file.
    plain = await (await client.get("/static/app.js", headers={"Accept-Encoding": "identity"})).read()
    resp = await client.get("/static/app.js", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await resp.read()) == plain


@pytest.fixture
async def token_services(db_dsn: str) -> AsyncIterator[AppServices]:
    db = await Database.connect(db_dsn, max_size=4)
    settings = Settings(
        ispmon_api_token=TOKEN, ispmon_api_read_token=READ_TOKEN, api_max_concurrent_requests=8
    )
    try:
        yield AppServices.build(db, settings)
    finally:
        await db.close()


async def test_with_a_token_the_page_is_open_and_its_data_and_stream_are_not(
    token_services: AppServices,
) -> None:
    client: Client = TestClient(TestServer(create_app(token_services)))
    await client.start_server()
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    write = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert (await client.get("/")).status == 200
        assert (await client.get("/static/app.js")).status == 200
        assert (await client.get("/dashboard/grid")).status == 401
        assert (await client.get("/events")).status == 401
        assert (await client.get("/dashboard/grid", headers=read)).status == 200
        view = {"name": "v", "series": [{"source": "checks_by_status"}]}
        assert (await client.post("/views/", json=view, headers=read)).status == 403
        assert (await client.post("/views/", json=view, headers=write)).status == 201

        # More open streams than the API has places: they hold none, the API still answers.
        streams = [await client.get("/events", headers=read) for _ in range(12)]
        for resp in streams:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/event-stream"
            hello = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert hello == b"retry: 2000\nevent: hello\ndata: {}\n\n"
        hub = client.app[HUB]
        assert hub.stats.clients == 12
        assert (await client.get("/views/", headers=read)).status == 200
        hub.publish("status", {"changes": [{"id": "x", "status": "down"}]})
        for resp in streams:
            message = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)
            assert b"event: status\n" in message and b'"status":"down"' in message
        for resp in streams:
            resp.close()
        for _ in range(50):
            if hub.stats.clients == 0:
                break
            await asyncio.sleep(0.05)
        assert hub.stats.clients == 0
    finally:
        await client.close()
