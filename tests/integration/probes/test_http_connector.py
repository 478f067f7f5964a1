"""The probes' HTTP connector: one address goes straight to the event loop (no aiohappyeyeballs),
several keep aiohttp's happy-eyeballs race; every check still opens its own connection."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.connector
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from ispmon.availability.endpoints import build_endpoint
from ispmon.models import ErrorKind, Status
from ispmon.probes import http
from ispmon.probes.base import ProbeContext
from ispmon.probes.httpclient import ProbeConnector, ProbeRequest
from tests.integration.probes.netutil import ipv6_available


@pytest.fixture
async def server() -> AsyncIterator[dict[str, Any]]:
    """An HTTP server on 127.0.0.1 and ::1 (same port) that records each connection's client port."""
    peers: list[tuple[str, int]] = []

    async def ok(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peers.append((peer[0], peer[1]))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/ok", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    v4 = socket.socket()
    v4.bind(("127.0.0.1", 0))
    port = v4.getsockname()[1]
    await web.SockSite(runner, v4).start()
    if not ipv6_available():
        pytest.fail("no IPv6 loopback (::1) on this machine: the IPv6 path cannot be tested")
    v6 = socket.socket(socket.AF_INET6)
    v6.bind(("::1", 0))
    await web.SockSite(runner, v6).start()
    yield {"port": port, "port6": v6.getsockname()[1], "peers": peers}
    await runner.cleanup()


@pytest.fixture
def no_happy_eyeballs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make aiohttp's aiohappyeyeballs path fail, so only the direct path can connect."""

    async def refuse(*_: Any, **__: Any) -> socket.socket:
        raise OSError(99, "aiohappyeyeballs was used")

    monkeypatch.setattr(aiohttp.connector.aiohappyeyeballs, "start_connection", refuse)


def _endpoint(url: str) -> Any:
    return build_endpoint({"name": "connector test", "url": url, "timeout": 1.0, "retries": 0})


async def test_an_ip_literal_connects_without_happy_eyeballs(
    server: dict[str, Any], no_happy_eyeballs: None
) -> None:
    ctx = ProbeContext()
    try:
        for url in (f"http://127.0.0.1:{server['port']}/ok", f"http://[::1]:{server['port6']}/ok"):
            for _ in range(3):
                endpoint = _endpoint(url)
                result = await http.probe(endpoint, endpoint.timeout, ctx)
                assert result.status is Status.UP, result
    finally:
        await ctx.close()
    peers = server["peers"]
    assert [host for host, _ in peers] == ["127.0.0.1"] * 3 + ["::1"] * 3
    # A fresh connection per check: every request came from its own client port.
    assert len({port for _, port in peers}) == 6


async def test_refused_on_the_direct_path_is_a_refused_result(no_happy_eyeballs: None) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = ProbeContext()
    try:
        endpoint = _endpoint(f"http://127.0.0.1:{port}/")
        result = await http.probe(endpoint, endpoint.timeout, ctx)
    finally:
        await ctx.close()
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.REFUSED), result
    assert result.error == f"connection refused by 127.0.0.1:{port}"


class _Addresses(AbstractResolver):
    """A resolver that answers every name with these (address, port) pairs, in this order."""

    def __init__(self, *answers: tuple[str, int]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=p,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for addr, p in self.answers
        ]

    async def close(self) -> None:
        pass


async def _get(resolver: AbstractResolver, url: str) -> int:
    connector = ProbeConnector(force_close=True, limit=0, resolver=resolver)
    async with (
        aiohttp.ClientSession(connector=connector, request_class=ProbeRequest) as session,
        session.get(url) as resp,
    ):
        return resp.status


async def test_a_name_with_one_address_connects_without_happy_eyeballs(
    server: dict[str, Any], no_happy_eyeballs: None
) -> None:
    assert await _get(_Addresses(("::1", server["port6"])), f"http://one.test:{server['port6']}/ok") == 200
    assert [host for host, _ in server["peers"]] == ["::1"]


async def test_several_addresses_keep_the_happy_eyeballs_fallback(server: dict[str, Any]) -> None:
    # A half-broken dual-stack name: nothing listens on its IPv6 address, the IPv4 one answers.
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        closed6 = s.getsockname()[1]
    resolver = _Addresses(("::1", closed6), ("127.0.0.1", server["port"]))
    assert await _get(resolver, f"http://dual.test:{server['port']}/ok") == 200
    assert [host for host, _ in server["peers"]] == ["127.0.0.1"]
