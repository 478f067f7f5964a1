"""Dashboard benchmark: the first load with 5,000 endpoints in chromium, and SSE fan-out to 50 pages.

    PYTHONPATH=src python3 bench/dashboard.py                 # about a minute; embedded PostgreSQL
    PYTHONPATH=src python3 bench/dashboard.py --endpoints 5000 --pages 50 --events 200

Figures printed:

* **first load** (Debian's chromium, headless, a fresh browser context each run so nothing is
  cached): ms from navigation start to the health grid drawn (`window.__gridMs`, set by app.js
  once the grid's cells are in the document), and the bytes transferred (the encoded sizes
  chromium reports, headers excluded), median of `--loads` runs; then a reload with the cache
  (304s). Goal: the grid under 1 s with 5,000 endpoints.
* **SSE fan-out**: `--pages` open `/events` streams (aiohttp clients in a child process, so the
  server's CPU is its own) and `--events` state changes fed into the hub as the monitor feeds them
  (`EventHub.observe`), at `--rate` per second; the server's CPU time (getrusage) per event, beside
  the same run with no page open (the anchor), and the delivery latency at the pages (from the
  change to its arrival, which includes the hub's 250 ms coalescing). Then a burst of all
  `--endpoints` changing at once: how many messages each page got.

Loopback only; load average printed beside the figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web

from ispmon.api.app import create_app
from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.availability.monitor import Monitor
from ispmon.availability.outage_events import StatusChanged
from ispmon.availability.outages import OutagePolicy
from ispmon.config import Settings
from ispmon.models import ProbeResult, Status
from ispmon.probes.base import ProbeContext
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.history import HISTORY_COLUMNS, history_row
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter
from ispmon.web.stream import HUB

CHROMIUM = "/usr/bin/chromium"
STATUSES = [Status.UP] * 90 + [Status.DOWN] * 4 + [Status.DEGRADED] * 4 + [Status.MAINTENANCE] * 2


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def populate(db: Database, n: int) -> list[EndpointSpec]:
    rows = []
    specs = []
    for i in range(n):
        spec = build_endpoint(
            {
                "id": f"ep-{i:05d}",
                "name": f"customer-{i:05d}.pop{i % 40}.example.net",
                "url": f"tcp://10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:443",
                "tags": [f"pop-{i % 40}"],
            }
        )
        specs.append(spec)
        rows.append(
            (spec.id, spec.name, spec.protocol.value, spec.url, spec.criticality.value, spec.tags, True,
             spec.stored_dict(), "api")
        )
    async with db.pool.acquire() as conn:
        await conn.executemany(
            """INSERT INTO endpoints (id, name, protocol, url, criticality, tags, is_active, spec, source)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            rows,
        )
    now = datetime.now(UTC)
    history = [
        history_row(f"ep-{i:05d}", now, ProbeResult(STATUSES[i % len(STATUSES)], 1.0 + i % 50))
        for i in range(n)
    ]
    await db.pool.copy_records_to_table("status_history", records=history, columns=HISTORY_COLUMNS)
    return specs


