"""ICMP probe: `packet_count` echo requests, `packet_interval` apart, summarised as RTT and loss.

The exchange is icmplib's `async_ping` loop (send, wait for the matching reply, sleep, repeat) run
over the process's one shared ICMP socket per family (ispmon.probes.icmpmux: replies handed out
by identifier and sequence, so CPU per echo does not grow with the echoes in flight), with two
differences that matter to a monitor:
`async_ping` swallows every error, so a "destination unreachable" answer or a send that fails for
lack of a route would look like plain packet loss; here they become DOWN/unreachable. And the
payload is fixed instead of freshly randomised per packet (saves CPU; see `_PAYLOAD`).

The per-packet wait is derived from the time budget so the whole probe ends within `timeout`:
``count * wait + (count - 1) * interval <= timeout``. When the configured interval leaves less
than half of the budget for waiting, the interval is shortened instead of the wait.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from itertools import pairwise
from time import perf_counter
from typing import TYPE_CHECKING, Any

from icmplib.exceptions import ICMPError, ICMPSocketError, SocketPermissionError

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.base import up_or_slow
from ispmon.probes.oserrors import classify_os_error, resource_errno
from ispmon.probes.resources import resource_failure

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext

# icmplib reads a non-echo-reply packet's id/sequence from payload bytes 24-27 of whatever it
# received, so our own echo requests (seen by raw sockets on loopback) could pass for a reply.
# ASCII there decodes to a sequence number >= 0x2020, above any packet_count (<= 100).
_PAYLOAD = b"ispmon availability check, icmp echo request padding...."
# Time kept back for resolving, socket set-up and event-loop latency, so the last wait still ends
# before `timeout` (the scheduler's hard limit is timeout + 0.25 s).
_SLACK = 0.02
_PERMISSION_HINT = (
    "run ispmon as root or grant it CAP_NET_RAW (setcap cap_net_raw+ep, or AmbientCapabilities= in "
    "the systemd unit), or allow unprivileged ICMP by widening the sysctl net.ipv4.ping_group_range"
)


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    start = perf_counter()
    host = endpoint.target.host
    try:
        address = str(ipaddress.ip_address(host))
        resolved = False
    except ValueError:
        try:
            async with asyncio.timeout(timeout):
                address = await _resolve(host)
        except TimeoutError:
            return ProbeResult.down(ErrorKind.DNS, f"{host}: name did not resolve within {timeout:g} s")
        except OSError as exc:
            if (ours := resource_errno(exc)) is not None:
                return resource_failure(ours, f"{host}: cannot resolve ({exc.strerror or exc})")
            return ProbeResult.down(ErrorKind.DNS, f"{host}: name did not resolve ({exc.strerror or exc})")
        resolved = True

    count, interval = endpoint.packet_count, endpoint.packet_interval
    budget = timeout - (perf_counter() - start) - _SLACK
    if budget <= 0:
        return ProbeResult.down(ErrorKind.TIMEOUT, f"no time left for echo requests after resolving {host}")
    wait, interval = _schedule(budget, count, interval)

    try:
        sock = ctx.icmp_socket(6 if ":" in address else 4)
    except SocketPermissionError:
        mode = "raw" if ctx.icmp_privileged else "unprivileged (datagram)"
        return ProbeResult.down(
            ErrorKind.PERMISSION, f"not allowed to open a {mode} ICMP socket: {_PERMISSION_HINT}"
        )
    except ICMPSocketError as exc:
        if (ours := resource_errno(exc)) is not None:
            return resource_failure(ours, f"cannot open an ICMP socket: {exc}")
        return ProbeResult.down(_kind(exc), f"cannot open an ICMP socket: {exc}")

    rtts: list[float] = []
    sent = 0
    # The last error that explains missing replies: (kind, text, errno name if it was ours).
    failure: tuple[ErrorKind, str, str | None] | None = None
    loop = asyncio.get_running_loop()
    for index in range(count):
        if index:
            await asyncio.sleep(interval)
        try:
            sequence, sent_at, future = sock.send(address, _PAYLOAD)
        except OSError as exc:
            # No route / unreachable network: every further send fails the same way.
            failure = (_kind(exc), f"cannot send to {address}: {exc}", resource_errno(exc))
            break
        sent += 1
        # A bare timer, not asyncio.wait_for: this runs for every packet of every host.
        timer = loop.call_later(wait, _expire, future)
        try:
            reply = await future
        finally:
            timer.cancel()
            sock.forget(sequence, future)
        if reply is None:
            continue
        try:
            reply.raise_for_status()
        except ICMPError as exc:  # destination unreachable, TTL exceeded in transit, ...
            failure = (ErrorKind.UNREACHABLE, f"{address}: {exc}", None)
            continue
        rtts.append((reply.time - sent_at) * 1000.0)

    details = _stats(rtts, sent)
    if resolved:
        details["address"] = address
    if not rtts:
        if failure is not None:
            if failure[0] is ErrorKind.INTERNAL:  # a send or receive failed for our own resources
                return resource_failure(failure[2] or "os", failure[1], None, details)
            return ProbeResult.down(failure[0], failure[1], **details)
        return ProbeResult.down(ErrorKind.TIMEOUT, f"no echo reply from {address} ({sent} sent)", **details)
    avg = details["rtt_avg_ms"]
    loss = details["loss_percent"]
    if loss > endpoint.loss_threshold_percent:
        text = f"{loss:g}% packet loss > {endpoint.loss_threshold_percent:g}% ({len(rtts)}/{sent} replies)"
        return ProbeResult(Status.DEGRADED, avg, ErrorKind.PACKET_LOSS, text, details)
    return up_or_slow(endpoint, avg, details, "average RTT")


async def _resolve(host: str) -> str:
    """The first address the system resolver gives (its RFC 6724 order), like ping(8)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"no address for {host}")
    return str(infos[0][4][0])


