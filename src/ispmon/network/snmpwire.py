"""SNMP v1/v2c on the wire: BER messages (RFC 1157, RFC 3416) and the one UDP socket carrying them.

Why not pysnmp for community messages: pysnmp decodes every response through pyasn1, one Python
object per tag, and the profile of a poll put 70 % of the poller's CPU there (about 230 µs per
varbind; bench/snmp.py had us at 4x snmp_exporter's CPU per interface). A community message is a
handful of TLVs: encoding and decoding them here costs a few µs per varbind. SNMPv3 (USM
authentication, privacy, engine discovery) stays with pysnmp, in `ispmon.network.snmp`.

Values come back as plain Python, as `snmp.value_of` gives them: int, str (OCTET STRING decoded as
UTF-8, IpAddress dotted, OID dotted), None for NULL, unknown types and the exceptions
(noSuchObject, noSuchInstance, endOfMibView), which also set the varbind's ``end`` flag. Anything
malformed raises `WireError`; a datagram that is not an answer to a request of ours (garbage, a
late answer, another source) is dropped and counted.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass, field
from typing import Any

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
_UNSIGNED = frozenset((0x41, 0x42, 0x43, 0x46, 0x47))  # Counter32, Gauge32, TimeTicks, Counter64, UInteger32
_TEXT = frozenset((0x04, 0x44))  # OCTET STRING, Opaque
_EXCEPTIONS = frozenset((0x80, 0x81, 0x82))  # noSuchObject, noSuchInstance, endOfMibView

Varbind = tuple[str, int | str | None, bool]  # (OID, value, end: an exception instead of a value)


class WireError(Exception):
    """A message we cannot read (truncated, wrong tag, lengths that do not add up)."""


# -- encoding ----------------------------------------------------------------------------------------
def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _arc(arc: int) -> bytes:
    chunk = [arc & 0x7F]
    arc >>= 7
    while arc:
        chunk.append(0x80 | (arc & 0x7F))
        arc >>= 7
    return bytes(reversed(chunk))


def _encode_arcs(oid: str) -> bytes:
    parts = [int(p) for p in oid.split(".")]
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] >= 40) or min(parts) < 0:
        raise ValueError(f"not an OID: {oid!r}")
    return b"".join(_arc(a) for a in (parts[0] * 40 + parts[1], *parts[2:]))


_ENCODED_HEADS: dict[str, bytes] = {}  # an OID but its last arc -> its BER body


def encode_oid(oid: str) -> bytes:
    """The BER body of a dotted OID (at least two arcs, the first 0-2). A walk's cursors share
    their column's OID and differ in the index: the head is encoded once and cached."""
    head, _, last = oid.strip(".").rpartition(".")
    if head.count(".") < 1 or not last.isdigit():
        return _encode_arcs(oid.strip("."))
    body = _ENCODED_HEADS.get(head)
    if body is None:
        body = _encode_arcs(head)
        if len(_ENCODED_HEADS) >= 4096:
            _ENCODED_HEADS.clear()
        _ENCODED_HEADS[head] = body
    return body + _arc(int(last))


def encode_request(
    version: str, community: str, pdu: int, request_id: int, oids: list[str], *,
    non_repeaters: int = 0, max_repetitions: int = 0,
) -> bytes:
    """A GET / GETNEXT / GETBULK message; ``version`` is ``"1"`` or ``"2c"``."""
    binds = b"".join(_tlv(0x30, _tlv(0x06, encode_oid(o)) + b"\x05\x00") for o in oids)
    second, third = (non_repeaters, max_repetitions) if pdu == GETBULK else (0, 0)
    body = _integer(request_id) + _integer(second) + _integer(third) + _tlv(0x30, binds)
    return _tlv(0x30, _integer(0 if version == "1" else 1) + _tlv(0x04, community.encode()) + _tlv(pdu, body))


