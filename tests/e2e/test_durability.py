"""Nothing lost, nothing counted twice: the daemon as a process under load, with PostgreSQL made
unreachable, and with `kill -9`.

Many HTTP endpoints, one check a second each, point at one aiohttp target on 127.0.0.1 that records
when each endpoint's check arrived. After the fault the target's record is compared with
`status_history`, check by check: every check the target saw has exactly one row (a row's
`checked_at` is when its check started, just before the target saw it).
The daemon talks to PostgreSQL through `PgProxy`, so a test can cut it off the shared server.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from .pgproxy import PgProxy
from .test_daemon import Daemon, free_port, poll, wait_for_datagram

pytestmark = pytest.mark.timeout(240)
ENDPOINTS = 200  # at one check a second each: 200 checks/s
# The daemon stamps a check before it sends, the target when its handler runs: same clock, so the
# row comes first; the slack only covers the two processes reading it.
CLOCK_SLACK = 0.01


@dataclass
class CountingTarget:
    """Answers GET /e/<endpoint id>; remembers the wall-clock time of every check, per endpoint."""

    port: int = 0
    seen: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    runner: web.AppRunner | None = None

    async def _hit(self, request: web.Request) -> web.Response:
        self.seen[request.match_info["endpoint"]].append(time.time())
        return web.Response(text="ok")

    async def up(self) -> None:
        app = web.Application()
        app.router.add_get("/e/{endpoint}", self._hit)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()
        self.port = self.runner.addresses[0][1]

    async def down(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def total(self, before: float) -> int:
        return sum(1 for times in self.seen.values() for t in times if t < before)


@pytest.fixture
async def target() -> AsyncIterator[CountingTarget]:
    t = CountingTarget()
    await t.up()
    yield t
    await t.down()


@pytest.fixture
async def proxy(db_dsn: str) -> AsyncIterator[PgProxy]:
    p = PgProxy(db_dsn)
    await p.start()
    yield p
    await p.close()


def config_with_endpoints(path: Path, port: int, ids: list[str], down_port: int | None = None) -> Path:
    """One config file: an HTTP endpoint per id on the counting target, checked every second;
    ids starting with 'down' point at `down_port`, where nothing listens."""
    blocks = []
    for endpoint_id in ids:
        url = (
            f"http://127.0.0.1:{down_port}/"
            if endpoint_id.startswith("down")
            else f"http://127.0.0.1:{port}/e/{endpoint_id}"
        )
        blocks.append(
            f'[[endpoints]]\nid = "{endpoint_id}"\nname = "{endpoint_id}"\nurl = "{url}"\n'
            "check_interval = 1\ntimeout = 0.8\n"
        )
    path.write_text("\n".join(blocks))
    return path


def daemon_env(config: Path, dsn: str) -> dict[str, str]:
    return {
        "ISPMON_CONFIG": str(config),
        "DATABASE_URL": dsn,
        "SERVICE_CHECK_RETRIES": "0",  # one request per check: the target's count is the check count
        "OUTAGE_DETECTION_THRESHOLD": "2",
        "OUTAGE_VERIFICATION_CHECKS": "1",
    }


@dataclass
class Reconciliation:
    checks: int  # checks the target saw before the cut-off
    lost: list[tuple[str, float]]  # (endpoint, target time) of checks without a row
    duplicated: int  # rows beyond one per check (same endpoint and time, or no check to match)


async def reconcile(db_dsn: str, target: CountingTarget, before: float) -> Reconciliation:
    """Match the target's checks before `before` (epoch seconds) with the history rows, one to one."""
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT endpoint_id, extract(epoch FROM checked_at)::float8 AS at FROM status_history"
            " WHERE endpoint_id NOT LIKE 'down%' ORDER BY endpoint_id, checked_at"
        )
    finally:
        await conn.close()
    by_endpoint: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_endpoint[row["endpoint_id"]].append(row["at"])
    lost: list[tuple[str, float]] = []
    duplicated = 0
    checks = 0
    for endpoint_id in set(target.seen) | set(by_endpoint):
        hits = sorted(t for t in target.seen.get(endpoint_id, []) if t < before)
        stamps = sorted(by_endpoint.get(endpoint_id, []))
        checks += len(hits)
        # One check at a time per endpoint, stamped when it starts: rows and hits interleave,
        # row₁ ≤ hit₁ < row₂ ≤ hit₂ < ...; so each hit owns the rows since the previous hit.
        previous = float("-inf")
        for hit in hits:
            owned = sum(1 for s in stamps if previous < s <= hit + CLOCK_SLACK)
            if owned == 0:
                lost.append((endpoint_id, hit))
            duplicated += max(0, owned - 1)
            previous = hit + CLOCK_SLACK
    return Reconciliation(checks, lost, duplicated)


