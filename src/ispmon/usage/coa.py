"""RFC 5176 client: a CoA-Request or Disconnect-Request to a NAS, over our own asyncio UDP socket.

pyrad builds the packet and its Request Authenticator (section 2.3: MD5 over the packet with a
zero authenticator, then the secret) and checks the reply's Response Authenticator; a reply that
does not verify is ignored, as if lost. Retried on timeout with the same Identifier and the same
packet (a NAS treats it as a retransmission, RFC 5080). The outcome is `acked`, `nak` (with the
Error-Cause) or `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from pyrad.packet import (
    CoAACK,
    CoANAK,
    CoAPacket,
    CoARequest,
    DisconnectACK,
    DisconnectNAK,
    DisconnectRequest,
)

from ispmon.usage.radius import dictionary

ACKS = (CoAACK, DisconnectACK)
NAKS = (CoANAK, DisconnectNAK)


@dataclass(frozen=True)
class CoaResult:
    state: str  # acked, nak, timeout
    error_cause: int | None = None
    attempts: int = 0


class _Reply(asyncio.DatagramProtocol):
    def __init__(self, request: CoAPacket, raw: bytes) -> None:
        self.request, self.raw = request, raw
        self.reply: asyncio.Future[CoAPacket] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.reply.done():
            return
        try:
            reply = self.request.CreateReply(packet=data)
        except Exception:  # whatever a peer sends: not a reply, keep waiting
            return
        if reply.code in ACKS + NAKS and self.request.VerifyReply(reply, data):
            self.reply.set_result(reply)


def build_request(
    disconnect: bool, secret: str, identifier: int, attributes: dict[str, str | int]
) -> tuple[CoAPacket, bytes]:
    code = DisconnectRequest if disconnect else CoARequest
    packet = CoAPacket(code=code, id=identifier, secret=secret.encode(), dict=dictionary())
    for name, value in attributes.items():
        packet[name] = value
    return packet, packet.RequestPacket()


async def send_request(
    host: str,
    port: int,
    secret: str,
    attributes: dict[str, str | int],
    *,
    disconnect: bool,
    identifier: int,
    timeout: float = 2.0,
    tries: int = 3,
) -> CoaResult:
    packet, raw = build_request(disconnect, secret, identifier, attributes)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Reply(packet, raw), remote_addr=(host, port)
    )
    try:
        for attempt in range(1, tries + 1):
            transport.sendto(raw)
            with contextlib.suppress(asyncio.TimeoutError):
                reply = await asyncio.wait_for(asyncio.shield(protocol.reply), timeout)
                if reply.code in ACKS:
                    return CoaResult("acked", attempts=attempt)
                # By code pyrad gives the raw octets: Error-Cause is a 4-octet integer (RFC 5176 3.6).
                raw_causes = reply.get(101) or []
                cause = (
                    int.from_bytes(raw_causes[0], "big") if raw_causes and len(raw_causes[0]) == 4 else None
                )
                return CoaResult("nak", error_cause=cause, attempts=attempt)
        return CoaResult("timeout", attempts=tries)
    finally:
        transport.close()