# -- decoding ----------------------------------------------------------------------------------------
def _header(data: bytes, i: int, limit: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the TLV at ``i``; never past ``limit``."""
    if i + 2 > limit:
        raise WireError("truncated")
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        size = n & 0x7F
        if size == 0 or size > 4 or i + size > limit:
            raise WireError("bad length")
        n = int.from_bytes(data[i : i + size], "big")
        i += size
    end = i + n
    if end > limit:
        raise WireError("truncated")
    return tag, i, end


def _expect(data: bytes, i: int, limit: int, tag: int) -> tuple[int, int]:
    got, start, end = _header(data, i, limit)
    if got != tag:
        raise WireError(f"tag 0x{got:02x} where 0x{tag:02x} was due")
    return start, end


def _int_at(data: bytes, i: int, limit: int) -> tuple[int, int]:
    start, end = _expect(data, i, limit, 0x02)
    if start == end:
        raise WireError("empty INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True), end


def _decode_arcs(body: bytes) -> str:
    parts: list[int] = []
    arc = 0
    for byte in body:
        arc = (arc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(arc)
            arc = 0
    if not parts or body[-1] & 0x80:
        raise WireError("bad OID")
    first = parts[0]
    head = 2 if first >= 80 else first // 40
    return ".".join(map(str, (head, first - 40 * head, *parts[1:])))


_HEADS: dict[bytes, str] = {}  # an OID's bytes but its last arc -> dotted text


def decode_oid(body: bytes) -> str:
    """Dotted text of an OID's BER body. Every varbind of a column walk repeats the column's OID
    and differs in the index: the head is decoded once and cached, only the last arc each time."""
    if not body or body[-1] & 0x80:
        raise WireError("bad OID")
    start = len(body) - 1
    while start > 0 and body[start - 1] & 0x80:
        start -= 1
    if start == 0:
        return _decode_arcs(body)
    key = body[:start]
    head = _HEADS.get(key)
    if head is None:
        head = _decode_arcs(key)
        if len(_HEADS) >= 4096:  # an agent sending endless distinct OIDs cannot grow it
            _HEADS.clear()
        _HEADS[key] = head
    arc = 0
    for byte in body[start:]:
        arc = (arc << 7) | (byte & 0x7F)
    return f"{head}.{arc}"


@dataclass(slots=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[Varbind] = field(default_factory=list)


def request_id_of(data: bytes) -> int:
    """The request id of a Response message, read before the rest (to match it to its request)."""
    start, end = _expect(data, 0, len(data), 0x30)
    _, i = _int_at(data, start, end)  # version
    _, i = _expect(data, i, end, 0x04)  # community
    start, end = _expect(data, i, end, RESPONSE)
    return _int_at(data, start, end)[0]


def decode_response(data: bytes) -> Response:
    start, limit = _expect(data, 0, len(data), 0x30)
    _, i = _int_at(data, start, limit)
    _, i = _expect(data, i, limit, 0x04)
    i, limit = _expect(data, i, limit, RESPONSE)
    request_id, i = _int_at(data, i, limit)
    status, i = _int_at(data, i, limit)
    index, i = _int_at(data, i, limit)
    i, limit = _expect(data, i, limit, 0x30)
    out = Response(request_id, status, index)
    append = out.varbinds.append
    while i < limit:
        i, bind_end = _expect(data, i, limit, 0x30)
        start, end = _expect(data, i, bind_end, 0x06)
        oid = decode_oid(data[start:end])
        tag, start, end = _header(data, end, bind_end)
        value: int | str | None = None
        if tag in _UNSIGNED or tag == 0x02:
            value = int.from_bytes(data[start:end], "big", signed=tag == 0x02) if end > start else 0
        elif tag in _TEXT:
            value = data[start:end].decode("utf-8", "replace").replace("\x00", "")
        elif tag == 0x06:
            value = decode_oid(data[start:end])
        elif tag == 0x40 and end - start == 4:
            value = ".".join(map(str, data[start:end]))
        append((oid, value, tag in _EXCEPTIONS))
        i = bind_end
    return out


# -- transport ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class WireStats:
    sent: int = 0
    answers: int = 0
    dropped: int = 0  # garbage, late answers, answers from another address


class WireTransport(asyncio.DatagramProtocol):
    """One unconnected UDP socket per address family, requests matched to answers by request id
    and source address. Retries resend the same message (the same request id, as agents expect)."""

    def __init__(self, family: int) -> None:
        self.family = family
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.pending: dict[int, tuple[tuple[str, int], asyncio.Future[bytes]]] = {}
        self.stats = WireStats()
        self._next_id = random.randrange(1, 1 << 30)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            request_id = request_id_of(data)
        except WireError:
            self.stats.dropped += 1
            return
        waiting = self.pending.get(request_id)
        if waiting is None or waiting[0] != (addr[0], addr[1]) or waiting[1].done():
            self.stats.dropped += 1
            return
        self.stats.answers += 1
        waiting[1].set_result(data)

    def next_id(self) -> int:
        while True:
            self._next_id = self._next_id % 0x7FFFFFFF + 1
            if self._next_id not in self.pending:
                return self._next_id

    async def request(
        self, address: tuple[str, int], build: Any, timeout: float, retries: int
    ) -> bytes:
        """Send ``build(request_id)`` to ``address`` up to ``1 + retries`` times; the answer's bytes,
        or TimeoutError."""
        assert self.transport is not None
        request_id = self.next_id()
        message = build(request_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = (address, future)
        try:
            for _ in range(1 + max(0, retries)):
                self.transport.sendto(message, address)
                self.stats.sent += 1
                try:
                    return await asyncio.wait_for(asyncio.shield(future), timeout)
                except TimeoutError:
                    continue
            raise TimeoutError
        finally:
            del self.pending[request_id]
            if not future.done():
                future.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if self.sock is not None:
            # The transport closes its socket from a callback; a loop that stops first (a test's,
            # a CLI's) would leave it open. close() has already unregistered it from the loop.
            self.sock.close()
        for _, future in self.pending.values():
            if not future.done():
                future.cancel()


async def open_transport(family: int) -> WireTransport:
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
        sock.setblocking(False)
        _, protocol = await loop.create_datagram_endpoint(lambda: WireTransport(family), sock=sock)
    except BaseException:
        sock.close()
        raise
    protocol.sock = sock
    return protocol
