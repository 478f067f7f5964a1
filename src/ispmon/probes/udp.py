"""UDP probe: send one datagram on a connected socket and wait for a reply.

A connected UDP socket is used on purpose: Linux then reports an ICMP port-unreachable for our
datagram as ECONNREFUSED on the socket (delivered to `error_received`), which tells a closed port
apart from a silent service.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import TYPE_CHECKING

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.base import pattern_failure, up_or_slow
from ispmon.probes.oserrors import classify_os_error, describe_os_error, host_port, resource_errno
from ispmon.probes.resources import resource_failure

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext


class _ReplyProtocol(asyncio.DatagramProtocol):
    """Completes `waiter` with the first datagram or the first socket error."""

    __slots__ = ("waiter",)

    def __init__(self, waiter: asyncio.Future[bytes]) -> None:
        self.waiter = waiter

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.waiter.done():
            self.waiter.set_exception(exc)


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    target = endpoint.target
    payload = endpoint.payload or b""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[bytes] = loop.create_future()
    protocol = _ReplyProtocol(waiter)
    transport: asyncio.DatagramTransport | None = None
    sent_at = 0.0
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: protocol, remote_addr=(target.host, target.port)
            )
            sent_at = perf_counter()
            transport.sendto(payload)
            data = await waiter
        rt = (perf_counter() - sent_at) * 1000.0
    except TimeoutError:
        if not sent_at:
            # Only name resolution happens before the send; it stalled.
            return ProbeResult.down(ErrorKind.DNS, f"cannot resolve {target.host} within {timeout:g} s")
        if endpoint.allow_no_reply:
            return ProbeResult(Status.UP, None, details={"reply": False})
        return ProbeResult.down(ErrorKind.TIMEOUT, f"no reply within {timeout:g} s", reply=False)
    except OSError as exc:
        kind = classify_os_error(exc)
        where = host_port(target.host, target.port)
        if kind is ErrorKind.INTERNAL:  # this host ran out of descriptors, buffers or memory
            return resource_failure(
                resource_errno(exc) or "os", f"cannot send to {where}: {describe_os_error(exc)}"
            )
        if kind is ErrorKind.REFUSED:
            return ProbeResult.down(kind, f"port unreachable (ICMP) at {where}", reply=False)
        if kind is ErrorKind.DNS:
            return ProbeResult.down(
                kind, f"cannot resolve {target.host}: {describe_os_error(exc)}", reply=False
            )
        return ProbeResult.down(kind, f"cannot send to {where}: {describe_os_error(exc)}", reply=False)
    finally:
        if transport is not None:
            transport.close()
        elif not waiter.done():
            waiter.cancel()

    details: dict[str, object] = {"reply": True, "reply_bytes": len(data)}
    failure = await pattern_failure(endpoint, data, ctx, rt, details, f"the {len(data)}-byte reply")
    if failure is not None:
        return failure
    return up_or_slow(endpoint, rt, details, "reply took")
