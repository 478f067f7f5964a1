"""TCP probe: connect, optionally send a payload, optionally read until a pattern matches.

Also home of `classify_os_error` / `describe_os_error`, which the HTTP and UDP probes share: every
socket-level failure is mapped to an `ErrorKind` in one place so that alerts route the same way
whatever the protocol.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from time import perf_counter
from typing import TYPE_CHECKING

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.base import pattern_timeout_result, up_or_slow

if TYPE_CHECKING:
    from ispmon.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext

_ERRNO_KINDS: dict[int, ErrorKind] = {
    errno.ECONNREFUSED: ErrorKind.REFUSED,
    errno.ENETUNREACH: ErrorKind.UNREACHABLE,
    errno.EHOSTUNREACH: ErrorKind.UNREACHABLE,
    errno.ENETDOWN: ErrorKind.UNREACHABLE,
    errno.EHOSTDOWN: ErrorKind.UNREACHABLE,
    # No local address of the target's family (e.g. ::1 on a host without IPv6).
    errno.EADDRNOTAVAIL: ErrorKind.UNREACHABLE,
    errno.ECONNRESET: ErrorKind.CONNECTION,
    errno.ECONNABORTED: ErrorKind.CONNECTION,
    errno.EPIPE: ErrorKind.CONNECTION,
    errno.ETIMEDOUT: ErrorKind.TIMEOUT,
    # A local firewall rule or a broadcast target: this host's policy, not the target's answer.
    errno.EACCES: ErrorKind.PERMISSION,
    errno.EPERM: ErrorKind.PERMISSION,
}

# When several addresses of one host failed differently, report the one closest to the target:
# a refusal proves the host is there, an unreachable route says nothing about it.
_KIND_PRIORITY = (
    ErrorKind.REFUSED,
    ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION,
    ErrorKind.UNREACHABLE,
    ErrorKind.PERMISSION,
)
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")
_READ_CHUNK = 65536


def classify_os_error(exc: BaseException) -> ErrorKind:
    """The `ErrorKind` of a socket-level exception (connect, send, receive, resolve)."""
    if isinstance(exc, socket.gaierror):
        return ErrorKind.DNS
    if isinstance(exc, ssl.SSLError):
        return ErrorKind.TLS
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT
    code = getattr(exc, "errno", None)
    if code is not None:
        return _ERRNO_KINDS.get(code, ErrorKind.CONNECTION)
    # Python 3.11's create_connection (and uvloop's) folds the errors of a multi-address host into
    # one OSError("Multiple exceptions: [Errno 111] ..., [Errno 99] ...") without an errno.
    kinds = {_ERRNO_KINDS.get(int(n)) for n in _ERRNO_IN_TEXT.findall(str(exc))}
    for kind in _KIND_PRIORITY:
        if kind in kinds:
            return kind
    return ErrorKind.CONNECTION


def describe_os_error(exc: BaseException) -> str:
    """Short human text for a socket-level exception, without Python class names."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verification failed: {exc.verify_message}"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


def host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    target = endpoint.target
    payload = endpoint.payload
    pattern = endpoint.pattern
    cap = ctx.max_body_bytes
    buf = bytearray()
    writer: asyncio.StreamWriter | None = None
    connected_at = 0.0
    matched = eof = pattern_timed_out = False
    start = perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(target.host, target.port)
            connected_at = perf_counter()
            if payload:
                writer.write(payload)
                await writer.drain()
            if pattern is not None:
                while len(buf) < cap:
                    chunk = await reader.read(min(_READ_CHUNK, cap - len(buf)))
                    if not chunk:
                        eof = True
                        break
                    buf += chunk
                    try:
                        if pattern.search(buf, timeout=ctx.pattern_timeout) is not None:
                            matched = True
                            break
                    except TimeoutError:
                        # regex's own time limit, not ours: caught here so the outer handler
                        # does not mistake it for the target being slow.
                        pattern_timed_out = True
                        break
        end = perf_counter()
    except TimeoutError:
        return _timed_out(timeout, connected_at, start, pattern is not None, buf, target.host, target.port)
    except OSError as exc:
        kind = classify_os_error(exc)
        where = host_port(target.host, target.port)
        if connected_at:
            rt = (perf_counter() - start) * 1000.0
            return ProbeResult.down(
                kind,
                f"{describe_os_error(exc)} during exchange with {where}",
                rt,
                connect_time_ms=(connected_at - start) * 1000.0,
                bytes_received=len(buf),
            )
        if kind is ErrorKind.DNS:
            return ProbeResult.down(kind, f"cannot resolve {target.host}: {describe_os_error(exc)}")
        return ProbeResult.down(kind, f"cannot connect to {where}: {describe_os_error(exc)}")
    finally:
        if writer is not None:
            _close(writer)

    total_ms = (end - start) * 1000.0
    details: dict[str, object] = {"connect_time_ms": (connected_at - start) * 1000.0}
    if pattern is not None:
        details["bytes_received"] = len(buf)
        if not matched:
            if pattern_timed_out:
                return pattern_timeout_result(ctx, total_ms, details)
            if eof and not buf:
                return ProbeResult(
                    Status.DOWN, total_ms, ErrorKind.CONNECTION, "connection closed without a reply", details
                )
            if not eof:
                details["body_truncated"] = True
            why = "before the connection closed" if eof else f"in the first {len(buf)} bytes"
            return ProbeResult(
                Status.DOWN, total_ms, ErrorKind.PATTERN_MISMATCH, f"pattern not found {why}", details
            )
    return up_or_slow(endpoint, total_ms, details)


def _timed_out(
    timeout: float,
    connected_at: float,
    start: float,
    expecting: bool,
    buf: bytearray,
    host: str,
    port: int | None,
) -> ProbeResult:
    if not connected_at:
        return ProbeResult.down(
            ErrorKind.TIMEOUT, f"cannot connect to {host_port(host, port)} within {timeout:g} s"
        )
    rt = (perf_counter() - start) * 1000.0
    connect_ms = (connected_at - start) * 1000.0
    if not expecting:
        return ProbeResult.down(
            ErrorKind.TIMEOUT,
            f"peer did not accept the payload within {timeout:g} s",
            rt,
            connect_time_ms=connect_ms,
        )
    if buf:
        # The peer talks, just not what we expect (or not all of it in time): a content problem.
        return ProbeResult.down(
            ErrorKind.PATTERN_MISMATCH,
            f"pattern not found in {len(buf)} bytes received within {timeout:g} s",
            rt,
            connect_time_ms=connect_ms,
            bytes_received=len(buf),
        )
    return ProbeResult.down(
        ErrorKind.TIMEOUT, f"no reply within {timeout:g} s", rt, connect_time_ms=connect_ms, bytes_received=0
    )


def _close(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    # A graceful close waits for unsent data, which a peer that stopped reading would hold forever.
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()
