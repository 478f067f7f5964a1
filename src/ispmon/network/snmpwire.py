"""SNMP v1/v2c on the wire: BER messages (RFC 1157, RFC 3416) and the one UDP socket carrying them.

Why not pysnmp for community messages: pysnmp decodes every response through pyasn1, one Python
object per tag, and the profile of a poll put 70 % of the poller's CPU there (about 230 µs per
varbind; bench/snmp.py had us at 4x snmp_exporter's CPU per interface). The BER here is
asn1crypto's (a well-kept codec whose parser returns plain bytes and ints, about 15 µs per varbind
with the OID heads cached); this module only lays out the SNMP message around it. SNMPv3 (USM
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

from asn1crypto import core, parser

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
_UNSIGNED = frozenset((0x41, 0x42, 0x43, 0x46, 0x47))  # Counter32, Gauge32, TimeTicks, Counter64, UInteger32
_TEXT = frozenset((0x04, 0x44))  # OCTET STRING, Opaque
_EXCEPTIONS = frozenset((0x80, 0x81, 0x82))  # noSuchObject, noSuchInstance, endOfMibView

Varbind = tuple[str, int | str | None, bool]  # (OID, value, end: an exception instead of a value)


class WireError(Exception):
    """A message we cannot read (truncated, wrong tag, lengths that do not add up)."""


# -- encoding ----------------------------------------------------------------------------------------
# BER is asn1crypto's (`parser.emit`, `core`): this module only lays out the SNMP message's
# SEQUENCEs and PDU around it.
_ENCODED: dict[str, bytes] = {}  # dotted OID -> its BER body (a walk sends the same cursors again)


def _integer(value: int) -> bytes:
    return core.Integer(value).dump()


def encode_oid(oid: str) -> bytes:
    """The BER body of a dotted OID (at least two arcs, the first 0-2, none negative)."""
    text = oid.strip(".")
    body = _ENCODED.get(text)
    if body is None:
        parts = text.split(".")
        # asn1crypto takes "1" and "1.3.-1" without complaint: refuse what is not an OID first.
        if len(parts) < 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"not an OID: {oid!r}")
        body = core.ObjectIdentifier(text).contents  # raises ValueError on a bad first/second arc
        if len(_ENCODED) >= 4096:  # bounded: a BRAS's thousands of interfaces cannot grow it
            _ENCODED.clear()
        _ENCODED[text] = body
    return body


def encode_request(
    version: str, community: str, pdu: int, request_id: int, oids: list[str], *,
    non_repeaters: int = 0, max_repetitions: int = 0,
) -> bytes:
    """A GET / GETNEXT / GETBULK message; ``version`` is ``"1"`` or ``"2c"``."""
    binds = b"".join(parser.emit(0, 1, 16, parser.emit(0, 0, 6, encode_oid(o)) + _NULL) for o in oids)
    second, third = (non_repeaters, max_repetitions) if pdu == GETBULK else (0, 0)
    body = _integer(request_id) + _integer(second) + _integer(third) + parser.emit(0, 1, 16, binds)
    message = (
        _integer(0 if version == "1" else 1)
        + core.OctetString(community.encode()).dump()
        + parser.emit(2, 1, pdu & 0x1F, body)
    )
    return parser.emit(0, 1, 16, message)


_NULL = core.Null().dump()


# -- decoding ----------------------------------------------------------------------------------------
def _children(contents: bytes) -> list[tuple[int, bytes, bytes]]:
    """(BER tag byte, header, contents) of each value inside a constructed value's contents."""
    out = []
    rest = contents
    while rest:
        size = parser.peek(rest)
        cls, method, tag, header, body, _ = parser.parse(rest[:size], strict=True)
        if tag > 30:
            raise WireError("long tags have no place in SNMP")
        out.append(((cls << 6) | (method << 5) | tag, header, body))
        rest = rest[size:]
    return out