async def readyz(http: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_postgres_unreachable_under_load_loses_and_duplicates_nothing(
    tmp_path: Path,
    notify_socket: tuple[Path, socket.socket],
    db_dsn: str,
    proxy: PgProxy,
    target: CountingTarget,
) -> None:
    notify_path, notify = notify_socket
    ids = [f"e{i:03d}" for i in range(ENDPOINTS)]
    config = config_with_endpoints(tmp_path / "ispmon.toml", target.port, ids)
    api_port = free_port()
    daemon = Daemon(tmp_path, api_port, notify_path, daemon_env(config, proxy.dsn()))
    daemon.start()
    async with aiohttp.ClientSession() as http:
        try:
            await wait_for_datagram(notify, "READY=1", timeout=90)
            await asyncio.sleep(4)
            assert target.total(time.time()) >= ENDPOINTS * 2  # the load is on
            cut_at = time.time()
            await proxy.cut()
            await asyncio.sleep(8)
            during = await readyz(http, api_port)
            assert during["status"] == "not_ready" and during["monitor"]["writer"]["backlog"] > ENDPOINTS * 5
            await proxy.restore()
            restored_at = time.monotonic()
            # Drained: the backlog is back to what one flush interval gathers.
            after = await poll(
                lambda: readyz(http, api_port),
                lambda r: r["status"] == "ready" and r["monitor"]["writer"]["backlog"] < ENDPOINTS,
                30,
                "the write backlog to drain",
            )
            drained_in = time.monotonic() - restored_at
            assert after["monitor"]["writer"]["dropped"] == 0
            await asyncio.sleep(2)
            stop_at = time.time()
            # In a thread: the relay and the target live in this event loop, and the daemon's
            # last flush goes through the relay.
            assert await asyncio.to_thread(daemon.terminate) == 0
        finally:
            daemon.cleanup()
    # Checks in flight at SIGTERM are cancelled; compare what had time to finish well before it.
    result = await reconcile(db_dsn, target, before=stop_at - 1.5)
    print(
        f"\nPostgreSQL unreachable 8 s under {ENDPOINTS} checks/s: {result.checks} checks, "
        f"{len(result.lost)} lost, {result.duplicated} duplicated, backlog drained {drained_in:.1f} s "
        f"after it was back (cut at {stop_at - cut_at:.0f} s before the stop)"
    )
    assert result.checks >= ENDPOINTS * 14
    lost_at = sorted(round(t - cut_at, 2) for _, t in result.lost)  # seconds after the cut
    assert result.lost == [] and result.duplicated == 0, (
        len(lost_at),
        lost_at[:5],
        lost_at[-5:],
        result.duplicated,
    )
    lines = daemon.log_lines()
    failed = [line for line in lines if line.get("event") == "write_failed"]
    # One line per retry with backoff, not one per check.
    assert 1 <= len([f for f in failed if f.get("table") == "status_history"]) <= 10, len(failed)
    assert not [
        line for line in lines if line.get("event") in ("write_buffer_full", "write_lost_at_shutdown")
    ]


async def test_kill_9_under_load_loses_only_the_last_flush_and_declares_no_outage_twice(
    tmp_path: Path, notify_socket: tuple[Path, socket.socket], db_dsn: str, target: CountingTarget
) -> None:
    notify_path, notify = notify_socket
    down = [f"down{i}" for i in range(10)]
    ids = [f"e{i:03d}" for i in range(ENDPOINTS)] + down
    config = config_with_endpoints(tmp_path / "ispmon.toml", target.port, ids, down_port=free_port())
    daemon = Daemon(tmp_path, free_port(), notify_path, daemon_env(config, db_dsn))
    conn = await asyncpg.connect(db_dsn)

    async def declared() -> tuple[int, int]:
        outages = await conn.fetchval("SELECT count(*) FROM outages WHERE endpoint_id LIKE 'down%'")
        events = await conn.fetchval(
            "SELECT count(*) FROM endpoint_events WHERE endpoint_id LIKE 'down%' AND kind = 'outage_declared'"
        )
        return outages, events

    daemon.start()
    try:
        await wait_for_datagram(notify, "READY=1", timeout=90)
        await poll(declared, lambda n: n == (len(down), len(down)), 30, "an outage per down endpoint")
        await asyncio.sleep(2)
        killed_at = time.time()
        await asyncio.to_thread(daemon.kill9)
        daemon.start()
        await wait_for_datagram(notify, "READY=1", timeout=60)
        await asyncio.sleep(4)  # several more failing checks of the open outages
        stop_at = time.time()
        assert await asyncio.to_thread(daemon.terminate) == 0
        open_outages = await conn.fetch(
            "SELECT endpoint_id, count(*) AS n FROM outages WHERE resolved_at IS NULL GROUP BY endpoint_id"
        )
        assert await declared() == (len(down), len(down))
    finally:
        await conn.close()
        daemon.cleanup()
    assert sorted((r["endpoint_id"], r["n"]) for r in open_outages) == [(d, 1) for d in down]
    result = await reconcile(db_dsn, target, before=stop_at - 1.5)
    # What kill -9 takes: the rows buffered since the last flush (every 0.5 s), and checks in flight.
    lost_window = max((killed_at - t for _, t in result.lost), default=0.0)
    print(
        f"\nkill -9 under {ENDPOINTS} checks/s: {result.checks} checks, {len(result.lost)} lost "
        f"(the last {lost_window:.2f} s before the kill), {result.duplicated} duplicated"
    )
    assert result.checks >= ENDPOINTS * 6 and result.duplicated == 0
    # The target's handler can run a moment after the kill for a request sent before it.
    assert all(killed_at - 1.0 < t <= killed_at + 0.5 for _, t in result.lost), sorted(
        t - killed_at for _, t in result.lost
    )
