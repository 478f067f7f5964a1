"""Alerting through the daemon as a process: a config file with a webhook channel (apprise json://
pointed at a receiver on 127.0.0.1), a real outage, faults on the receiver, and `kill -9` with a
backlog in the outbox. Each alert must reach the receiver exactly once, and the channel's password
must appear nowhere: not in the API, not in the log.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .test_daemon import Daemon, Target, free_port, poll, wait_for_datagram

pytestmark = pytest.mark.timeout(240)
SECRET = "s3cret-hook-pw"


class Receiver:
    """A webhook receiver: records every JSON body it accepted; can answer 500s or be down."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[dict[str, Any]] = []
        self.failures_left = 0
        self.runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.failures_left > 0:
            self.failures_left -= 1
            return web.Response(status=500, text="try later")
        self.accepted.append(body)
        return web.Response(text="ok")

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def titles(self) -> list[str]:
        return [b.get("title", "") for b in self.accepted]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(free_port())
    await r.up()
    yield r
    await r.down()


async def test_alerts_are_delivered_once_through_faults_and_kill_9(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], receiver: Receiver
) -> None:
    notify_path, notify = notify_socket
    target = Target(free_port())
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f"""
[settings]
alert_notification_channels = "webhook"
alert_retry_base_seconds = 0.2
alert_retry_max_seconds = 0.5

[channels]
webhook = "json://noc:{SECRET}@127.0.0.1:{receiver.port}/hook"

[[endpoints]]
id = "web"
name = "Web front end"
url = "http://127.0.0.1:{target.port}/health"
check_interval = 1
timeout = 0.5
"""
    )
    api_port = free_port()
    env = {
        "ISPMON_CONFIG": str(config),
        "OUTAGE_DETECTION_THRESHOLD": "2",
        "OUTAGE_VERIFICATION_CHECKS": "1",
        "OUTAGE_RECOVERY_THRESHOLD": "1",
        "SERVICE_CHECK_RETRIES": "0",
        # The kill -9 below may land while an attempt at the resolved page is in flight (attempts
        # run every 0.5 s while the receiver is down); that row stays leased for
        # max(ALERT_SEND_LEASE_SECONDS, 4 x ALERT_SEND_TIMEOUT) after the restart, 60 s by default,
        # longer than the wait for the page below: 8 s here. (CI once failed on exactly that.)
        "ALERT_SEND_TIMEOUT": "2",
        "ALERT_SEND_LEASE_SECONDS": "5",
    }
    daemon = Daemon(tmp_path, api_port, notify_path, env)
    base = f"http://127.0.0.1:{api_port}"
    logs: list[str] = []
    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> Any:
            async with http.get(base + path) as resp:
                assert resp.status == 200, (path, resp.status, await resp.text())
                return await resp.json()

        daemon.start()
        try:
            await wait_for_datagram(notify, "READY=1", timeout=90)
            # Bad input: an invalid apprise URL is a 422 that names the field, not the URL.
            async with http.post(base + "/channels/", json={"name": "pager", "url": "nosuch://x"}) as resp:
                assert resp.status == 422
                error = await resp.json()
                assert error["errors"][0]["field"] == "url"
            channels = await get("/channels/")
            assert [c["name"] for c in channels["items"]] == ["webhook"]
            assert SECRET not in str(channels) and channels["items"][0]["kinds"] == ["webhook"]

            # The target is down and the receiver fails twice: the declared alert arrives once.
            receiver.failures_left = 2
            alerts = await poll(
                lambda: get("/alerts/"), lambda a: a["count"] == 1, 30, "an alert for the outage"
            )
            alert_id = alerts["items"][0]["id"]
            await poll(lambda: _async(receiver.titles), lambda t: len(t) == 1, 30, "the declared page")
            assert "DOWN" in receiver.titles()[0] and "Web front end" in receiver.titles()[0]
            assert f"/outages/{alerts['items'][0]['outage_id']}" in receiver.accepted[0]["message"]
            detail = await get(f"/alerts/{alert_id}")
            [page] = detail["notifications"]
            assert page["delivered"] is True and page["attempts"] == 3 and page["recipients"] == "webhook"

            # Backlog: the receiver is down when the outage resolves; kill -9 while it is pending.
            await receiver.down()
            await target.up()
            await poll(
                lambda: get(f"/alerts/{alert_id}"),
                lambda a: (
                    a["state"] == "resolved"
                    and any(n["event"] == "resolved" and n["attempts"] >= 1 for n in a["notifications"])
                ),
                30,
                "a failed attempt at the resolved page",
            )
            daemon.kill9()
            logs.append(daemon.log_path.read_text())
            await receiver.up()
            daemon.start()
            await wait_for_datagram(notify, "READY=1", timeout=60)
            await poll(lambda: _async(receiver.titles), lambda t: len(t) >= 2, 30, "the resolved page")
            await asyncio.sleep(1.5)  # anything sent twice would have arrived by now
            titles = receiver.titles()
            assert len(titles) == 2, titles
            assert "RESOLVED" in titles[1] and "after" in titles[1]

            # An operator's test message, through the CLI (a channel of the config file).
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "ispmon", "notify-test", "webhook"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            assert done.stdout.startswith("OK") and SECRET not in done.stdout
            assert len(receiver.accepted) == 3 and "test" in receiver.titles()[2].lower()
            unknown = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "ispmon", "notify-test", "nosuch"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert unknown.returncode == 2 and "nosuch" in unknown.stderr
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                assert daemon.terminate() == 0
            logs.append(daemon.log_path.read_text())
            await target.down()
    text = "\n".join(logs)
    assert "notification_sent" in text and "notification_failed" in text
    assert SECRET not in text


async def _async(fn: Any) -> Any:
    return fn()
