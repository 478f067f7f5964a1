"""Scrape cost of ``GET /metrics`` with 10,000 endpoints and 10,000 interfaces.

    PYTHONPATH=src python3 bench/metrics_scrape.py      # about 20 s, no database, no network

What one scrape costs: the handler's work after its awaits (api/prometheus.py: the `Scrape`
collector's families encoded by prometheus-client, a `Snapshot` of 10,000 `EndpointRuntime`s with a
last result and 100 devices x 100 interfaces with a Sample each, `render` of those, the splice),
in CPU ms of this process (`time.process_time`), the median of several scrapes; the part of it
that runs before the render (collector, encoding, snapshot); the body's bytes, plain and gzipped (what
aiohttp sends a Prometheus that accepts gzip). The anchor, in the same run: the same series kept
the library's usual way (labelled `Gauge` children in a registry, updated per check) and only
encoded, i.e. what the scrape would still cost if every check paid to keep the series up to date.
And how late a 10 ms timer on the event loop fires during one scrape's render (what a check due
then would suffer): in steps that yield to the loop (as served), in a worker thread, all at once
on the loop, and with no scrape at all (the machine's own noise). The load
average is printed beside the figures (the machine is shared).
"""

from __future__ import annotations

import asyncio
import gzip
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ispmon.api.prometheus import Scrape, splice
from ispmon.api.prometheus_text import Snapshot, render, render_steps
from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.monitor import EndpointRuntime
from ispmon.availability.outages import EndpointState
from ispmon.models import ProbeResult, Status
from ispmon.network.counters import Sample
from ispmon.network.devices import DeviceSpec
from ispmon.network.poller import DeviceState, Iface, PollerStats

ENDPOINTS = 10_000
DEVICES, PER_DEVICE = 100, 100
ROUNDS = 7

READYZ: dict[str, Any] = {
    "status": "ready",
    "checks": {"database": "ok", "probe_resources": "ok"},
    "monitor": {
        "endpoints": ENDPOINTS,
        "scheduler": {"dispatched": 10**6, "skipped_overrun": 0, "skipped_late": 0, "completed": 10**6,
                      "inflight": 40, "lag_p50_ms": 0.4, "lag_p99_ms": 2.0},
        "writer": {"written": 10**6, "dropped": 0, "failed_flushes": 0, "last_error": None, "last_flush_rows": 200,
                   "last_flush_ms": 3.1, "recovered_batches": 0, "backlog": 12},
        "resources": {"exhausted": False, "since": None, "failures": 0, "by_resource": {}},
    },
    "api": {"max_concurrent_requests": 64, "limit": 64, "queue_timeout_s": 5.0, "in_progress": 1, "queued": 0,
            "max_queued": 0, "admitted": 10, "waited": 0, "shed": 0},
}  # fmt: skip


def endpoints() -> list[EndpointRuntime]:
    now = datetime.now(UTC)
    expiry = (now + timedelta(days=60)).isoformat()
    out = []
    for n in range(ENDPOINTS):
        https = n % 2 == 0
        spec = build_endpoint(
            {"id": f"ep-{n}", "name": f"ep {n}", "url": f"{'https' if https else 'http'}://10.0.{n // 250}.{n % 250}/",
             "check_interval": 60, "timeout": 5, "retries": 0}
        )  # fmt: skip
        runtime = EndpointRuntime(spec, EndpointState(status=Status.UP))
        details: dict[str, Any] = {"status_code": 200}
        if https:
            details |= {"cert_days_left": 60, "cert_not_after": expiry}
        runtime.last = (now, ProbeResult(Status.UP, 12.5 + n % 100, details=details))
        out.append(runtime)
    return out


def devices() -> list[DeviceState]:
    sample = Sample(
        at=0.0, interval=60.0, in_bps=1.2e8, out_bps=3.4e7, in_pps=1e4, out_pps=5e3, in_util_pct=12.0,
        out_util_pct=3.4, in_errors_ps=0.0, out_errors_ps=0.0, in_discards_ps=0.0, out_discards_ps=0.1,
    )  # fmt: skip
    out = []
    for d in range(DEVICES):
        spec = DeviceSpec(id=f"dev-{d}", name=f"dev {d}", address=f"10.1.0.{d + 1}", community="public")
        state = DeviceState(spec=spec, reachable=True)
        for i in range(PER_DEVICE):
            ident = d * PER_DEVICE + i + 1
            state.by_index[i + 1] = Iface(ident, f"k{ident}", f"ge-0/0/{i}", 6, 10**9, 1000, True, None, sample)
        out.append(state)
    return out