class Counter:
    """Sums the encoded bytes of every response chromium finished loading (CDP Network events)."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, event: dict[str, float]) -> None:
        self.total += int(event["encodedDataLength"])


async def first_load(base: str, runs: int, expected: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            grid_ms: list[float] = []
            fetch_ms: list[float] = []
            sizes: list[int] = []
            for run in range(runs + 1):
                context = await browser.new_context(viewport={"width": 1600, "height": 1000})
                page = await context.new_page()
                cdp = await context.new_cdp_session(page)
                await cdp.send("Network.enable")
                transferred = Counter()
                cdp.on("Network.loadingFinished", transferred.add)
                await page.goto(base + "/")
                await page.wait_for_function("document.body.dataset.gridReady === '1'", timeout=30_000)
                ms = await page.evaluate("window.__gridMs")
                fetched = await page.evaluate("window.__gridFetchMs")
                timing = await page.evaluate(
                    """() => { const n = performance.getEntriesByType('navigation')[0];
                       const g = performance.getEntriesByType('resource')
                         .find(r => r.name.endsWith('/dashboard/grid'));
                       return [n.responseEnd, n.domContentLoadedEventEnd,
                               g ? g.startTime : -1, g ? g.responseEnd : -1]; }"""
                )
                if run:
                    html_in, loaded, asked, answered = timing
                    print(
                        f"    html in at {html_in:.0f} ms, DOMContentLoaded {loaded:.0f}, "
                        f"grid request {asked:.0f} -> {answered:.0f} ms, drawn {ms:.0f}"
                    )
                cells = await page.locator(".cell[data-id]").count()
                assert cells == expected, cells
                await page.wait_for_timeout(1500)  # the other panels (the stream never ends: no "networkidle")
                if run:  # the first run warms the server (prepared statements, page cache)
                    grid_ms.append(ms)
                    fetch_ms.append(fetched)
                    sizes.append(transferred.total)
                if run == runs:
                    transferred.total = 0
                    await page.reload()
                    await page.wait_for_function("document.body.dataset.gridReady === '1'", timeout=30_000)
                    warm = await page.evaluate("window.__gridMs")
                    await page.wait_for_timeout(1500)  # the other panels (the stream never ends: no "networkidle")
                    kib = transferred.total / 1024
                    print(f"  reload with the cache: grid at {warm:.0f} ms, {kib:.0f} KiB transferred")
                await context.close()
            # The anchor, same browser and run: the status page (one small HTML document, no script).
            floor = []
            for _ in range(runs):
                context = await browser.new_context()
                page = await context.new_page()
                await page.goto(base + "/status")
                floor.append(await page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
                await context.close()
            print(f"  anchor: /status (no script) loaded in {statistics.median(floor):.0f} ms in a fresh context")
            print(
                f"  first load, {expected} endpoints: grid at {statistics.median(grid_ms):.0f} ms "
                f"(median of {runs}; min {min(grid_ms):.0f}, max {max(grid_ms):.0f}), "
                f"{statistics.median(sizes) / 1024:.0f} KiB transferred; the grid's data was in at "
                f"{statistics.median(fetch_ms):.0f} ms (the rest is drawing)   [load {load()}]"
            )
        finally:
            await browser.close()


CLIENT = r"""
import asyncio, json, sys, time
from datetime import datetime
import aiohttp

async def page(session, url, out, ready):
    try:
        await read(session, url, out, ready)
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        print("client error:", repr(exc), file=sys.stderr)

async def read(session, url, out, ready):
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
        buf = b""
        ready.append(1)
        async for chunk in resp.content.iter_any():
            buf += chunk
            while b"\n\n" in buf:
                msg, buf = buf.split(b"\n\n", 1)
                now = time.time()
                for line in msg.split(b"\n"):
                    if line.startswith(b"data: "):
                        data = json.loads(line[6:])
                        for c in data.get("changes", []):
                            out.append((now - datetime.fromisoformat(c["at"]).timestamp(), len(data["changes"])))

async def main():
    url, n = sys.argv[1], int(sys.argv[2])
    out, ready = [], []
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(page(session, url, out, ready)) for _ in range(n)]
        while len(ready) < n:
            await asyncio.sleep(0.05)
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # in a thread: the loop keeps reading the streams
        for t in tasks:
            t.cancel()
    print(json.dumps(out), flush=True)

