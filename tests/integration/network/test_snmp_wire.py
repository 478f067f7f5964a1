"""The v1/v2c socket against UDP agents on 127.0.0.1 written here: garbage, answers from another
address and late answers are dropped, never taken for the answer; retries resend; one device's
garbage does not disturb another device on the same socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902

from ispmon.network.devices import build_device
from ispmon.network.snmp import SnmpClient, SnmpError

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
UPTIME = "1.3.6.1.2.1.1.3.0"


def answer(request: bytes, uptime: int) -> bytes:
    """pysnmp's encoding of the Response to a GET: sysUpTime = `uptime`."""
    msg, _ = decoder.decode(request, asn1Spec=V2C.Message())
    pdu = V2C.apiPDU.get_response(msg["data"].getComponent())
    V2C.apiPDU.set_varbinds(pdu, [(rfc1902.ObjectName(UPTIME), rfc1902.TimeTicks(uptime))])
    out = V2C.apiMessage.get_response(msg)
    V2C.apiMessage.set_pdu(out, pdu)
    return encoder.encode(out)


class Agent(asyncio.DatagramProtocol):
    """Answers each request with what `behave(request, n, reply, other)` sends; counts requests."""

    def __init__(self, behave: Callable[..., None]) -> None:
        self.behave = behave
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # another source port
        self.other.bind(("127.0.0.1", 0))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests += 1
        assert self.transport is not None
        self.behave(data, self.requests, lambda b: self.transport.sendto(b, addr), lambda b: self.other.sendto(b, addr))


@pytest.fixture
async def agents() -> AsyncIterator[Callable[..., asyncio.Future[tuple[Agent, int]]]]:
    made: list[tuple[asyncio.DatagramTransport, Agent]] = []

    async def start(behave: Callable[..., None]) -> tuple[Agent, int]:
        transport, agent = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: Agent(behave), local_addr=("127.0.0.1", 0))
        made.append((transport, agent))
        return agent, transport.get_extra_info("sockname")[1]

    yield start  # type: ignore[misc]
    for transport, agent in made:
        transport.close()
        agent.other.close()


def device(port: int, **extra: object) -> object:
    return build_device({"id": f"wire-{port}", "name": "w", "address": f"127.0.0.1:{port}", "community": "c",
                         "timeout": 2, "retries": 0, **extra})


async def test_garbage_and_answers_from_elsewhere_are_dropped_and_the_real_answer_taken(agents) -> None:
    def behave(data: bytes, n: int, reply, other) -> None:
        reply(b"\x30\x03garbage")  # not BER
        other(answer(data, 111))  # the right request id from the wrong address (a spoof)
        reply(answer(data, 222))
        reply(answer(data, 333))  # a duplicate after the answer: dropped

    agent, port = await agents(behave)
    client = SnmpClient()
    try:
        assert await client.get(device(port), [UPTIME]) == {UPTIME: 222}
        await asyncio.sleep(0.1)
        transport = next(iter(client._wire.values()))
        assert (transport.stats.answers, transport.stats.dropped) == (1, 3)
        assert transport.pending == {} and agent.requests == 1  # no retry was needed
    finally:
        client.close()


async def test_a_lost_request_is_resent_and_an_agent_of_garbage_is_a_timeout_that_harms_no_one(agents) -> None:
    def lossy(data: bytes, n: int, reply, other) -> None:
        if n > 1:  # the first request is "lost"
            reply(answer(data, 5000))

    def garbage(data: bytes, n: int, reply, other) -> None:
        reply(data[: len(data) // 2])  # its own request cut in half
        reply(b"\xff" * 64)

    lossy_agent, lossy_port = await agents(lossy)
    _, garbage_port = await agents(garbage)
    client = SnmpClient()
    try:
        got, bad = await asyncio.gather(
            client.get(device(lossy_port, retries=2, timeout=0.5), [UPTIME]),
            client.get(device(garbage_port, retries=1, timeout=0.3), [UPTIME]),
            return_exceptions=True,
        )
        assert got == {UPTIME: 5000} and lossy_agent.requests == 2
        assert isinstance(bad, SnmpError) and bad.kind == "timeout"
        assert await client.get(device(lossy_port), [UPTIME]) == {UPTIME: 5000}  # the socket still serves
    finally:
        client.close()


async def test_an_answer_that_is_ours_but_unreadable_is_an_agent_error(agents) -> None:
    def bad_oid(data: bytes, n: int, reply, other) -> None:
        good = answer(data, 1)
        # The varbind's OID ends in a continuation byte: the header and request id still read.
        reply(good.replace(b"\x2b\x06\x01\x02\x01\x01\x03\x00", b"\x2b\x06\x01\x02\x01\x01\x03\x80"))

    _, port = await agents(bad_oid)
    client = SnmpClient()
    try:
        with pytest.raises(SnmpError) as caught:
            await client.get(device(port), [UPTIME])
        assert caught.value.kind == "agent" and "unreadable" in caught.value.message
    finally:
        client.close()
