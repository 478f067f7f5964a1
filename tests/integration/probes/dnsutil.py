"""A scripted DNS resolver on loopback for the DNS tests: real UDP, answers when and if told to.

`Responder` answers every A query with one record (192.0.2.77, TTL 300) after `delay` seconds, or
not at all while `silent` is set; both can be changed between checks, which is how the tests make a
resolver that is fast for a while and then once slow, or that stops answering.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

ANSWER_ADDRESS = "192.0.2.77"


class Responder(asyncio.DatagramProtocol):
    """Answers each query after `delay` seconds (0: at once), or never while `silent` is True."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.delay = 0.0
        self.silent = False
        self.queries = 0
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (3.11's selector transport does not subclass asyncio.DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queries += 1
        if self.silent or len(data) < 12:
            return
        end = 12
        while end < len(data) and data[end]:
            end += data[end] + 1
        question = data[12 : end + 5]
        answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([192, 0, 2, 77])
        reply = data[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0) + question + answer
        assert self.transport is not None
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.transport.sendto, reply, addr)
        else:
            self.transport.sendto(reply, addr)


@asynccontextmanager
async def responder() -> AsyncIterator[Responder]:
    """A `Responder` listening on 127.0.0.1 (its `port` is set), closed on exit."""
    server = Responder()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    server.port = transport.get_extra_info("sockname")[1]
    try:
        yield server
    finally:
        transport.close()
