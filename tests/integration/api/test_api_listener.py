"""What one API client can hold, over real sockets: idle and slow-loris connections are closed after
the header timeout, idle keep-alive connections after the keep-alive timeout, and connections over
the cap are closed on arrival while those already held keep working."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from ispmon.api.app import create_app, start_api
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database

LIVEZ = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

Start = Callable[..., Awaitable[int]]


@pytest.fixture
async def start(db_dsn: str) -> AsyncIterator[Start]:
    """Start the real API (as the daemon does) with the given bounds; returns its port."""
    db = await Database.connect(db_dsn, max_size=2)
    runners: list[web.AppRunner] = []

    async def go(**bounds: float) -> int:
        runner, _, port = await start_api(
            create_app(AppServices.build(db, Settings())), "127.0.0.1", 0, None, **bounds
        )
        runners.append(runner)
        return port

    try:
        yield go
    finally:
        for runner in runners:
            await runner.cleanup()
        await db.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection within `seconds` (all it sent is read first)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def get_livez(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(LIVEZ)
    status = await asyncio.wait_for(reader.readline(), 5)
    headers = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = next(
        int(h.split(b":")[1]) for h in headers.split(b"\r\n") if h.lower().startswith(b"content-length")
    )
    await asyncio.wait_for(reader.readexactly(length), 5)
    return status


async def test_idle_connections_are_closed_after_the_header_timeout(start: Start) -> None:
    port = await start(header_timeout=0.5, keepalive_timeout=30)
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    served = await asyncio.open_connection("127.0.0.1", port)
    assert await get_livez(*served) == b"HTTP/1.1 200 OK\r\n"
    began = time.monotonic()
    results = await asyncio.gather(*(closed_within(r, 5) for r, _ in idle))
    assert all(results), f"{results.count(False)} of 50 idle connections still open after 5 s"
    assert time.monotonic() - began < 3
    # The header timer stops once a request's headers are in: the served connection is kept
    # alive (keep-alive timeout 30 s) past the header timeout and still answers.
    assert await get_livez(*served) == b"HTTP/1.1 200 OK\r\n"
    for _, writer in [*idle, served]:
        writer.close()


async def test_slowloris_trickling_headers_is_cut_off(start: Start) -> None:
    port = await start(header_timeout=1.0, keepalive_timeout=30)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    closed_at = None
    for byte in LIVEZ[:-2] + b"X-Padding: " + b"a" * 200:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            break
        if reader.at_eof() or await closed_within(reader, 0.05):
            closed_at = time.monotonic() - began
            break
        if time.monotonic() - began > 8:
            break
    writer.close()
    assert closed_at is not None, "a client trickling its headers byte by byte was never cut off"
    assert 0.9 < closed_at < 2.5, closed_at


async def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(start: Start) -> None:
    port = await start(header_timeout=30, keepalive_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await get_livez(reader, writer) == b"HTTP/1.1 200 OK\r\n"
    assert await closed_within(reader, 3)
    writer.close()


async def test_connections_over_the_cap_are_closed_at_once_and_held_ones_still_work(start: Start) -> None:
    with capture_logs() as logs:
        port = await start(max_connections=5, header_timeout=60, keepalive_timeout=60)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await asyncio.sleep(0.1)
        extra = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        refused = await asyncio.gather(*(closed_within(r, 1) for r, _ in extra))
        assert all(refused), f"{refused.count(False)} of 20 connections over the cap were held"
        for reader, writer in held:
            assert await get_livez(reader, writer) == b"HTTP/1.1 200 OK\r\n"
        # A held connection closing frees a place: the next one is served.
        held[0][1].close()
        await asyncio.sleep(0.2)
        again = await asyncio.open_connection("127.0.0.1", port)
        assert await get_livez(*again) == b"HTTP/1.1 200 OK\r\n"
        for _, writer in [*held[1:], *extra, again]:
            writer.close()
    events = [entry["event"] for entry in logs if entry["event"].startswith("api_connections")]
    # One line when refusing starts and one when it ends, not one per refused connection.
    assert events == ["api_connections_refused", "api_connections_accepted_again"], events
    assert [e["refused"] for e in logs if e["event"] == "api_connections_accepted_again"] == [20]
