"""``GET /metrics`` scraped by Debian's real Prometheus, and checked by its ``promtool``.

The daemon's parts as `ispmon.daemon` wires them (a running Monitor with its writers, the app on
`start_api` with a write and a read token) against real HTTP targets on 127.0.0.1. Prometheus runs
from its own config (a free port, a temporary storage directory), scrapes every second with the
read token, and its HTTP API must return our series: ``ispmon_endpoint_up`` 1, then 0 once the
target stops listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import time
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ispmon.api.app import create_app, start_api
from ispmon.api.prometheus import expose_radius
from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import OutagePolicy
from ispmon.config import Settings
from ispmon.probes.base import ProbeContext
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter
from ispmon.usage.listener import start_listener
from ispmon.usage.nas import NasDirectory

pytestmark = pytest.mark.timeout(90)

TOKEN = "write-token-for-prometheus-0123"
READ_TOKEN = "read-token-for-prometheus-4567"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Target:
    """An HTTP server on 127.0.0.1 that answers 200, or stops listening (connection refused)."""

    def __init__(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._ok)
        self.runner = web.AppRunner(app, access_log=None)
        self.site: web.TCPSite | None = None
        self.port = 0

    @staticmethod
    async def _ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self) -> None:
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await self.site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None


class Daemon:
    """Monitor + writers + API, as the daemon wires them; `base` is the API's URL."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ctx = ProbeContext()
        self.history = BatchWriter(db.pool, "status_history", HISTORY_COLUMNS)
        self.events = BatchWriter(db.pool, "endpoint_events", EVENT_COLUMNS)
        self.monitor = Monitor(
            ctx=self.ctx,
            policy=OutagePolicy(detection_threshold=1, verification_checks=0, recovery_threshold=1),
            history=self.history,
            events=self.events,
            outages=db.outages,
        )
        self.base = ""
        self.radius: Any = None
        self.radius_port = 0
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None

    def add(self, name: str, url: str) -> None:
        spec = build_endpoint(
            {"id": name, "name": name, "url": url, "check_interval": 1, "timeout": 0.5, "retries": 0}
        )
        self.monitor.upsert(spec)

    async def start(self) -> None:
        self.history.start()
        self.events.start()
        settings = Settings(ispmon_api_token=TOKEN, ispmon_api_read_token=READ_TOKEN)
        app = create_app(AppServices.build(self.db, settings, self.monitor))
        # A real RADIUS accounting listener (no NAS known: every packet is an unknown_nas drop),
        # handed to the app as the daemon hands its own.
        self.radius, self.radius_port = await start_listener("127.0.0.1", 0, NasDirectory(), _no_commit)
        expose_radius(app, self.radius)
        self._runner, host, port = await start_api(app, "127.0.0.1", 0, TOKEN)
        self.base = f"http://{host}:{port}"
        self._task = asyncio.create_task(self.monitor.run())

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.radius is not None:
            await self.radius.close()
        await self.monitor.close()
        await self.history.close()
        await self.events.close()
        await self.ctx.close()


async def _no_commit(records: Any) -> None:
    raise AssertionError("no NAS is known: nothing may be committed")


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    server = Target()
    await server.start()
    try:
        yield server
    finally:
        await server.runner.cleanup()


@pytest.fixture
async def daemon(db: Database, target: Target) -> AsyncIterator[Daemon]:
    running = Daemon(db)
    running.add("web", f"http://127.0.0.1:{target.port}/health")
    await running.start()
    try:
        yield running
    finally:
        await running.close()


async def scrape(daemon: Daemon, token: str | None = READ_TOKEN, **headers: str) -> tuple[int, str, str]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.base}/metrics", headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def wait_for_check(daemon: Daemon, name: str) -> None:
    deadline = time.monotonic() + 10
    while daemon.monitor.runtimes[name].last is None:
        assert time.monotonic() < deadline, f"{name} was never checked"
        await asyncio.sleep(0.05)


