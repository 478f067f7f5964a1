"""expected_response_pattern matching off the event loop, with one budget per check, against real
HTTP, TCP and UDP servers on loopback that send a body on which ``(a+)+$`` backtracks for ever."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import regex
from aiohttp import web

from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.scheduler import Scheduler
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes import patterns
from ispmon.probes.base import ProbeContext, run_check
from ispmon.probes.patterns import PatternOutcome, PatternWorkers, check_budget

CATASTROPHIC = "(a+)+$"
BODY = b"a" * 50_000 + b"!"  # 50 KB on which CATASTROPHIC never finishes
BANNER = b"220 mail.test.local ESMTP ready\r\n"


class Servers:
    """An HTTP server (catastrophic body, a cheap page), TCP servers and a UDP server; counts hits."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.urls: dict[str, str] = {}
        self._closers: list[Any] = []

    async def start(self) -> None:
        async def body(request: web.Request) -> web.Response:
            self.hits[request.path] += 1
            return web.Response(body=BODY)

        async def cheap(request: web.Request) -> web.Response:
            self.hits[request.path] += 1
            return web.Response(text="ok")

        app = web.Application()
        app.add_routes([web.get("/catastrophic/{n}", body), web.get("/cheap", cheap)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.urls["http"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self._closers.append(runner.cleanup)

        async def tcp_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits["tcp"] += 1
            writer.write(BODY)
            await reader.read()
            writer.close()

        async def tcp_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(BANNER)
            await reader.read()
            writer.close()

        for name, handler in (("tcp", tcp_body), ("banner", tcp_banner)):
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            self.urls[name] = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
            self._closers.append(server.wait_closed)
            self._closers.append(server.close)

        hits = self.hits

        class Reply(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = cast(asyncio.DatagramTransport, transport)

            def datagram_received(self, data: bytes, addr: Any) -> None:
                hits["udp"] += 1
                self.transport.sendto(BODY, addr)

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            Reply, local_addr=("127.0.0.1", 0)
        )
        self.urls["udp"] = f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
        self._closers.append(transport.close)

    async def close(self) -> None:
        for close in reversed(self._closers):
            result = close()
            if asyncio.iscoroutine(result):
                await result


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[Servers]:
    started = Servers()
    await started.start()
    yield started
    await started.close()


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext()
    yield context
    await context.close()


def _endpoint(url: str, **fields: Any) -> Any:
    return build_endpoint({"name": "pattern test", "url": url, "timeout": 2.0, "retries": 0, **fields})


class LoopLag:
    """Sleeps `period` in a loop and keeps the largest overshoot: how late the loop runs callbacks."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.worst = 0.0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.worst = max(self.worst, loop.time() - expected)


async def test_catastrophic_patterns_cost_other_endpoints_nothing(
    servers: Servers, ctx: ProbeContext
) -> None:
    """The issue's case: ten endpoints with (a+)+$ against a 50 KB body, with retries, while a cheap
    endpoint is scheduled every 100 ms. The cheap checks run on time and the loop never stalls."""
    base = servers.urls["http"]
    heavy = {
        f"heavy-{n}": _endpoint(
            f"{base}/catastrophic/{n}", expected_response_pattern=CATASTROPHIC, retries=2, timeout=0.5
        )
        for n in range(10)
    }
    cheap = _endpoint(f"{base}/cheap")
    results: dict[str, list[ProbeResult]] = {key: [] for key in [*heavy, "cheap"]}

    heavy_done = asyncio.Event()

    async def run(key: str, due: float) -> None:
        results[key].append(await run_check(heavy.get(key, cheap), ctx, budget=5.0))
        if all(results[key] for key in heavy):
            heavy_done.set()

    # Warm up first: the first check imports the HTTP probe and starts the pattern threads, a
    # one-time cost that is not what this test measures.
    warm = await run_check(_endpoint(f"{base}/cheap", expected_response_pattern="ok"), ctx)
    assert warm.status is Status.UP, warm
    scheduler = Scheduler(run)
    loop = asyncio.get_running_loop()
    now = loop.time()
    for key in heavy:
        scheduler.add(key, 60.0, first_due=now + 0.05)
    scheduler.add("cheap", 0.1, first_due=now)
    lag = LoopLag()
    tasks = [asyncio.create_task(scheduler.run()), asyncio.create_task(lag.run())]
    try:
        async with asyncio.timeout(10):
            await heavy_done.wait()
        await asyncio.sleep(0.2)  # a few more cheap checks after the heavy ones
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await scheduler.close()

    for key in heavy:
        (result,) = results[key]
        assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.PATTERN_TIMEOUT), result
        # One budget per check: the timeout is not retried into two more 100 ms searches.
        assert result.attempts == 1, result
    assert sum(servers.hits[f"/catastrophic/{n}"] for n in range(10)) == 10
    assert scheduler.stats.skipped_late == 0 and scheduler.stats.skipped_overrun == 0
    assert len(results["cheap"]) >= 5
    assert all(r.status is Status.UP for r in results["cheap"]), results["cheap"]
    assert lag.worst < 0.05, f"event loop stalled for {lag.worst * 1000:.0f} ms"
    assert scheduler.lag_percentiles(1.0)[0] < 0.05


@pytest.mark.parametrize("protocol", ["http", "tcp", "udp"])
async def test_a_pattern_timeout_is_reported_once_per_check(
    servers: Servers, ctx: ProbeContext, protocol: str
) -> None:
    url = servers.urls[protocol]
    fields: dict[str, Any] = {"expected_response_pattern": CATASTROPHIC, "retries": 2}
    if protocol == "http":
        url += "/catastrophic/once"
    else:
        fields |= {"protocol": protocol, "send": "hello\r\n"}
    hits = "/catastrophic/once" if protocol == "http" else protocol
    # The anchor: the same exchange with a pattern that matches at once, for what the transport
    # alone costs this process.
    cpu_start = time.process_time()
    anchor = await run_check(_endpoint(url, **(fields | {"expected_response_pattern": "a+!"})), ctx)
    transport_cpu = time.process_time() - cpu_start
    assert anchor.status is Status.UP, anchor
    before = servers.hits[hits]
    start, cpu_start = time.perf_counter(), time.process_time()
    result = await run_check(_endpoint(url, **fields), ctx)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.PATTERN_TIMEOUT), result
    assert "0.1 s" in (result.error or "")
    assert result.attempts == 1 and servers.hits[hits] == before + 1
    # One 100 ms budget, not three. regex counts its limit in CPU time of the searching thread, so
    # that is what is measured: on a clock shared with other busy processes a search takes longer.
    searched = cpu - transport_cpu
    assert searched < 0.2, f"{searched:.3f} s of CPU searching: more than one 100 ms budget"
    assert elapsed < 2.0, "the check waited for its 2 s timeout"


async def test_the_budget_is_shared_by_every_search_of_a_check() -> None:
    workers = PatternWorkers(1)
    try:
        slow, quick = regex.compile(CATASTROPHIC.encode()), regex.compile(rb"a!")
        with check_budget(0.05, 1.0) as budget:
            assert await patterns.search(workers, quick, BODY, 0.05, 1.0) is PatternOutcome.MATCH
            assert 0 < budget.pattern_left < 0.05  # the quick search used a little of it
            assert await patterns.search(workers, slow, BODY, 0.05, 1.0) is PatternOutcome.TIMEOUT
            assert budget.pattern_left == 0
            # Spent: later searches of the same check (a retry's) do not run at all.
            start = time.perf_counter()
            assert await patterns.search(workers, quick, BODY, 0.05, 1.0) is PatternOutcome.TIMEOUT
            assert time.perf_counter() - start < 0.01
        # A new check has a new budget.
        with check_budget(0.05, 1.0):
            assert await patterns.search(workers, quick, BODY, 0.05, 1.0) is PatternOutcome.MATCH
    finally:
        workers.close()


async def test_waiting_for_a_pattern_worker_is_not_the_targets_time(servers: Servers) -> None:
    # One worker, kept busy for 100 ms by a catastrophic search. A banner check with a 50 ms
    # timeout queues behind it: the banner arrived at once, so the wait must not become a timeout.
    ctx = ProbeContext(pattern_workers=1)
    try:
        heavy = _endpoint(servers.urls["tcp"], protocol="tcp", expected_response_pattern=CATASTROPHIC)
        banner = _endpoint(
            servers.urls["banner"], protocol="tcp", expected_response_pattern="^220 ", timeout=0.05
        )
        blocking = asyncio.create_task(run_check(heavy, ctx))
        await asyncio.sleep(0.03)  # the heavy search is running
        result = await run_check(banner, ctx)
        assert result.status is Status.UP, result
        assert (await blocking).error_kind is ErrorKind.PATTERN_TIMEOUT
    finally:
        await ctx.close()


async def test_no_free_pattern_worker_is_unknown_not_down(servers: Servers) -> None:
    ctx = ProbeContext(pattern_workers=1, pattern_wait=0.02)
    try:
        heavy = _endpoint(servers.urls["tcp"], protocol="tcp", expected_response_pattern=CATASTROPHIC)
        waiting = _endpoint(f"{servers.urls['http']}/cheap", expected_response_pattern="ok", retries=2)
        blocking = asyncio.create_task(run_check(heavy, ctx))
        await asyncio.sleep(0.03)
        result = await run_check(waiting, ctx)
        # Our saturation, not the target's failure: UNKNOWN (opens no outage), not retried.
        assert (result.status, result.error_kind) == (Status.UNKNOWN, ErrorKind.INTERNAL), result
        assert result.details["resource"] == "pattern_workers" and result.attempts == 1
        await blocking
        assert (await run_check(waiting, ctx)).status is Status.UP  # a free worker again
    finally:
        await ctx.close()
