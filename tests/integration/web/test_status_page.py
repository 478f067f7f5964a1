"""The public status page: only public endpoints, under their public names and groups, with no id,
URL or error text; daily uptime from the outages; open incidents; ETag and Cache-Control."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from ispmon.services.context import AppServices
from ispmon.web import status
from tests.integration.api.conftest import Client

SECRET_URL = "http://127.0.0.1:9/internal-admin?token=s3cr3t"


async def _create(client: Client, body: dict[str, object]) -> None:
    resp = await client.post("/services/", json=body)
    assert resp.status == 201, await resp.text()


async def _setup(client: Client, services: AppServices) -> datetime:
    await _create(
        client,
        {"id": "core-web", "name": "core-web-internal", "url": SECRET_URL, "public": True,
         "public_name": "Website", "public_group": "web", "tags": ["secret-tag"]},
    )
    await _create(
        client,
        {"id": "mail-1", "name": "Mail", "url": "tcp://127.0.0.1:25", "public": True, "public_group": "mail"},
    )
    await _create(client, {"id": "hidden", "name": "billing-db-primary", "url": "tcp://127.0.0.1:5432"})
    pool = services.db.pool
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    await pool.execute("UPDATE endpoints SET created_at = $1", today - timedelta(days=120))
    day = today - timedelta(days=3)
    # A resolved 3-hour outage three days ago: that day's uptime is 21/24 = 87.50 %.
    await pool.execute(
        """INSERT INTO outages (endpoint_id, started_at, declared_at, resolved_at, status, severity, error)
           VALUES ('core-web', $1, $1, $2, 'down', 'major', 'refused by ' || $3)""",
        day + timedelta(hours=6),
        day + timedelta(hours=9),
        SECRET_URL,
    )
    # Open outages: the public one is an incident; the hidden one's must not leak.
    for endpoint in ("mail-1", "hidden"):
        await pool.execute(
            """INSERT INTO outages (endpoint_id, started_at, declared_at, status, severity, error)
               VALUES ($1, $2, $2, 'down', 'critical', 'connection refused')""",
            endpoint,
            now - timedelta(minutes=5),
        )
    return day


async def test_the_status_page_shows_only_public_endpoints_without_internal_details(
    client: Client, services: AppServices
) -> None:
    day = await _setup(client, services)
    resp = await client.get("/status")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "Website" in page and "Mail" in page
    for internal in ("core-web", "billing-db-primary", "hidden", "127.0.0.1", "internal-admin", "s3cr3t",
                     "secret-tag", "refused", "connection"):
        assert internal not in page, internal
    assert page.count('class="bars"') == 2
    assert len(re.findall(r"<i class=\"d-", page)) == 2 * 90
    assert f'title="{day.date().isoformat()}: 87.50 %"' in page
    assert 'id="incidents"' in page and "<b>Mail</b>: Outage (severity critical)" in page
    assert "Some systems are down" in page
    # Groups: one section each, in order; a group's page shows only it.
    assert re.findall(r'data-group="([^"]+)"', page) == ["mail", "web"]
    web_page = await (await client.get("/status/web")).text()
    assert "Website" in web_page and "Mail" not in web_page
    assert "All systems operational" in web_page and "incidents" not in web_page
    assert (await client.get("/status/nosuchgroup")).status == 404
    assert (await client.get("/status/Not%20a%20slug")).status == 404


async def test_the_status_page_is_cacheable(client: Client, services: AppServices) -> None:
    await _setup(client, services)
    resp = await client.get("/status")
    etag = resp.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert resp.headers["Cache-Control"] == f"public, max-age={int(status.TTL)}"
    again = await client.get("/status", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    # Served from memory within the TTL: a change shows after it.
    await services.db.pool.execute("UPDATE outages SET resolved_at = now() WHERE resolved_at IS NULL")
    assert (await client.get("/status")).headers["ETag"] == etag
    client.app[status.CACHE].clear()
    fresh = await client.get("/status", headers={"If-None-Match": etag})
    assert fresh.status == 200
    assert fresh.headers["ETag"] != etag
    assert "incidents" not in await fresh.text()


async def test_the_status_page_needs_no_token(db_dsn: str) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from ispmon.api.app import create_app
    from ispmon.config import Settings
    from ispmon.store.database import Database

    db = await Database.connect(db_dsn, max_size=2)
    settings = Settings(ispmon_api_token="a-long-enough-test-token-42")
    client: Client = TestClient(TestServer(create_app(AppServices.build(db, settings))))
    await client.start_server()
    try:
        assert (await client.get("/status")).status == 200
        assert (await client.get("/services/")).status == 401
    finally:
        await client.close()
        await db.close()


async def test_public_group_must_be_a_slug(client: Client) -> None:
    resp = await client.post(
        "/services/", json={"name": "x", "url": "tcp://127.0.0.1:1", "public": True, "public_group": "A B"}
    )
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "public_group"