def _schedule(budget: float, count: int, interval: float) -> tuple[float, float]:
    """(per-packet wait, interval) so that count waits and count - 1 intervals fit in budget."""
    if count == 1:
        return budget, 0.0
    wait = (budget - (count - 1) * interval) / count
    if wait < budget / (2 * count):
        return budget / (2 * count), budget / (2 * (count - 1))
    return wait, interval


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


def _kind(exc: OSError) -> ErrorKind:
    # icmplib re-raises OSError as ICMPSocketError(str(err)); the errno survives in the text and
    # in __context__, which is what the shared classifier reads.
    cause = exc.__context__ if isinstance(exc.__context__, OSError) else exc
    kind = classify_os_error(cause)
    return ErrorKind.CONNECTION if kind is ErrorKind.TIMEOUT else kind


def _stats(rtts: list[float], sent: int) -> dict[str, Any]:
    received = len(rtts)
    if rtts:
        rtt_min, rtt_max, rtt_avg = min(rtts), max(rtts), sum(rtts) / received
        # Mean absolute difference of consecutive RTTs (icmplib's Host.jitter; RFC 3550's idea).
        jitter = sum(abs(b - a) for a, b in pairwise(rtts)) / (received - 1) if received > 1 else 0.0
    else:
        rtt_min = rtt_max = rtt_avg = jitter = None
    return {
        "rtt_min_ms": _r(rtt_min),
        "rtt_avg_ms": _r(rtt_avg),
        "rtt_max_ms": _r(rtt_max),
        "jitter_ms": _r(jitter),
        "packets_sent": sent,
        "packets_received": received,
        "loss_percent": round(100.0 * (sent - received) / sent, 2) if sent else 100.0,
        # Every reply's RTT, in order: the latency view's percentiles ("smoke") need all packets of
        # a step, not each check's summary.
        "rtts_ms": [round(rtt, 2) for rtt in rtts],
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
