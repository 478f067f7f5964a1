"""The HTTP/HTTPS probe against real servers on loopback: an aiohttp app (plain and TLS with
trustme certificates) and raw asyncio servers that misbehave at the protocol level."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp.connector
import pytest
import trustme
import uvloop
from aiohttp import web

from ispmon.availability.endpoints import build_endpoint
from ispmon.models import ErrorKind, ProbeResult, Protocol, Status
from ispmon.probes import http
from ispmon.probes.base import PROBES, ProbeContext, run_check
from tests.integration.probes.netutil import ipv6_available

SLOW_DELAY = 0.2
BODY_CAP = 256 * 1024
PATTERN_BODY = b"<html>uptime 42 days; service status: healthy</html>"


def _bound(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.bind((host, 0))
    return sock


def _closed_port() -> int:
    with _bound() as sock:
        return int(sock.getsockname()[1])


# path -> (status, body) for the routes that always answer the same.
STATIC: dict[str, tuple[int, bytes]] = {
    "/ok": (200, b"hello ispmon"),
    "/pattern": (200, PATTERN_BODY),
    "/catastrophic": (200, b"a" * 60 + b"!"),
    "/empty": (204, b""),
}


def _app() -> web.Application:
    flaky_seen: set[str] = set()

    async def static(request: web.Request) -> web.Response:
        code, body = STATIC[request.path]
        return web.Response(status=code, body=body)

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def redirect(request: web.Request) -> web.Response:
        n = request.match_info["n"]
        if n == "loop":
            raise web.HTTPFound("/redirect/loop")
        raise web.HTTPFound(f"/redirect/{int(n) - 1}" if int(n) > 1 else "/ok")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW_DELAY)
        return web.Response(text="finally")

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            while True:
                await resp.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the probe hung up, as it should
        return resp

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=b"%s %s %s" % (request.method.encode(), request.headers["X-Probe"].encode(), body)
        )

    async def flaky(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in flaky_seen:
            flaky_seen.add(key)
            return web.Response(status=503, text="warming up")
        return web.Response(text="ok now")

    app = web.Application()
    app.add_routes([web.get(path, static) for path in STATIC])
    app.add_routes(
        [
            web.get("/status/{code}", status),
            web.get("/redirect/{n}", redirect),
            web.get("/slow", slow),
            web.get("/endless", endless),
            web.post("/echo", echo),
            web.get("/flaky/{key}", flaky),
        ]
    )
    return app


@pytest.fixture(scope="module")
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext(max_body_bytes=BODY_CAP)
    yield context
    await context.close()


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[dict[str, str]]:
    """Base URLs: plain, IPv6, and HTTPS with a trusted, a 5-day, an expired and an untrusted cert."""
    now = datetime.now(UTC)
    ca, rogue_ca = trustme.CA(), trustme.CA()
    # The probe verifies with aiohttp's default context; teach that context our test CA (test-only).
    ca.configure_trust(aiohttp.connector._SSL_CONTEXT_VERIFIED)
    names = ("127.0.0.1", "localhost", "::1")
    certs = {
        "https": ca.issue_cert(*names),
        "https_5d": ca.issue_cert(*names, not_after=now + timedelta(days=5, hours=1)),
        "https_expired": ca.issue_cert(
            *names, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        ),
        "https_untrusted": rogue_ca.issue_cert(*names),
    }
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    urls: dict[str, str] = {}
    sock = _bound()
    urls["http"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
    await web.SockSite(runner, sock).start()
    if ipv6_available():
        sock = _bound("::1")
        urls["http6"] = f"http://[::1]:{sock.getsockname()[1]}"
        await web.SockSite(runner, sock).start()
    for name, cert in certs.items():
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_ctx)
        sock = _bound()
        urls[name] = f"https://127.0.0.1:{sock.getsockname()[1]}"
        await web.SockSite(runner, sock, ssl_context=server_ctx).start()
    yield urls
    await runner.cleanup()


# What each raw server sends after reading the request; None: never answer.
RAW_REPLIES: dict[str, bytes | None] = {
    "garbage": b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nthis is not http\r\n\r\n",
    "bad_header": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nthis line is no header\r\n\r\nok",
    "hang_up": b"",
    "reset": b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"y" * 1000,
    "silent": None,
    # A reason phrase far longer than anything an error text should carry, with a terminal escape.
    "long_reason": b"HTTP/1.1 503 \x1b[31m" + b"Overloaded " * 400 + b"\r\nContent-Length: 0\r\n\r\n",
}


def _raw_handler(name: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply = RAW_REPLIES[name]
        if reply is None:
            await reader.read()  # until the probe gives up and closes
        else:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        if name == "reset":
            await asyncio.sleep(0.05)
            # SO_LINGER with a zero timeout turns the close into a TCP RST.
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            writer.transport.abort()
        else:
            writer.close()

    return handle


@pytest.fixture(scope="module")
async def raw() -> AsyncIterator[dict[str, str]]:
    started = {name: await asyncio.start_server(_raw_handler(name), "127.0.0.1", 0) for name in RAW_REPLIES}
    yield {name: f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}/" for name, s in started.items()}
    for server in started.values():
        server.close()
        await server.wait_closed()


async def _speak_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Random bytes as soon as the connection opens, then close, without reading the request."""
    writer.write(os.urandom(512))
    writer.close()


