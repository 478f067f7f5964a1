"""The dashboard and the status page in a real browser against a real `ispmon run`.

The page loads, shows the endpoints created through the API, and changes within seconds when a
target goes down, without a reload (the Server-Sent Events stream); the status page shows only
the public endpoints; a view composed in the page is saved and comes back after a reload.
Screenshots: tests/artifacts/.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.browser import chromium, screenshot
from tests.e2e.test_daemon import Daemon, Target, free_port, poll

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_the_dashboard_follows_a_target_going_down_without_a_reload(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], http: aiohttp.ClientSession, db_dsn: str
) -> None:
    notify_path, _ = notify_socket
    api_port = free_port()
    target = Target(free_port())
    await target.up()
    daemon = Daemon(
        tmp_path,
        api_port,
        notify_path,
        {
            "DATABASE_URL": db_dsn,
            "OUTAGE_DETECTION_THRESHOLD": "1",
            "OUTAGE_VERIFICATION_ENABLED": "false",
            "SERVICE_CHECK_RETRIES": "0",
        },
    )
    base = f"http://127.0.0.1:{api_port}"

    async def post(path: str, body: dict[str, Any]) -> None:
        async with http.post(base + path, json=body) as resp:
            assert resp.status == 201, await resp.text()

    try:
        daemon.start()
        await poll(lambda: http.get(base + "/readyz"), lambda r: r.status == 200, 60, "readyz")
        common = {"check_interval": 1, "timeout": 0.5}
        await post("/services/", {"id": "web", "name": "Web front", "url": f"http://127.0.0.1:{target.port}/health",
                                  "tags": ["core"], "public": True, "public_name": "Website", **common})
        await post("/services/", {"id": "edge-tcp", "name": "Edge TCP", "url": f"tcp://127.0.0.1:{target.port}",
                                  "tags": ["edge"], **common})
        await post("/services/", {"id": "billing", "name": "billing-db-primary", "url": "tcp://127.0.0.1:9",
                                  "tags": ["internal"], **common})
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            await page.goto(base + "/")
            await page.wait_for_selector('.cell[data-id="web"][data-status="up"]', timeout=15_000)
            await page.wait_for_selector('.cell[data-id="edge-tcp"][data-status="up"]', timeout=15_000)
            await page.wait_for_selector('.cell[data-id="billing"][data-status="down"]', timeout=15_000)
            groups = await page.eval_on_selector_all(".group", "els => els.map(e => e.dataset.group)")
            assert groups == ["core", "edge", "internal"]
            await page.wait_for_selector("#live.on", timeout=10_000)
            await page.evaluate("window.__sameDocument = 42")
            await screenshot(page, "dashboard-up")

            await target.down()
            await page.wait_for_selector('.cell[data-id="web"][data-status="down"]', timeout=20_000)
            await page.wait_for_selector('.cell[data-id="edge-tcp"][data-status="down"]', timeout=20_000)
            assert await page.inner_text('.group[data-group="core"] h3 span') == "1 · 1 not up"
            # Changed in place: the same document, never navigated again.
            assert await page.evaluate("window.__sameDocument") == 42
            assert navigations == [base + "/"]
            # The outage the monitor declared is listed with its duration.
            await page.wait_for_selector("#outages .dur", timeout=20_000)
            await page.click('.cell[data-id="web"]')
            await page.wait_for_selector("#detail-chart .uplot", timeout=10_000)
            await screenshot(page, "dashboard-down")

            # A view composed in the page is saved through /views/ and pinned.
            await page.click("#view-editor summary")
            await page.fill('#view-form [name="name"]', "Web latency")
            await page.fill('#view-form [name="target"]', "web")
            await page.click('#view-form button[type="submit"]')
            await page.wait_for_selector('#pinned .view[data-view="web-latency"] .uplot', timeout=10_000)
            async with http.get(base + "/views/web-latency") as resp:
                saved = await resp.json()
            assert saved["series"] == [{"source": "endpoint_response_time", "target": "web", "label": None}]
            assert saved["pinned"] is True
            await page.reload()
            await page.wait_for_selector('#pinned .view[data-view="web-latency"] .uplot', timeout=10_000)

            status = await browser.new_page()
            await status.goto(base + "/status")
            text = await status.inner_text("body")
            assert "Website" in text
            for hidden in ("Web front", "Edge TCP", "billing", "127.0.0.1"):
                assert hidden not in text
            assert await status.locator(".svc").count() == 1
            await screenshot(status, "status-page")
            assert errors == []
    finally:
        await target.down()
        if daemon.proc is not None and daemon.proc.poll() is None:
            assert daemon.terminate() == 0
        daemon.cleanup()
