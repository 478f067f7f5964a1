"""Whose timeout is it? Against a real silent TCP server on loopback: a timer that fires on time is
the target's timeout (DOWN), one that fires late because our event loop was starved, or the hard
limit, is ours (UNKNOWN/internal)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.models import ErrorKind, ProbeResult, Protocol, Status
from ispmon.probes.base import PROBES, ProbeContext, run_attempt, run_check


@pytest.fixture(scope="module")
async def silent() -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext()
    yield context
    await context.close()


def _endpoint(url: str, **fields: Any) -> EndpointSpec:
    data = {"name": "timer test", "protocol": "tcp", "url": url, "send": "HELO\r\n", "timeout": 0.2}
    return build_endpoint({**data, "expected_response_pattern": "^250", "retries": 0, **fields})


async def test_a_timeout_on_time_is_the_targets(silent: str, ctx: ProbeContext) -> None:
    result = await run_attempt(_endpoint(silent), ctx, 0.2)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), result


@pytest.mark.parametrize("protocol", ["tcp", "http"])
async def test_a_timer_that_fired_late_is_ours(silent: str, ctx: ProbeContext, protocol: str) -> None:
    # The loop is blocked (as by a CPU-bound call) across the probe's deadline: its timer fires
    # 400 ms late. An answer could have been waiting unread all that time: not the target's fault.
    # (The HTTP endpoint has no pattern, so its hard limit, 0.45 s, is passed too and fires first.)
    endpoint = _endpoint(silent)
    if protocol == "http":
        endpoint = build_endpoint({"name": "timer test", "url": f"http://{silent}/", "timeout": 0.2})
    asyncio.get_running_loop().call_later(0.1, time.sleep, 0.5)
    result = await run_attempt(endpoint, ctx, 0.2)
    assert (result.status, result.error_kind) == (Status.UNKNOWN, ErrorKind.INTERNAL), result
    assert result.details["resource"] == "event_loop"
    assert "late (event loop starved)" in (result.error or "")


async def test_our_timeout_is_not_retried_into_a_down(silent: str, ctx: ProbeContext) -> None:
    asyncio.get_running_loop().call_later(0.1, time.sleep, 0.4)
    result = await run_check(_endpoint(silent, retries=2), ctx)
    assert (result.status, result.attempts) == (Status.UNKNOWN, 1), result


@contextmanager
def probe_replaced(protocol: Protocol, fn: Any) -> Iterator[None]:
    saved = PROBES.get(protocol)
    PROBES[protocol] = fn
    try:
        yield
    finally:
        if saved is None:
            PROBES.pop(protocol, None)
        else:
            PROBES[protocol] = saved


async def test_the_hard_limit_is_never_the_targets(silent: str, ctx: ProbeContext) -> None:
    async def overrunning(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
        await asyncio.sleep(60)  # a probe that forgot its own timer
        raise AssertionError("not reached")

    with probe_replaced(Protocol.TCP, overrunning):
        start = time.perf_counter()
        result = await run_check(_endpoint(silent, expected_response_pattern=None, retries=2), ctx)
    assert time.perf_counter() - start < 0.2 + 0.25 + 0.1
    assert (result.status, result.error_kind, result.attempts) == (Status.UNKNOWN, ErrorKind.INTERNAL, 1)
    assert result.details == {"hard_limit": True}
