"""The dashboard with ISPMON_API_TOKEN set, in chromium: the page loads without a token and asks
for one; the read-only token shows the data but cannot save; the write token can."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from tests.e2e.browser import chromium, screenshot
from tests.integration.api.conftest import Client

pytestmark = pytest.mark.timeout(120)
TOKEN = "browser-write-token-0123456789"
READ_TOKEN = "browser-read-token-0123456789"


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    db = await Database.connect(db_dsn, max_size=4)
    settings = Settings(ispmon_api_token=TOKEN, ispmon_api_read_token=READ_TOKEN)
    test_client: Client = TestClient(TestServer(create_app(AppServices.build(db, settings))))
    await test_client.start_server()
    try:
        yield test_client
    finally:
        await test_client.close()
        await db.close()


async def test_reads_need_a_token_and_writes_the_write_token(client: Client) -> None:
    resp = await client.post(
        "/services/",
        json={"id": "web", "name": "Web", "url": "tcp://127.0.0.1:9", "is_active": True},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status == 201
    base = str(client.make_url("/"))
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(base)
        await page.wait_for_selector("#token-box:not([hidden])", timeout=10_000)
        assert "bearer token is required" in await page.inner_text("#error")
        assert await page.locator(".cell").count() == 0

        await page.fill("#token", READ_TOKEN)
        await page.click("#token-save")
        await page.wait_for_selector('.cell[data-id="web"]', timeout=10_000)
        await page.wait_for_selector("#live.on", timeout=10_000)
        await page.click("#view-editor summary")
        await page.fill('#view-form [name="name"]', "Checks")
        await page.select_option('#view-form [name="source"]', "checks_by_status")
        await page.click('#view-form button[type="submit"]')
        await page.wait_for_function("document.getElementById('error').textContent.includes('scope is read')")
        await screenshot(page, "dashboard-read-token")
        assert (await client.get("/views/checks", headers={"Authorization": f"Bearer {TOKEN}"})).status == 404

        # The 403 opened the token box again, for the write token.
        await page.wait_for_selector("#token-box:not([hidden])")
        await page.fill("#token", TOKEN)
        await page.click("#token-save")
        await page.wait_for_selector('.cell[data-id="web"]', timeout=10_000)
        await page.click('#view-form button[type="submit"]')
        await page.wait_for_selector('#pinned .view[data-view="checks"]', timeout=10_000)
        assert (await client.get("/views/checks", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
