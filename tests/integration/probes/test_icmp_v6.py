"""ICMPv6 echo through the shared ICMP socket (ispmon.probes.icmpmux), with real packets: ::1 and
a host inside a network namespace made here (its kernel answers), and an address on the same link
that nobody holds (no reply: DOWN/timeout). Raw sockets, the case on hosts whose
ping_group_range excludes us. Needs root: without it these tests fail with a message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.models import ErrorKind, Status
from ispmon.probes.base import ProbeContext
from ispmon.probes.icmp import probe
from tests.integration.probes.icmp_support import free_prefix6, namespace, require_root
from tests.integration.probes.netutil import ipv6_available


@pytest.fixture(scope="module")
def hosts6() -> Iterator[dict[str, str]]:
    require_root()
    if not ipv6_available():
        pytest.fail("no IPv6 on this machine (::1 cannot be bound): the ICMPv6 path cannot be tested")
    prefix = free_prefix6()
    with namespace("v6", f"{prefix}1", [f"{prefix}2"], ipv6=True):  # its kernel answers
        yield {"answers": f"{prefix}2", "nobody": f"{prefix}99"}


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    context = ProbeContext(icmp_privileged=True)
    yield context
    await context.close()


def _endpoint(host: str, **extra: Any) -> EndpointSpec:
    data = {
        "name": f"ping {host}",
        "url": host,
        "protocol": "icmp",
        "check_interval": 60,
        "timeout": 1.0,
        "retries": 0,
        "packet_count": 3,
        "packet_interval": 0.01,
    }
    return build_endpoint(data | extra)


async def _check(ctx: ProbeContext, host: str, **extra: Any) -> Any:
    endpoint = _endpoint(host, **extra)
    return await probe(endpoint, endpoint.timeout, ctx)


async def test_ipv6_loopback_is_up_through_the_shared_socket(ctx: ProbeContext) -> None:
    result = await _check(ctx, "::1")
    assert result.status is Status.UP, result
    assert result.details["packets_received"] == 3
    sock = ctx._icmp[6]
    assert sock.version == 6 and sock.privileged
    assert sock.delivered == 3


async def test_a_host_in_a_namespace_is_up_and_an_unheld_address_is_down(
    hosts6: dict[str, str], ctx: ProbeContext
) -> None:
    up, down = await asyncio.gather(
        _check(ctx, hosts6["answers"]), _check(ctx, hosts6["nobody"], timeout=0.5)
    )
    assert up.status is Status.UP, up
    assert up.details["packets_received"] == 3
    assert (down.status, down.error_kind) == (Status.DOWN, ErrorKind.TIMEOUT), down
    # Both ran over the one IPv6 socket, and nothing waits on it any more.
    assert list(ctx._icmp) == [6]
    assert ctx._icmp[6].in_flight == 0


async def test_many_ipv6_probes_in_flight_get_their_own_replies(
    hosts6: dict[str, str], ctx: ProbeContext
) -> None:
    targets = [hosts6["answers"], "::1"] * 50
    results = await asyncio.gather(*(_check(ctx, host) for host in targets))
    for host, result in zip(targets, results, strict=True):
        assert result.status is Status.UP, (host, result)
        assert result.details["packets_received"] == 3
    assert ctx._icmp[6].delivered == 300
