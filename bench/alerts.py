"""Alerting benchmark: what alerting costs the check path, and how fast the outbox drains.

    python bench/alerts.py          # about 30 s; embedded PostgreSQL in a temporary directory

Figures printed:

* CPU ns per check spent in `AlertEngine.observe` (the per-result hook) with 0, 10 and 100
  threshold rules matching the endpoint (no breach, the common case), and for a canary endpoint;
* outbox drain: notifications/s from enqueued rows to HTTP 200 at a local webhook receiver
  (apprise json://), through the real Sender, notifier and PostgreSQL, with 1 and 8 channels;
* latency from `engine.outage_declared` to the receiver's 200 (p50/p99 over 50 outages).

Loopback only; every loop is bounded.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.notifier import AppriseNotifier
from ispmon.alerts.rules import AlertRule
from ispmon.alerts.sender import DeliveryPolicy, Sender
from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.outage_events import OutageDeclared
from ispmon.models import ProbeResult, Severity, Status
from ispmon.store.alerts import AlertRepo
from ispmon.store.database import Database
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.notifications import NotificationDraft, NotificationRepo


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.arrived: dict[str, float] = {}
        self.done = asyncio.Event()
        self.want = 0

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.count += 1
        self.arrived.setdefault(body.get("title", ""), time.perf_counter())
        if self.count >= self.want:
            self.done.set()
        return web.Response(text="ok")


def bench_observe(engine: AlertEngine) -> None:
    spec = build_endpoint({"id": "web", "name": "web", "url": "http://127.0.0.1/", "tags": ["core"]})
    canary = build_endpoint({"id": "gw", "name": "gw", "url": "http://127.0.0.1/", "canary": True})
    result = ProbeResult(Status.UP, 12.5, details={"cert_days_left": 80})
    now = datetime.now(UTC)
    n = 200_000
    for rules in (0, 10, 100):
        engine.configure(
            [
                AlertRule(id=f"r{i}", kind="threshold", metric="response_time_ms", above=500.0 + i, tags=["core"])
                for i in range(rules)
            ],
            {},
        )
        start = time.process_time_ns()
        for _ in range(n):
            engine.observe(spec, now, result)
        per = (time.process_time_ns() - start) / n
        print(f"observe, {rules:>3} matching threshold rules: {per:8.0f} ns CPU per check")
    engine.configure([], {})
    engine.set_canaries(["gw", "other"])
    start = time.process_time_ns()
    for _ in range(n):
        engine.observe(canary, now, result)
    print(f"observe, canary endpoint:               {(time.process_time_ns() - start) / n:8.0f} ns CPU per check")


async def drain(db: Database, port: int, receiver: Receiver, channels: int, total: int) -> None:
    await db.pool.execute("TRUNCATE notifications, alerts CASCADE")
    registry = ChannelRegistry(
        [parse_channel(f"c{i}", f"json://127.0.0.1:{port}/hook?c={i}", source="config") for i in range(channels)]
    )
    repo = NotificationRepo(db.pool)
    drafts = [
        NotificationDraft(f"bench:{channels}:{i}", f"c{i % channels}", "declared", 0, f"t{i}", "body", "short")
        for i in range(total)
    ]
    await repo.enqueue(drafts)
    receiver.count, receiver.want = 0, total
    receiver.done.clear()
    sender = Sender(repo, registry, AppriseNotifier(timeout=10), DeliveryPolicy(rate_per_minute=0))
    start = time.perf_counter()
    sender.start()
    await asyncio.wait_for(receiver.done.wait(), 120)
    elapsed = time.perf_counter() - start
    await sender.close()
    print(f"outbox drain, {channels} channel(s): {total / elapsed:7.1f} notifications/s ({total} in {elapsed:.2f} s)")


async def latency(db: Database, port: int, receiver: Receiver) -> None:
    await db.pool.execute("TRUNCATE notifications, alerts CASCADE")
    registry = ChannelRegistry([parse_channel("hook", f"json://127.0.0.1:{port}/hook", source="config")])
    repo = NotificationRepo(db.pool)
    sender = Sender(repo, registry, AppriseNotifier(timeout=10), DeliveryPolicy(rate_per_minute=0))
    engine = AlertEngine(
        pool=db.pool,
        alerts=AlertRepo(db.pool),
        notifications=repo,
        channels=registry,
        default_channels=["hook"],
        link_base=None,
        wake_sender=sender.wake,
    )
    engine.configure([], {})
    sender.start()
    receiver.arrived.clear()
    receiver.count, receiver.want = 0, 10**9
    samples = []
    for i in range(50):
        spec = build_endpoint({"id": f"ep{i}", "name": f"Endpoint {i}", "url": "http://127.0.0.1/"})
        now = datetime.now(UTC)
        event = OutageDeclared(now, now, Status.DOWN, Severity.MAJOR, "timeout", "no answer", 3, True)
        start = time.perf_counter()
        await engine.outage_declared(spec, event, 100_000 + i)
        for _ in range(2000):
            title = next((t for t in receiver.arrived if f"({spec.id})" in t), None)
            if title is not None:
                samples.append((receiver.arrived[title] - start) * 1000)
                break
            await asyncio.sleep(0.001)
    await sender.close()
    await engine.close()
    samples.sort()
    p99 = samples[int(len(samples) * 0.99) - 1]
    print(
        f"outage declared -> webhook 200: p50 {statistics.median(samples):.1f} ms, p99 {p99:.1f} ms "
        f"({len(samples)} outages)"
    )


async def main() -> None:
    from ispmon.logging import configure_logging

    configure_logging("error", "console")  # the figures only, not a log line per alert
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-alerts-"))
    server = EmbeddedPostgres(base)
    dsn = await asyncio.to_thread(server.start)
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    db = await Database.connect(dsn)
    try:
        repo = NotificationRepo(db.pool)
        engine = AlertEngine(
            pool=db.pool,
            alerts=AlertRepo(db.pool),
            notifications=repo,
            channels=ChannelRegistry(),
            default_channels=[],
            link_base=None,
        )
        bench_observe(engine)
        await drain(db, port, receiver, 1, 300)
        await drain(db, port, receiver, 8, 800)
        await latency(db, port, receiver)
    finally:
        await db.close()
        await runner.cleanup()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
