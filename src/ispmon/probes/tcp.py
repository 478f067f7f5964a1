"""TCP probe: connect, optionally send a payload, optionally read until a pattern matches."""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.base import pattern_busy_result, pattern_timeout_result, search_pattern, up_or_slow
from ispmon.probes.oserrors import classify_os_error, describe_os_error, host_port, resource_errno
from ispmon.probes.patterns import PatternOutcome
from ispmon.probes.resources import resource_failure

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext

_READ_CHUNK = 65536


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    target = endpoint.target
    payload = endpoint.payload
    pattern = endpoint.pattern
    cap = ctx.max_body_bytes
    buf = bytearray()
    transport: asyncio.WriteTransport | None = None
    connected_at = 0.0
    matched = eof = False
    outcome: PatternOutcome | None = None
    start = perf_counter()
    try:
        async with asyncio.timeout(timeout) as target_clock:
            if payload is None and pattern is None:
                # A bare connect check: a plain transport, without the StreamReader/StreamWriter
                # pair open_connection builds (measured in bench/compare.py; see the commit).
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_connection(asyncio.Protocol, target.host, target.port)
                connected_at = perf_counter()
                end = connected_at
                return up_or_slow(endpoint, (end - start) * 1000.0, {"connect_time_ms": (end - start) * 1000.0})
            reader, writer = await asyncio.open_connection(target.host, target.port)
            transport = writer.transport
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
                    outcome = await _search_paused(target_clock, ctx, pattern, buf)
                    if outcome is PatternOutcome.MATCH:
                        matched = True
                        break
                    if outcome is not PatternOutcome.MISMATCH:
                        break  # the check's pattern budget is spent, or no worker was free
        end = perf_counter()
    except TimeoutError:
        return _timed_out(timeout, connected_at, start, pattern is not None, buf, target.host, target.port)
    except OSError as exc:
        kind = classify_os_error(exc)
        where = host_port(target.host, target.port)
        if kind is ErrorKind.INTERNAL:  # this host ran out of descriptors, buffers or memory
            doing = "exchange with" if connected_at else "cannot connect to"
            return resource_failure(resource_errno(exc) or "os", f"{doing} {where}: {describe_os_error(exc)}")
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
        if transport is not None:
            _close(transport)

    total_ms = (end - start) * 1000.0
    details: dict[str, object] = {"connect_time_ms": (connected_at - start) * 1000.0}
    if pattern is not None:
        details["bytes_received"] = len(buf)
        if not matched:
            if outcome is PatternOutcome.TIMEOUT:
                return pattern_timeout_result(ctx, total_ms, details)
            if outcome is PatternOutcome.BUSY:
                return pattern_busy_result(ctx, total_ms, details)
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


async def _search_paused(
    target_clock: asyncio.Timeout, ctx: ProbeContext, pattern: Any, buf: bytearray
) -> PatternOutcome:
    """Search what arrived so far with the target's clock stopped: time spent matching (or waiting
    for a pattern worker) is ours, and must not turn into a timeout blamed on the target."""
    when = target_clock.when()
    loop = asyncio.get_running_loop()
    paused_at = loop.time()
    target_clock.reschedule(None)
    try:
        return await search_pattern(ctx, pattern, buf)
    finally:
        if when is not None:
            target_clock.reschedule(when + (loop.time() - paused_at))


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


def _close(transport: asyncio.WriteTransport) -> None:
    # A graceful close waits for unsent data, which a peer that stopped reading would hold forever.
    if transport.get_write_buffer_size():
        transport.abort()
    else:
        transport.close()