asyncio.run(main())
"""


async def fan_out(app: web.Application, base: str, pages: int, events: int, rate: float, endpoints: int) -> None:
    hub = app[HUB]

    specs = [build_endpoint({"id": f"ep-{i:05d}", "name": "x", "url": "tcp://127.0.0.1:1"}) for i in range(endpoints)]

    async def feed(count: int) -> float:
        start = cpu_s()
        for i in range(count):
            new = Status.DOWN if i % 2 == 0 else Status.UP
            old = Status.UP if new is Status.DOWN else Status.DOWN
            at = datetime.now(UTC)
            hub.observe(specs[i % endpoints], StatusChanged(old=old, new=new, at=at), ProbeResult(new, 1.0))
            await asyncio.sleep(1 / rate)
        await asyncio.sleep(hub.flush_interval * 3)
        return cpu_s() - start

    idle_cpu = await feed(events)
    idle_published = hub.stats.published
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, base + "/events", str(pages),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    assert (await child.stdout.readline()).strip() == b"READY"
    assert hub.stats.clients == pages, hub.stats.clients
    busy_cpu = await feed(events)
    published = hub.stats.published - idle_published
    print(
        f"  {events} changes at {rate:g}/s -> {published} messages; server CPU per change: "
        f"{busy_cpu / events * 1e6:.0f} us with {pages} pages open, {idle_cpu / events * 1e6:.0f} us with none "
        f"(anchor); per message per page {(busy_cpu - idle_cpu) / max(1, published) / pages * 1e6:.1f} us"
        f"   [load {load()}]"
    )
    # A burst: every endpoint changes at once (a POP goes dark).
    before = hub.stats.published
    start = cpu_s()
    burst_at = datetime.now(UTC)
    for one in specs:
        hub.observe(one, StatusChanged(old=Status.UP, new=Status.DOWN, at=burst_at), ProbeResult(Status.DOWN, None))
    await asyncio.sleep(hub.flush_interval * 4)
    burst_cpu = cpu_s() - start
    await asyncio.sleep(10)  # the child parses 50 copies of a ~600 KB message: give it time
    child.stdin.write(b"\n")
    await child.stdin.drain()
    raw = (await child.stdout.read()).decode()
    received = json.loads(raw)
    if os.environ.get("BENCH_DEBUG"):
        print(raw[:500])
    await child.wait()
    latencies = sorted(x[0] * 1000 for x in received if x[1] < endpoints)
    # One message carries the whole burst; its changes all arrived at once, so one figure per page.
    bursts = sorted(x[0] * 1000 for x in received if x[1] >= endpoints)[::endpoints]
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"  delivery latency at the pages (change -> arrival, includes the {hub.flush_interval * 1000:.0f} ms "
        f"coalescing): p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(latencies)} deliveries"
    )
    print(
        f"  burst of {endpoints} changes: {hub.stats.published - before} message(s), reached "
        f"{len(bursts)} of {pages} pages, last after {max(bursts, default=float('nan')):.0f} ms; "
        f"server CPU {burst_cpu * 1000:.1f} ms; slow pages dropped: {hub.stats.dropped_clients}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=5000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0)
    # Internal: the browser side of the first-load figures, run in a child process so that the
    # playwright driver's event handling does not share the server's event loop (as in production,
    # where the browser is not in the daemon).
    parser.add_argument("--browser-only", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.browser_only:
        await first_load(args.browser_only, args.loads, args.endpoints)
        return
    base_dir = Path(tempfile.mkdtemp(prefix="ispmon-bench-dashboard-"))
    server = EmbeddedPostgres(base_dir)
    runner = None
    db = None
    try:
        db = await Database.connect(server.start(), max_size=4)
        specs = await populate(db, args.endpoints)
        # A monitor loaded as the daemon loads it at start (its statuses, no check running): the grid
        # reads statuses from it, as in `ispmon run`.
        settings = Settings()
        monitor = Monitor(
            ctx=ProbeContext(),
            policy=OutagePolicy.from_settings(settings),
            history=BatchWriter(db.pool, "status_history", HISTORY_COLUMNS),
            events=BatchWriter(db.pool, "endpoint_events", EVENT_COLUMNS),
            outages=db.outages,
        )
        last = {f"ep-{i:05d}": STATUSES[i % len(STATUSES)] for i in range(args.endpoints)}
        monitor.load(specs, {}, last)
        app = create_app(AppServices.build(db, settings, monitor))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        times = []
        async with aiohttp.ClientSession() as session:
            for _ in range(6):
                started = time.perf_counter()
                async with session.get(base + "/dashboard/grid") as resp:
                    body = await resp.read()
                times.append((time.perf_counter() - started) * 1000)
        print(
            f"dashboard bench: {args.endpoints} endpoints; /dashboard/grid is {len(body) / 1024:.0f} KiB of JSON, "
            f"answered in {statistics.median(times[1:]):.0f} ms (median of 5, gzip)   [load {load()}]"
        )
        browser_side = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--browser-only", base, "--loads", str(args.loads),
            "--endpoints", str(args.endpoints),
        )
        assert await browser_side.wait() == 0
        await fan_out(app, base, args.pages, args.events, args.rate, args.endpoints)
    finally:
        if runner is not None:
            await runner.cleanup()
        if db is not None:
            await db.close()
        server.stop()
        shutil.rmtree(base_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