def _parsed(data: bytes, tags: tuple[int, ...]) -> list[tuple[int, bytes, bytes]]:
    """The children of a message whose outer SEQUENCE starts `data`, checked against `tags`."""
    cls, method, tag, _, contents, _ = parser.parse(data, strict=True)
    if (cls, method, tag) != (0, 1, 16):
        raise WireError("not a SEQUENCE")
    kids = _children(contents)
    if len(kids) < len(tags) or any(kid[0] != want for kid, want in zip(kids, tags, strict=False)):
        raise WireError("unexpected message layout")
    return kids


def _int(contents: bytes) -> int:
    if not contents:
        raise WireError("empty INTEGER")
    return int.from_bytes(contents, "big", signed=True)


_HEADS: dict[bytes, str] = {}  # an OID's BER body but its last arc -> dotted text


def decode_oid(body: bytes) -> str:
    """Dotted text of an OID's BER body. Every varbind of a column walk repeats the column's OID
    and differs in the index: asn1crypto decodes the head once (cached) and the last arc each time."""
    if not body or body[-1] & 0x80:
        raise WireError("bad OID")
    start = len(body) - 1
    while start > 0 and body[start - 1] & 0x80:  # the last arc's first byte: the one after a byte < 0x80
        start -= 1
    try:
        if start == 0:
            return str(core.ObjectIdentifier.load(parser.emit(0, 0, 6, body)).dotted)
        key = body[:start]
        head = _HEADS.get(key)
        if head is None:
            head = str(core.ObjectIdentifier.load(parser.emit(0, 0, 6, key)).dotted)
            if len(_HEADS) >= 4096:  # an agent sending endless distinct OIDs cannot grow it
                _HEADS.clear()
            _HEADS[key] = head
        # The last arc alone, as the tail of "1.3.<arc>" (0x2b is 1.3).
        last = core.ObjectIdentifier.load(parser.emit(0, 0, 6, b"\x2b" + body[start:])).dotted
    except ValueError as exc:
        raise WireError(f"bad OID: {exc}") from None
    return f"{head}.{last[4:]}"


@dataclass(slots=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[Varbind] = field(default_factory=list)


def request_id_of(data: bytes) -> int:
    """The request id of a Response message, read before the rest (to match it to its request)."""
    try:
        kids = _parsed(data, (0x02, 0x04, RESPONSE))
        pdu = _children(kids[2][2])
    except (ValueError, TypeError, IndexError) as exc:
        raise WireError(str(exc)) from None
    if not pdu or pdu[0][0] != 0x02:
        raise WireError("no request id")
    return _int(pdu[0][2])


def decode_response(data: bytes) -> Response:
    try:
        return _decode_response(data)
    except (ValueError, TypeError, IndexError) as exc:  # asn1crypto's complaints about the bytes
        raise WireError(str(exc)) from None


def _decode_response(data: bytes) -> Response:
    kids = _parsed(data, (0x02, 0x04, RESPONSE))
    _int(kids[0][2])
    pdu = _children(kids[2][2])
    if len(pdu) != 4 or [k[0] for k in pdu] != [0x02, 0x02, 0x02, 0x30]:
        raise WireError("unexpected PDU layout")
    out = Response(_int(pdu[0][2]), _int(pdu[1][2]), _int(pdu[2][2]))
    append = out.varbinds.append
    for tag, _, bind in _children(pdu[3][2]):
        if tag != 0x30:
            raise WireError(f"tag 0x{tag:02x} where a varbind was due")
        pair = _children(bind)
        if len(pair) != 2 or pair[0][0] != 0x06:
            raise WireError("a varbind is an OID and a value")
        oid = decode_oid(pair[0][2])
        tag, _, body = pair[1]
        value: int | str | None = None
        if tag in _UNSIGNED or tag == 0x02:
            value = int.from_bytes(body, "big", signed=tag == 0x02) if body else 0
        elif tag in _TEXT:
            value = body.decode("utf-8", "replace").replace("\x00", "")
        elif tag == 0x06:
            value = decode_oid(body)
        elif tag == 0x40 and len(body) == 4:
            value = ".".join(map(str, body))
        append((oid, value, tag in _EXCEPTIONS))
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
