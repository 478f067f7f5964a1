"""The TCP and UDP probes against real servers on loopback (banner, echo, endless, silent, closed
ports), plus the shared socket-error classifier."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest

from ispmon.availability.endpoints import build_endpoint
from ispmon.models import ErrorKind, ProbeResult, Protocol, Status
from ispmon.probes import tcp, udp
from ispmon.probes.base import PROBES, ProbeContext, run_check
from tests.integration.probes.netutil import ipv6_available

BODY_CAP = 64 * 1024
BANNER = b"220 mail.test.local ESMTP ready\r\n"
DELAY = 0.1


def _closed_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext(max_body_bytes=BODY_CAP)
    yield context
    await context.close()


# --- TCP servers -------------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(BANNER)
    while data := await reader.read(4096):
        writer.write(b"250 " + data)
    writer.close()


async def _slow_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(DELAY)
    await _banner(reader, writer)


async def _wrong_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
    await writer.drain()
    writer.close()


async def _endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    chunk = b"z" * 8192
    try:
        while True:
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # the probe stopped reading at its cap and hung up
    writer.close()


async def _catastrophic(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"a" * 60 + b"!")
    await reader.read()
    writer.close()


async def _close_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the probe gives up
    writer.close()


@pytest.fixture(scope="module")
async def tcp_servers() -> AsyncIterator[dict[str, str]]:
    handlers: dict[str, Handler] = {
        "banner": _banner,
        "slow_banner": _slow_banner,
        "wrong": _wrong_then_close,
        "endless": _endless,
        "catastrophic": _catastrophic,
        "close": _close_at_once,
        "silent": _silent,
    }
    started = {name: await asyncio.start_server(h, "127.0.0.1", 0) for name, h in handlers.items()}
    urls = {name: f"127.0.0.1:{s.sockets[0].getsockname()[1]}" for name, s in started.items()}
    if ipv6_available():
        v6 = await asyncio.start_server(_banner, "::1", 0)
        started["banner6"] = v6
        urls["banner6"] = f"[::1]:{v6.sockets[0].getsockname()[1]}"
    yield urls
    for server in started.values():
        server.close()
        await server.wait_closed()


# --- UDP servers -------------------------------------------------------------------------------


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, delay: float = 0.0, silent: bool = False) -> None:
        self.delay, self.silent = delay, silent
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.silent or self.transport is None:
            return
        reply = b"echo:" + data
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)
        else:
            self.transport.sendto(reply, addr)


@pytest.fixture(scope="module")
async def udp_servers() -> AsyncIterator[dict[str, str]]:
    loop = asyncio.get_running_loop()
    servers: dict[str, tuple[str, _Echo]] = {
        "echo": ("127.0.0.1", _Echo()),
        "slow": ("127.0.0.1", _Echo(delay=DELAY)),
        "silent": ("127.0.0.1", _Echo(silent=True)),
    }
    if ipv6_available():
        servers["echo6"] = ("::1", _Echo())
    transports: list[asyncio.DatagramTransport] = []
    urls: dict[str, str] = {}
    for name, (host, proto) in servers.items():
        transport, _ = await loop.create_datagram_endpoint(lambda p=proto: p, local_addr=(host, 0))
        transports.append(transport)
        port = transport.get_extra_info("sockname")[1]
        urls[name] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    yield urls
    for transport in transports:
        transport.close()


async def _check(ctx: ProbeContext, protocol: str, url: str, **fields: Any) -> ProbeResult:
    endpoint = build_endpoint(
        {"name": "probe test", "protocol": protocol, "url": url, "timeout": 0.3, "retries": 0, **fields}
    )
    result = await PROBES[endpoint.protocol](endpoint, endpoint.timeout, ctx)
    assert isinstance(result, ProbeResult)
    return result


def test_probe_table_maps_tcp_and_udp_here() -> None:
    assert PROBES[Protocol.TCP] is tcp.probe
    assert PROBES[Protocol.UDP] is udp.probe


# --- TCP ---------------------------------------------------------------------------------------


async def test_tcp_connect_only(ctx: ProbeContext, tcp_servers: dict[str, str]) -> None:
    result = await _check(ctx, "tcp", tcp_servers["silent"])
    assert result.status is Status.UP, result
    assert result.response_time_ms is not None
    assert 0 < result.details["connect_time_ms"] <= result.response_time_ms


@pytest.mark.parametrize(
    ("fields", "expected_bytes"),
    [
        ({"expected_response_pattern": r"^220 "}, len(BANNER)),
        ({"send": "EHLO probe", "expected_response_pattern": r"250 EHLO probe"}, None),
        ({"send_hex": "4e 4f 4f 50 0d 0a", "expected_response_pattern": r"250 NOOP\r\n"}, None),
    ],
)
async def test_tcp_banner_and_exchange(
    ctx: ProbeContext, tcp_servers: dict[str, str], fields: dict[str, Any], expected_bytes: int | None
) -> None:
    result = await _check(ctx, "tcp", tcp_servers["banner"], **fields)
    assert result.status is Status.UP, result
    if expected_bytes is not None:
        assert result.details["bytes_received"] == expected_bytes


async def test_tcp_hostname_and_ipv6(ctx: ProbeContext, tcp_servers: dict[str, str]) -> None:
    port = tcp_servers["banner"].rsplit(":", 1)[1]
    by_name = await _check(ctx, "tcp", f"localhost:{port}", expected_response_pattern="^220")
    assert by_name.status is Status.UP, by_name
    by_port_field = await _check(ctx, "tcp", "tcp://127.0.0.1", port=int(port))
    assert by_port_field.status is Status.UP, by_port_field
    if "banner6" not in tcp_servers:
        pytest.fail("no IPv6 loopback (::1) on this machine: the IPv6 path cannot be tested")
    v6 = await _check(ctx, "tcp", tcp_servers["banner6"], expected_response_pattern="^220")
    assert v6.status is Status.UP, v6


async def test_tcp_content_failures(ctx: ProbeContext, tcp_servers: dict[str, str]) -> None:
    wrong = await _check(ctx, "tcp", tcp_servers["wrong"], expected_response_pattern="^220")
    assert (wrong.status, wrong.error_kind) == (Status.DOWN, ErrorKind.PATTERN_MISMATCH), wrong
    assert "closed" in (wrong.error or "")

    talks_but_never_matches = await _check(
        ctx, "tcp", tcp_servers["banner"], expected_response_pattern="^SSH-"
    )
    assert talks_but_never_matches.error_kind is ErrorKind.PATTERN_MISMATCH, talks_but_never_matches

    endless = await _check(ctx, "tcp", tcp_servers["endless"], expected_response_pattern="never")
    assert (endless.status, endless.error_kind) == (Status.DOWN, ErrorKind.PATTERN_MISMATCH), endless
    assert endless.details["body_truncated"] is True
    assert endless.details["bytes_received"] == BODY_CAP

    hostile = await _check(ctx, "tcp", tcp_servers["catastrophic"], expected_response_pattern="^(a|aa)+$")
    assert (hostile.status, hostile.error_kind) == (Status.DOWN, ErrorKind.PATTERN_TIMEOUT), hostile

    closed = await _check(ctx, "tcp", tcp_servers["close"], expected_response_pattern="^220")
    assert (closed.status, closed.error_kind) == (Status.DOWN, ErrorKind.CONNECTION), closed

    silent = await _check(ctx, "tcp", tcp_servers["silent"], expected_response_pattern="^220")
    assert (silent.status, silent.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), silent
    assert silent.details["connect_time_ms"] > 0


async def test_tcp_slow_banner(ctx: ProbeContext, tcp_servers: dict[str, str]) -> None:
    url = tcp_servers["slow_banner"]
    result = await _check(
        ctx, "tcp", url, expected_response_pattern="^220", degraded_response_time_ms=DELAY * 500
    )
    assert (result.status, result.error_kind) == (Status.DEGRADED, ErrorKind.SLOW), result
    assert result.response_time_ms is not None and result.response_time_ms >= DELAY * 1000
    assert result.details["connect_time_ms"] < DELAY * 1000


async def test_tcp_network_failures(ctx: ProbeContext) -> None:
    refused = await _check(ctx, "tcp", f"127.0.0.1:{_closed_port(socket.SOCK_STREAM)}")
    assert (refused.status, refused.error_kind) == (Status.DOWN, ErrorKind.REFUSED), refused
    assert refused.response_time_ms is None

    unknown = await _check(ctx, "tcp", "does-not-exist.invalid:25")
    assert (unknown.status, unknown.error_kind) == (Status.DOWN, ErrorKind.DNS), unknown

    # Linux refuses a TCP connect to a broadcast address with ENETUNREACH, without any traffic.
    unreachable = await _check(ctx, "tcp", "255.255.255.255:80")
    assert (unreachable.status, unreachable.error_kind) == (Status.DOWN, ErrorKind.UNREACHABLE), unreachable


async def test_tcp_run_check_retries_until_attempts_run_out(ctx: ProbeContext) -> None:
    endpoint = build_endpoint(
        {
            "name": "t",
            "protocol": "tcp",
            "url": f"127.0.0.1:{_closed_port(socket.SOCK_STREAM)}",
            "timeout": 0.2,
        }
        | {"retries": 2}
    )
    result = await run_check(endpoint, ctx)
    assert (result.status, result.error_kind, result.attempts) == (Status.DOWN, ErrorKind.REFUSED, 3)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), ErrorKind.REFUSED),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), ErrorKind.UNREACHABLE),
        (OSError(errno.EHOSTUNREACH, "No route to host"), ErrorKind.UNREACHABLE),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), ErrorKind.CONNECTION),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ErrorKind.DNS),
        (TimeoutError(), ErrorKind.TIMEOUT),
        (
            # What Python 3.11 raises when every address of a host failed, differently.
            OSError(
                "Multiple exceptions: [Errno 99] Cannot assign requested address, "
                "[Errno 111] Connect call failed ('127.0.0.1', 1)"
            ),
            ErrorKind.REFUSED,
        ),
    ],
)
def test_classify_os_error(exc: BaseException, kind: ErrorKind) -> None:
    assert tcp.classify_os_error(exc) is kind


# --- UDP ---------------------------------------------------------------------------------------


async def test_udp_echo(ctx: ProbeContext, udp_servers: dict[str, str]) -> None:
    result = await _check(ctx, "udp", udp_servers["echo"], send="ping")
    assert result.status is Status.UP, result
    assert result.details == {"reply": True, "reply_bytes": len(b"echo:ping")}
    assert result.response_time_ms is not None and result.response_time_ms > 0

    binary = await _check(
        ctx, "udp", udp_servers["echo"], send_hex="00ff", expected_response_pattern=r"echo:\x00\xff"
    )
    assert binary.status is Status.UP, binary

    mismatch = await _check(ctx, "udp", udp_servers["echo"], send="ping", expected_response_pattern="^pong")
    assert (mismatch.status, mismatch.error_kind) == (Status.DOWN, ErrorKind.PATTERN_MISMATCH), mismatch
    assert mismatch.details["reply_bytes"] == len(b"echo:ping")


async def test_udp_hostname_and_ipv6(ctx: ProbeContext, udp_servers: dict[str, str]) -> None:
    port = udp_servers["echo"].rsplit(":", 1)[1]
    by_name = await _check(ctx, "udp", f"localhost:{port}", send="x")
    assert by_name.status is Status.UP, by_name
    if "echo6" not in udp_servers:
        pytest.fail("no IPv6 loopback (::1) on this machine: the IPv6 path cannot be tested")
    v6 = await _check(ctx, "udp", udp_servers["echo6"], send="x")
    assert v6.status is Status.UP, v6


async def test_udp_slow_reply(ctx: ProbeContext, udp_servers: dict[str, str]) -> None:
    result = await _check(ctx, "udp", udp_servers["slow"], send="x", degraded_response_time_ms=DELAY * 500)
    assert (result.status, result.error_kind) == (Status.DEGRADED, ErrorKind.SLOW), result
    assert result.response_time_ms is not None and result.response_time_ms >= DELAY * 1000


async def test_udp_silence(ctx: ProbeContext, udp_servers: dict[str, str]) -> None:
    silent = await _check(ctx, "udp", udp_servers["silent"], send="x", timeout=0.2)
    assert (silent.status, silent.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), silent
    assert silent.error == "no reply within 0.2 s"

    allowed = await _check(ctx, "udp", udp_servers["silent"], send="x", timeout=0.2, allow_no_reply=True)
    assert allowed.status is Status.UP, allowed
    assert allowed.details["reply"] is False


@pytest.mark.parametrize("allow_no_reply", [False, True])
async def test_udp_closed_port_is_refused(ctx: ProbeContext, allow_no_reply: bool) -> None:
    url = f"127.0.0.1:{_closed_port(socket.SOCK_DGRAM)}"
    result = await _check(ctx, "udp", url, send="x", allow_no_reply=allow_no_reply)
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.REFUSED), result


async def test_udp_unknown_host(ctx: ProbeContext) -> None:
    result = await _check(ctx, "udp", "does-not-exist.invalid:53", send="x")
    assert (result.status, result.error_kind) == (Status.DOWN, ErrorKind.DNS), result
