"""DNS endpoints churning through the monitor leave no threads or descriptors behind (issue 9).

The monitor is built as the daemon builds it, against a real PostgreSQL; the resolver is a real
UDP DNS server on loopback (`tests.integration.probes.dnsutil`). Endpoints are added, re-timed (as
API edits and config reloads do), checked and removed, 200 distinct timeouts in all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import psutil
import pytest

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import OutagePolicy
from ispmon.models import Status
from ispmon.probes.base import ProbeContext
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter
from tests.integration.probes.dnsutil import Responder, responder


@pytest.fixture
async def monitor(pool: asyncpg.Pool) -> AsyncIterator[Monitor]:
    ctx = ProbeContext()
    history = BatchWriter(pool, "status_history", HISTORY_COLUMNS)
    events = BatchWriter(pool, "endpoint_events", EVENT_COLUMNS)
    mon = Monitor(ctx=ctx, policy=OutagePolicy(), history=history, events=events, outages=Database(pool).outages)
    try:
        yield mon
    finally:
        await mon.close()
        await history.close()
        await events.close()
        await ctx.close()


@pytest.fixture
async def resolver() -> AsyncIterator[Responder]:
    async with responder() as server:
        yield server


def _spec(resolver: Responder, endpoint_id: str, timeout: float) -> EndpointSpec:
    return build_endpoint(
        {
            "id": endpoint_id,
            "name": endpoint_id,
            "url": f"dns://127.0.0.1:{resolver.port}/{endpoint_id}.test?type=A",
            "check_interval": 60,
            "timeout": timeout,
            "retries": 0,
        }
    )


async def _threads_and_fds() -> tuple[int, int]:
    await asyncio.sleep(0)  # let transports closed by the last check release their sockets
    me = psutil.Process()
    return me.num_threads(), me.num_fds()


async def _check(monitor: Monitor, endpoint_id: str) -> None:
    checked = await monitor.check_now(endpoint_id)
    assert checked is not None and checked[1].status is Status.UP, checked


async def test_endpoint_churn_and_reloads_end_with_the_threads_and_descriptors_they_started_with(
    monitor: Monitor, resolver: Responder
) -> None:
    # Warm up (the history writer's connection, the first check) before counting.
    monitor.upsert(_spec(resolver, "warm", 1.0))
    await _check(monitor, "warm")
    monitor.remove("warm")
    threads, fds = await _threads_and_fds()

    timeouts = iter([0.5 + i / 1000 for i in range(200)])
    for wave in range(4):
        # A reload: 25 endpoints come, 25 existing ones get a new timeout, the oldest go.
        for n in range(25):
            endpoint_id = f"dns-{wave}-{n}"
            monitor.upsert(_spec(resolver, endpoint_id, next(timeouts)))
            await _check(monitor, endpoint_id)
        for n in range(25):
            endpoint_id = f"dns-{wave}-{n}"
            monitor.upsert(_spec(resolver, endpoint_id, next(timeouts)))
            await _check(monitor, endpoint_id)
        for endpoint_id in [e for e in monitor.runtimes if not e.startswith(f"dns-{wave}-")]:
            monitor.remove(endpoint_id)
    assert next(timeouts, None) is None  # all 200 timeouts were used
    assert resolver.queries == 1 + 200

    now_threads, now_fds = await _threads_and_fds()
    assert now_threads <= threads, f"{now_threads - threads} threads more after the churn"
    assert now_fds <= fds, f"{now_fds - fds} descriptors more after the churn"