async def test_metrics_need_a_token_like_every_read(daemon: Daemon) -> None:
    status, _, body = await scrape(daemon, token=None)
    assert status == 401 and "Authorization" in body
    status, _, _ = await scrape(daemon, token="not-the-token-at-all-000")
    assert status == 401
    status, content_type, _ = await scrape(daemon, token=TOKEN)
    assert status == 200 and content_type.startswith("text/plain")
    # Streamed: gzip when accepted (Prometheus asks for it), and HEAD answers without a body.
    auth = {"Authorization": f"Bearer {READ_TOKEN}"}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(f"{daemon.base}/metrics", headers={**auth, "Accept-Encoding": "gzip"}) as resp:
            assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
            assert b"ispmon_ready" in gzip.decompress(await resp.read())
        async with session.head(f"{daemon.base}/metrics", headers=auth) as resp:
            assert resp.status == 200 and await resp.read() == b""
    # The document says so: both exposition formats, a 401, the bearer scheme.
    async with aiohttp.ClientSession() as session, session.get(f"{daemon.base}/openapi.json") as resp:
        operation = (await resp.json())["paths"]["/metrics"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {"text/plain", "application/openmetrics-text"}
    assert "401" in operation["responses"] and operation["security"] == [{"bearerAuth": []}]


async def test_promtool_finds_no_problem(daemon: Daemon, db: Database) -> None:
    await db.pool.execute(
        "INSERT INTO notifications (idempotency_key, event, channel, title, body, short_body) "
        "VALUES ('k1', 'outage_declared', 'email', 't', 'b', 's')"
    )
    await wait_for_check(daemon, "web")
    status, content_type, text = await scrape(daemon)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert 'ispmon_endpoint_up{endpoint="web",protocol="http"} 1.0' in text
    assert "ispmon_outbox_pending 1.0" in text
    assert "ispmon_monitor_scheduler_completed_total" in text
    assert "ispmon_ready 1.0" in text
    promtool = await asyncio.create_subprocess_exec(
        PROMTOOL, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(promtool.communicate(text.encode()), 30)
    # promtool prints each problem it finds (a name, a unit, a missing HELP) and exits 1.
    assert promtool.returncode == 0, out.decode() + err.decode()
    assert out.decode().strip() == "" and err.decode().strip() == ""
    # OpenMetrics when the scraper asks for it (Prometheus does).
    status, content_type, text = await scrape(daemon, Accept="application/openmetrics-text; version=1.0.0")
    assert status == 200 and content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


@pytest.fixture
def prometheus(daemon: Daemon, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / f"prometheus-{os.getpid()}.yml"
    api = daemon.base.removeprefix("http://")
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: ispmon\n"
        f"    authorization:\n      credentials: {READ_TOKEN}\n"
        f"    static_configs:\n      - targets: ['{api}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def query(session: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    try:
        async with session.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
            if resp.status != 200:
                return []
            answer = await resp.json()
    except aiohttp.ClientConnectionError:  # not listening yet
        return []
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


async def wait_for(session: aiohttp.ClientSession, base: str, promql: str, value: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 40
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = await query(session, base, promql)
        if seen and all(item["value"][1] == value for item in seen):
            return seen
        await asyncio.sleep(0.25)
    raise AssertionError(f"{promql}: never {value}; last answer {seen}")


async def test_prometheus_scrapes_our_series(daemon: Daemon, target: Target, prometheus: str) -> None:
    async with aiohttp.ClientSession() as session:
        # The scrape itself succeeded: Prometheus parsed the exposition with the read token.
        await wait_for(session, prometheus, 'up{job="ispmon"}', "1")
        (series,) = await wait_for(session, prometheus, 'ispmon_endpoint_up{endpoint="web"}', "1")
        assert series["metric"]["protocol"] == "http"
        assert await query(session, prometheus, "ispmon_monitor_scheduler_completed_total")
        assert await query(session, prometheus, 'ispmon_endpoint_response_time_seconds{endpoint="web"}')
        await target.stop()
        await wait_for(session, prometheus, 'ispmon_endpoint_up{endpoint="web"}', "0")
        await wait_for(session, prometheus, 'ispmon_endpoint_status{endpoint="web",status="down"}', "1")


async def test_promtool_on_every_source() -> None:
    """Every family the scrape can hold (SNMP devices and interfaces, RADIUS, flows, a /readyz with
    a section nobody here knows), through the handler's own pieces: promtool finds no problem."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, generate_latest

    from ispmon.api.prometheus import Scrape, splice
    from ispmon.api.prometheus_text import Snapshot, render
    from ispmon.flows.decode import FlowDecoder
    from ispmon.network.counters import Sample
    from ispmon.network.devices import DeviceSpec
    from ispmon.network.poller import DeviceState, Iface, PollerStats
    from ispmon.usage.listener import ListenerStats

    spec = DeviceSpec(id="core-1", name="core 1", address="127.0.0.1", community="public")
    sample = Sample(
        at=1.0, interval=60.0, in_bps=2e9, out_bps=1e3, in_pps=5.0, out_pps=6.0, in_util_pct=20.0,
        out_util_pct=0.0, in_errors_ps=0.0, out_errors_ps=0.0, in_discards_ps=0.0, out_discards_ps=0.0,
    )  # fmt: skip
    iface = Iface(1, "k", 'eth "0"', 6, 10**9, 1000, True, None, sample)
    device = DeviceState(spec=spec, reachable=True, by_index={1: iface})
    decoder = FlowDecoder()
    decoder.declare("edge", "127.0.0.1")
    flows = SimpleNamespace(
        collector=SimpleNamespace(counters=lambda: {"datagrams": 1, "kernel_drops": 0, "receive_buffer": 4096,
                                                    "batches": 2, "write_failures": 0, "raw": None}),
        decoder=decoder,
    )  # fmt: skip
    poller = SimpleNamespace(devices={"core-1": device}, stats=PollerStats(polls=3, no_sample={"first": 1}))
    services: Any = SimpleNamespace(monitor=None, network=SimpleNamespace(poller=poller), flows=flows)
    readiness = {
        "status": "not_ready",
        "reason": "database check failed",
        "checks": {"database": "failing"},
        "search": {"lag_s": 4.0, "documents_total": 10, "state": "behind", "by_index": {"status": 3}},
    }
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Scrape(services, readiness, (0, 0.0), ListenerStats(received=5)))
    text = splice(generate_latest(registry), [render(Snapshot.take(None, poller)).encode()])
    expected = (
        "ispmon_radius_received_total 5.0", "ispmon_flow_decoder_packets_total", "ispmon_search_lag_seconds 4.0",
        "ispmon_interface_utilisation_ratio", "ispmon_flow_listener_receive_buffer_bytes 4096.0",
    )  # fmt: skip
    for name in expected:
        assert name.encode() in text, name
    promtool = await asyncio.create_subprocess_exec(
        PROMTOOL, "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=PIPE
    )
    out, err = await asyncio.wait_for(promtool.communicate(text), 30)
    assert promtool.returncode == 0, out.decode() + err.decode()
    assert out.decode().strip() == "" and err.decode().strip() == ""


async def test_radius_listener_counters_are_scraped(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", daemon.radius_port)
    )
    try:
        transport.sendto(b"\x04\x01\x00\x14" + bytes(16))  # an Accounting-Request header from nobody we know
        deadline = time.monotonic() + 5
        while daemon.radius.stats.received < 1:
            assert time.monotonic() < deadline, "the listener never saw the datagram"
            await asyncio.sleep(0.02)
    finally:
        transport.close()
    _, _, text = await scrape(daemon)
    assert "ispmon_radius_received_total 1.0" in text
    assert "ispmon_radius_unknown_nas_total 1.0" in text