def services(runtimes: list[EndpointRuntime], states: list[DeviceState]) -> Any:
    poller = SimpleNamespace(devices={s.spec.id: s for s in states}, stats=PollerStats(polls=100, samples=10**4))
    return SimpleNamespace(
        monitor=SimpleNamespace(runtimes={r.spec.id: r for r in runtimes}),
        network=SimpleNamespace(poller=poller),
        flows=SimpleNamespace(collector=None, decoder=None),
    )


def ours(svc: Any) -> bytes:
    """What the /metrics handler does after its awaits: encode our registry, snapshot, render, splice."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Scrape(svc, READYZ, (0, 0.0), None))
    snapshot = Snapshot.take(svc.monitor, svc.network.poller)
    return splice(generate_latest(registry), [render(snapshot).encode()])


def on_loop(svc: Any) -> None:
    """The part that runs in one go, before the render's steps."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Scrape(svc, READYZ, (0, 0.0), None))
    generate_latest(registry)
    Snapshot.take(svc.monitor, svc.network.poller)


def anchor_registry(body: bytes) -> CollectorRegistry:
    """The same samples as labelled Gauge children (the per-update way)."""
    registry = CollectorRegistry()
    gauges: dict[str, Gauge] = {}
    for line in body.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        series, _, value = line.rpartition(" ")
        name, _, rest = series.partition("{")
        labels = dict(part.split("=", 1) for part in rest.rstrip("}").split('",') if part) if rest else {}
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = name.removesuffix("_total")
        if key not in gauges:
            gauges[key] = Gauge(key + "_anchor", "anchor", labelnames=sorted(labels), registry=registry)
        gauge = gauges[key]
        (gauge.labels(**labels) if labels else gauge).set(float(value))
    return registry


async def stepped(snapshot: Snapshot) -> int:
    """As the handler renders: a step at a time, yielding to the loop in between; then a chunk at a
    time, as the handler writes them (here: counted, not sent)."""
    steps = render_steps(snapshot)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            chunks: list[bytes] = stop.value
            break
        await asyncio.sleep(0)
    size = 0
    for chunk in chunks:
        size += len(chunk)
        await asyncio.sleep(0)
    return size


async def loop_lateness(svc: Any, mode: str) -> float:
    """Worst lateness (ms) of a 10 ms timer on the event loop during one scrape's render: "steps"
    (as served), "thread" (in a worker thread), "inline" (on the loop at once) or "none" (no
    scrape: the machine's own noise)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        while not done:
            due = time.perf_counter() + 0.010
            await asyncio.sleep(0.010)
            worst = max(worst, time.perf_counter() - due)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    snapshot = Snapshot.take(svc.monitor, svc.network.poller)
    if mode == "steps":
        await stepped(snapshot)
    elif mode == "thread":
        await asyncio.to_thread(lambda: render(snapshot).encode())
    elif mode == "inline":
        render(snapshot).encode()
    else:
        await asyncio.sleep(0.5)
    await asyncio.sleep(0.05)
    done = True
    await task
    return worst * 1000


def cpu_ms(fn: Any) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(ROUNDS):
        start = time.process_time()
        result = fn()
        times.append((time.process_time() - start) * 1000)
    return statistics.median(times), result


def main() -> None:
    runtimes, states = endpoints(), devices()
    svc = services(runtimes, states)
    ms, body = cpu_ms(lambda: ours(svc))
    loop_ms, _ = cpu_ms(lambda: on_loop(svc))
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    anchor = anchor_registry(body)
    anchor_ms, _ = cpu_ms(lambda: generate_latest(anchor))
    load = os.getloadavg()
    print(f"endpoints={ENDPOINTS} interfaces={DEVICES * PER_DEVICE} samples={samples} "
          f"(loadavg {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")  # fmt: skip
    print(f"scrape (collect + encode): {ms:.1f} ms CPU, {len(body):,} bytes, {len(gzip.compress(body, 6)):,} gzipped")
    print(f"  per sample: {ms * 1000 / samples:.2f} us CPU; in one go before the render's steps: {loop_ms:.2f} ms CPU")
    worst = {mode: max(asyncio.run(loop_lateness(svc, mode)) for _ in range(3))
             for mode in ("steps", "thread", "inline", "none")}  # fmt: skip
    print("event loop: a 10 ms timer's worst lateness during a scrape's render (worst of 3): "
          + ", ".join(f"{mode} {ms:.1f} ms" for mode, ms in worst.items())
          + "  [steps: as served; none: no scrape]")  # fmt: skip
    print(f"anchor (prometheus-client Gauge children, encode only): {anchor_ms:.1f} ms CPU, "
          f"{anchor_ms * 1000 / samples:.2f} us per sample; ours/anchor = {ms / anchor_ms:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