@pytest.fixture(scope="module")
async def speaks_first() -> AsyncIterator[str]:
    server = await asyncio.start_server(_speak_first, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    server.close()
    await server.wait_closed()


def _endpoint(url: str, **fields: Any) -> Any:
    return build_endpoint({"name": "probe test", "url": url, "timeout": 0.5, "retries": 0, **fields})


async def _check(ctx: ProbeContext, url: str, **fields: Any) -> ProbeResult:
    endpoint = _endpoint(url, **fields)
    return await http.probe(endpoint, endpoint.timeout, ctx)


def test_probe_table_maps_http_and_https_here() -> None:
    assert PROBES[Protocol.HTTP] is http.probe
    assert PROBES[Protocol.HTTPS] is http.probe


async def test_get_ok(ctx: ProbeContext, servers: dict[str, str]) -> None:
    result = await _check(ctx, servers["http"] + "/ok")
    assert result.status is Status.UP, result
    assert result.error_kind is None
    assert result.details["status_code"] == 200
    assert result.details["bytes_read"] == len("hello ispmon")
    assert result.response_time_ms is not None and result.response_time_ms > 0


@pytest.mark.parametrize(
    ("path", "fields", "status", "kind"),
    [
        ("/status/404", {}, Status.DOWN, ErrorKind.UNEXPECTED_STATUS),
        ("/status/500", {"expected_status_code": [500, 502]}, Status.UP, None),
        ("/ok", {"expected_status_code": 201}, Status.DOWN, ErrorKind.UNEXPECTED_STATUS),
        ("/empty", {"expected_status_code": 204}, Status.UP, None),
    ],
)
async def test_status_codes(
    ctx: ProbeContext,
    servers: dict[str, str],
    path: str,
    fields: dict[str, Any],
    status: Status,
    kind: ErrorKind,
) -> None:
    result = await _check(ctx, servers["http"] + path, **fields)
    assert (result.status, result.error_kind) == (status, kind), result
    if kind is ErrorKind.UNEXPECTED_STATUS:
        assert str(result.details["status_code"]) in (result.error or "")


async def test_redirects(ctx: ProbeContext, servers: dict[str, str]) -> None:
    followed = await _check(ctx, servers["http"] + "/redirect/3")
    assert followed.status is Status.UP, followed
    assert followed.details["url"] == servers["http"] + "/ok"
    assert followed.details["redirects"] == 3

    not_followed = await _check(ctx, servers["http"] + "/redirect/3", follow_redirects=False)
    assert not_followed.status is Status.UP and not_followed.details["status_code"] == 302
    strict = await _check(
        ctx, servers["http"] + "/redirect/3", follow_redirects=False, expected_status_code=200
    )
    assert strict.error_kind is ErrorKind.UNEXPECTED_STATUS and "302" in (strict.error or "")

    looped = await _check(ctx, servers["http"] + "/redirect/loop")
    assert (looped.status, looped.error_kind) == (Status.DOWN, ErrorKind.PROTOCOL), looped
    assert "redirects" in (looped.error or "")


async def test_slow_response(ctx: ProbeContext, servers: dict[str, str]) -> None:
    url = servers["http"] + "/slow"
    result = await _check(ctx, url)
    assert result.status is Status.UP
    assert result.response_time_ms is not None and result.response_time_ms >= SLOW_DELAY * 1000

    degraded = await _check(ctx, url, degraded_response_time_ms=SLOW_DELAY * 1000 / 2)
    assert (degraded.status, degraded.error_kind) == (Status.DEGRADED, ErrorKind.SLOW), degraded
    assert degraded.response_time_ms is not None and degraded.response_time_ms >= SLOW_DELAY * 1000

    timed_out = await _check(ctx, url, timeout=SLOW_DELAY / 2)
    assert (timed_out.status, timed_out.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), timed_out


@pytest.mark.parametrize(
    ("path", "pattern", "kind"),
    [
        ("/pattern", r"status:\s*healthy", None),
        ("/pattern", r"status:\s*degraded", ErrorKind.PATTERN_MISMATCH),
        ("/status/404", r"status", ErrorKind.UNEXPECTED_STATUS),  # the status code is checked first
        ("/catastrophic", r"^(a|aa)+$", ErrorKind.PATTERN_TIMEOUT),
    ],
)
async def test_response_pattern(
    ctx: ProbeContext, servers: dict[str, str], path: str, pattern: str, kind: ErrorKind | None
) -> None:
    result = await _check(ctx, servers["http"] + path, expected_response_pattern=pattern)
    assert result.error_kind is kind, result
    assert result.status is (Status.UP if kind is None else Status.DOWN)


async def test_endless_body_is_capped(ctx: ProbeContext, servers: dict[str, str]) -> None:
    url = servers["http"] + "/endless"
    result = await _check(ctx, url)
    assert result.status is Status.UP, result
    assert result.details["body_truncated"] is True
    assert result.details["bytes_read"] == BODY_CAP

    matched = await _check(ctx, url, expected_response_pattern="x{100}")
    assert matched.status is Status.UP and matched.details["body_truncated"] is True

    missing = await _check(ctx, url, expected_response_pattern="y")
    assert (missing.status, missing.error_kind) == (Status.DOWN, ErrorKind.PATTERN_MISMATCH), missing
    assert missing.details["body_truncated"] is True


async def test_head_and_post(ctx: ProbeContext, servers: dict[str, str]) -> None:
    head = await _check(ctx, servers["http"] + "/ok", method="HEAD")
    assert head.status is Status.UP and head.details["bytes_read"] == 0, head

    posted = await _check(
        ctx,
        servers["http"] + "/echo",
        method="POST",
        headers={"X-Probe": "hdr-ok"},
        body="payload-ok",
        expected_response_pattern="^POST hdr-ok payload-ok$",
    )
    assert posted.status is Status.UP, posted


async def test_ipv6_literal_and_hostname(ctx: ProbeContext, servers: dict[str, str]) -> None:
    port = servers["http"].rsplit(":", 1)[1]
    by_name = await _check(ctx, f"http://localhost:{port}/ok")
    assert by_name.status is Status.UP, by_name
    if "http6" not in servers:
        pytest.fail("no IPv6 loopback (::1) on this machine: the IPv6 path cannot be tested")
    v6 = await _check(ctx, servers["http6"] + "/ok")
    assert v6.status is Status.UP, v6


async def test_https_trusted_certificate(ctx: ProbeContext, servers: dict[str, str]) -> None:
    result = await _check(ctx, servers["https"] + "/ok")
    assert result.status is Status.UP, result
    assert result.details["cert_days_left"] > 300
    assert datetime.fromisoformat(result.details["cert_not_after"]) > datetime.now(UTC)


@pytest.mark.parametrize(
    ("path", "fields"),
    [("/ok", {}), ("/ok", {"method": "HEAD"}), ("/empty", {}), ("/ok", {"verify_tls": False})],
)
async def test_https_certificate_close_to_expiry(
    ctx: ProbeContext, servers: dict[str, str], path: str, fields: dict[str, Any]
) -> None:
    # HEAD and 204 have no body: aiohttp drops the connection before we see the response.
    result = await _check(ctx, servers["https_5d"] + path, cert_expiry_days=14, **fields)
    assert (result.status, result.error_kind) == (Status.DEGRADED, ErrorKind.CERT_EXPIRY), result
    assert 4 <= result.details["cert_days_left"] <= 5
    ok = await _check(ctx, servers["https_5d"] + path, cert_expiry_days=3, **fields)
    assert ok.status is Status.UP, ok


async def test_https_expired_and_untrusted(ctx: ProbeContext, servers: dict[str, str]) -> None:
    expired = await _check(ctx, servers["https_expired"] + "/ok")
    assert (expired.status, expired.error_kind) == (Status.DOWN, ErrorKind.TLS), expired
    assert "expired" in (expired.error or "")

    expired_unverified = await _check(ctx, servers["https_expired"] + "/ok", verify_tls=False)
    assert (expired_unverified.status, expired_unverified.error_kind) == (Status.DOWN, ErrorKind.TLS)
    assert expired_unverified.details["cert_days_left"] < 0

    untrusted = await _check(ctx, servers["https_untrusted"] + "/ok")
    assert (untrusted.status, untrusted.error_kind) == (Status.DOWN, ErrorKind.TLS), untrusted

    untrusted_unverified = await _check(ctx, servers["https_untrusted"] + "/ok", verify_tls=False)
    assert untrusted_unverified.status is Status.UP, untrusted_unverified
    assert untrusted_unverified.details["cert_days_left"] > 300

    plain_to_tls = await _check(ctx, "https://" + servers["http"].removeprefix("http://") + "/ok")
    assert plain_to_tls.error_kind is ErrorKind.TLS, plain_to_tls


async def test_network_failures(ctx: ProbeContext) -> None:
    refused = await _check(ctx, f"http://127.0.0.1:{_closed_port()}/")
    assert (refused.status, refused.error_kind) == (Status.DOWN, ErrorKind.REFUSED), refused
    assert refused.response_time_ms is None

    unknown = await _check(ctx, "http://does-not-exist.invalid/")
    assert (unknown.status, unknown.error_kind) == (Status.DOWN, ErrorKind.DNS), unknown

    # Linux refuses a TCP connect to a broadcast address with ENETUNREACH, without any traffic.
    unreachable = await _check(ctx, "http://255.255.255.255:80/")
    assert (unreachable.status, unreachable.error_kind) == (Status.DOWN, ErrorKind.UNREACHABLE), unreachable


@pytest.mark.parametrize(
    ("server", "kind"),
    [
        ("garbage", ErrorKind.PROTOCOL),
        ("bad_header", ErrorKind.PROTOCOL),
        ("reset", ErrorKind.CONNECTION),
        ("hang_up", ErrorKind.CONNECTION),
        ("silent", ErrorKind.TIMEOUT),
    ],
)
async def test_misbehaving_servers(
    ctx: ProbeContext, raw: dict[str, str], server: str, kind: ErrorKind
) -> None:
    result = await _check(ctx, raw[server], timeout=0.3)
    assert (result.status, result.error_kind) == (Status.DOWN, kind), result
    assert result.error


async def test_run_check_retries_a_flaky_server(ctx: ProbeContext, servers: dict[str, str]) -> None:
    flaky = _endpoint(servers["http"] + "/flaky/retry-once", retries=2)
    result = await run_check(flaky, ctx)
    assert result.status is Status.UP, result
    assert result.attempts == 2

    broken = _endpoint(servers["http"] + "/status/500", retries=2)
    result = await run_check(broken, ctx)
    assert (result.status, result.error_kind, result.attempts) == (
        Status.DOWN,
        ErrorKind.UNEXPECTED_STATUS,
        3,
    )


async def _fifty_checks(url: str) -> list[ProbeResult]:
    ctx = ProbeContext()
    try:
        endpoint = _endpoint(url, timeout=2.0)
        return [await http.probe(endpoint, endpoint.timeout, ctx) for _ in range(50)]
    finally:
        await ctx.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_garbage_sent_at_once_is_always_a_protocol_error(speaks_first: str, loop: str) -> None:
    # The daemon runs on uvloop, where this used to be "connection: Cannot write to closing
    # transport"; asyncio's loop said "protocol". The same server must get the same verdict.
    if loop == "uvloop":
        results = await asyncio.to_thread(uvloop.run, _fifty_checks(speaks_first))
    else:
        results = await _fifty_checks(speaks_first)
    assert {(r.status, r.error_kind) for r in results} == {(Status.DOWN, ErrorKind.PROTOCOL)}, results[0]
    # One text apart from the quoted bytes, which are escaped and capped.
    prefix = "invalid HTTP response: Bad status line: "
    for result in results:
        assert result.error is not None and result.error.startswith(prefix), result
        assert result.error.isprintable() and len(result.error) <= len(prefix) + 200, result.error


async def test_target_text_in_an_error_is_escaped_and_capped(ctx: ProbeContext, raw: dict[str, str]) -> None:
    result = await _check(ctx, raw["long_reason"])
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.UNEXPECTED_STATUS), result
    error = result.error or ""
    assert error.startswith("HTTP 503 \\x1b[31mOverloaded Overloaded"), error
    assert error.endswith("…, expected 2xx or 3xx"), error
    assert error.isprintable() and len(error) <= 250
