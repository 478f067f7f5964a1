"""Pages through a failing receiver and a `kill -9`, counted by idempotency key at the receiver.

The daemon as a process, a webhook channel (apprise json://) to an aiohttp receiver on 127.0.0.1.
Several endpoints go down; the receiver answers 500 while their pages pile up in the outbox; the
daemon is killed with them pending, restarted, the receiver recovers, the endpoints come back. Every
notification in the table must have reached the receiver, and exactly once: the receiver counts
what it accepted by the key each one carries.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from .test_daemon import Daemon, Target, free_port, poll, wait_for_datagram

pytestmark = pytest.mark.timeout(240)
DOWN = 4  # endpoints: each pages once when declared and once when resolved


@dataclass
class KeyCountingReceiver:
    """Accepts JSON webhooks unless `failing`; remembers the key of each accepted one."""

    port: int = 0
    failing: bool = True
    refused: int = 0
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (header key, body key)
    runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.failing:
            self.refused += 1
            return web.Response(status=500, text="try later")
        self.accepted.append((request.headers.get("Idempotency-Key", ""), body.get("idempotency_key", "")))
        return web.Response(text="ok")

    async def up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = self.runner.addresses[0][1]

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def receiver() -> AsyncIterator[KeyCountingReceiver]:
    r = KeyCountingReceiver()
    await r.up()
    yield r
    await r.down()


async def test_pages_pending_at_kill_9_behind_a_failing_receiver_arrive_once_each(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], db_dsn: str, receiver: KeyCountingReceiver
) -> None:
    notify_path, notify = notify_socket
    targets = [Target(free_port()) for _ in range(DOWN)]  # not started: connection refused
    endpoints = "".join(
        f'[[endpoints]]\nid = "web{i}"\nname = "Web {i}"\nurl = "http://127.0.0.1:{t.port}/health"\n'
        "check_interval = 1\ntimeout = 0.5\n"
        for i, t in enumerate(targets)
    )
    config = tmp_path / "ispmon.toml"
    config.write_text(
        f"""
[settings]
alert_notification_channels = "webhook"
alert_retry_base_seconds = 0.5
alert_retry_max_seconds = 1
alert_max_attempts = 100
alert_channel_rate_limit = 1000

[channels]
webhook = "json://127.0.0.1:{receiver.port}/hook"

{endpoints}"""
    )
    env = {
        "ISPMON_CONFIG": str(config),
        "DATABASE_URL": db_dsn,
        "OUTAGE_DETECTION_THRESHOLD": "2",
        "OUTAGE_VERIFICATION_CHECKS": "1",
        "OUTAGE_RECOVERY_THRESHOLD": "1",
        "SERVICE_CHECK_RETRIES": "0",
        # The sender's lease is max(ALERT_SEND_LEASE_SECONDS, 4 x ALERT_SEND_TIMEOUT): 8 s here, so
        # a page in flight at the kill comes back within the waits below (defaults: 120 s).
        "ALERT_SEND_TIMEOUT": "2",
        "ALERT_SEND_LEASE_SECONDS": "5",
    }
    daemon = Daemon(tmp_path, free_port(), notify_path, env)
    conn = await asyncpg.connect(db_dsn)

    async def pending_tried() -> int:
        value: int = await conn.fetchval(
            "SELECT count(*) FROM notifications WHERE state = 'pending' AND attempts >= 2"
        )
        return value

    async def states() -> dict[str, int]:
        rows = await conn.fetch("SELECT state, count(*) AS n FROM notifications GROUP BY state")
        return {r["state"]: r["n"] for r in rows}

    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        # Every endpoint's page has failed at least twice and is still pending; keep failing a while.
        await poll(pending_tried, lambda n: n == DOWN, 40, "every page failing and pending")
        await asyncio.sleep(3)
        await asyncio.to_thread(daemon.kill9)
        assert await states() == {"pending": DOWN}
        refused_before_restart = receiver.refused
        receiver.failing = False
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        # A page in flight at the kill is leased for 8 s from its last try: allow for one.
        await poll(states, lambda s: s == {"sent": DOWN}, 90, "the pending pages to go out")
        for t in targets:
            await t.up()
        # A kill mid-send leaves a lease of 8 s on that row: allow for one.
        await poll(states, lambda s: s == {"sent": 2 * DOWN}, 100, "the resolved pages")
        await asyncio.sleep(1.5)  # a second copy of anything would have arrived by now
        keys = [r["idempotency_key"] for r in await conn.fetch("SELECT idempotency_key FROM notifications")]
        assert await asyncio.to_thread(daemon.terminate) == 0
    finally:
        await conn.close()
        daemon.cleanup()
        for t in targets:
            await t.down()
    assert all(header == body for header, body in receiver.accepted)
    received = Counter(header for header, _ in receiver.accepted)
    print(
        f"\n{len(keys)} notifications; the receiver refused {refused_before_restart} attempts before the "
        f"kill -9 and accepted {len(receiver.accepted)}: {sum(1 for n in received.values() if n == 1)} "
        f"exactly once, {sum(n - 1 for n in received.values())} duplicated"
    )
    assert refused_before_restart >= 2 * DOWN
    assert received == Counter(keys) and set(received.values()) == {1}
