"""The RADIUS accounting codec: pyrad parses and signs, with the FreeRADIUS dictionaries shipped here.

`decode_request` checks what pyrad does not (the packet code, attribute lengths that overrun the
packet, integer attributes of the wrong size) and verifies the request authenticator (RFC 2866
3) before anything is read; `AcctRecord` holds just the attributes ispmon uses. `response` builds
the Accounting-Response (RFC 2866 4.2) that pyrad signs with the secret.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pyrad.dictionary import Dictionary
from pyrad.packet import AccountingRequest, AcctPacket, PacketError

DICTIONARY_FILES = ("rfc2865", "rfc2866", "rfc2869", "rfc3162", "rfc3576", "rfc5176", "rfc4372", "rfc6911")
HEADER = 20
MAX_PACKET = 4096  # RFC 2865 3: the maximum length

# Acct-Status-Type values (RFC 2866 5.1)
START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8
STATUS_NAMES = {START: "start", STOP: "stop", INTERIM: "interim", ACCOUNTING_ON: "on", ACCOUNTING_OFF: "off"}

# Attribute codes (RFC 2865, 2866, 2869)
USER_NAME, NAS_IP, FRAMED_IP, CALLING_STATION, NAS_IDENTIFIER = 1, 4, 8, 31, 32
STATUS_TYPE, DELAY_TIME, IN_OCTETS, OUT_OCTETS, SESSION_ID = 40, 41, 42, 43, 44
SESSION_TIME, TERMINATE_CAUSE, IN_GIGAWORDS, OUT_GIGAWORDS, EVENT_TIMESTAMP = 46, 49, 52, 53, 55
INTERIM_INTERVAL = 85
_INTEGER_CODES = (
    STATUS_TYPE,
    DELAY_TIME,
    IN_OCTETS,
    OUT_OCTETS,
    SESSION_TIME,
    TERMINATE_CAUSE,
    IN_GIGAWORDS,
    OUT_GIGAWORDS,
    EVENT_TIMESTAMP,
    INTERIM_INTERVAL,
)


class MalformedPacket(ValueError):
    """The datagram is not a well-formed Accounting-Request (the reason is the message)."""


class BadAuthenticator(ValueError):
    """The request authenticator does not match the NAS's secret."""


@cache
def dictionary() -> Dictionary:
    """The shipped dictionaries, loaded once (pyrad cannot load FreeRADIUS's master file)."""
    folder = resources.files("ispmon.usage").joinpath("dictionary")
    # pyrad reports each attribute type it skips (vsa, ipv4prefix) on its logger: not our news.
    logging.getLogger("pyrad").setLevel(logging.ERROR)
    paths = [str(folder.joinpath(f"dictionary.{name}")) for name in DICTIONARY_FILES]
    return Dictionary(*paths)


@cache
def _terminate_causes() -> dict[int, str]:
    """Acct-Terminate-Cause values by number (RFC 2866 5.10), from the shipped dictionary."""
    names = dictionary().attributes["Acct-Terminate-Cause"].values.backward
    return {int.from_bytes(raw, "big"): name for raw, name in names.items()}


@dataclass(frozen=True, slots=True)
class AcctRecord:
    """The attributes of one Accounting-Request that sessions and usage are made of."""

    status: int
    session_id: str
    unique_id: str | None
    username: str | None
    framed_ip: str | None
    nas_ip: str | None
    nas_identifier: str | None
    calling_station: str | None
    terminate_cause: str | None
    interim_interval: int | None
    session_time: int | None
    # Octets = Gigawords * 2^32 + Octets (RFC 2869 5.1, 5.2): up to 2^64 - 1, exact.
    in_octets: int
    out_octets: int
    delay_time: int

    @property
    def session_key(self) -> str:
        """Identifies the session on its NAS: the unique id when the NAS (or a proxy) sends one."""
        return self.unique_id or self.session_id


def _check_structure(data: bytes) -> bytes:
    """The packet cut to its Length field, with every attribute inside it; else MalformedPacket."""
    if len(data) < HEADER:
        raise MalformedPacket("shorter than the 20-octet header")
    if data[0] != AccountingRequest:
        raise MalformedPacket(f"code {data[0]} is not Accounting-Request (4)")
    length = int.from_bytes(data[2:4], "big")
    if length < HEADER or length > MAX_PACKET:
        raise MalformedPacket(f"length field {length} is outside 20..4096")
    if length > len(data):
        # RFC 2865 3: a packet shorter than its Length field is silently discarded.
        raise MalformedPacket(f"length field {length} exceeds the {len(data)} octets received")
    data = data[:length]  # octets beyond Length are padding (RFC 2865 3)
    offset = HEADER
    while offset < length:
        if offset + 2 > length:
            raise MalformedPacket("truncated attribute header")
        size = data[offset + 1]
        if size < 2 or offset + size > length:
            raise MalformedPacket(f"attribute {data[offset]} has length {size}, overrunning the packet")
        offset += size
    return data


def verify_authenticator(data: bytes, secret: bytes) -> bool:
    """RFC 2866 3: MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret)."""
    digest = hashlib.md5(data[:4] + bytes(16) + data[HEADER:] + secret, usedforsecurity=False).digest()
    return digest == data[4:HEADER]


def _integer(values: dict[int, list[bytes]], code: int) -> int | None:
    raw = values.get(code)
    if not raw:
        return None
    if len(raw[0]) != 4:
        raise MalformedPacket(f"attribute {code} is an integer of {len(raw[0])} octets, not 4")
    return int.from_bytes(raw[0], "big")


def _text(values: dict[int, list[bytes]], code: int, limit: int = 253) -> str | None:
    raw = values.get(code)
    if not raw:
        return None
    # Text attributes are UTF-8 (RFC 2865 5); a NAS that sends other bytes still gets its record,
    # with the undecodable octets replaced. NUL cannot be stored in PostgreSQL text.
    return raw[0][:limit].decode("utf-8", "replace").replace("\x00", "\ufffd")


def _address(values: dict[int, list[bytes]], code: int) -> str | None:
    raw = values.get(code)
    if not raw:
        return None
    if len(raw[0]) != 4:
        raise MalformedPacket(f"attribute {code} is an IPv4 address of {len(raw[0])} octets, not 4")
    return str(ipaddress.IPv4Address(raw[0]))


def decode_request(data: bytes, secret: bytes) -> tuple[AcctPacket, AcctRecord]:
    """Parse and verify one Accounting-Request. Raises MalformedPacket or BadAuthenticator."""
    data = _check_structure(data)
    if not verify_authenticator(data, secret):
        raise BadAuthenticator("request authenticator does not match the secret")
    try:
        # No dictionary: pyrad then keys attributes by code (its dictionary would only be asked,
        # per attribute, whether it is a TLV, and the shipped dictionaries define none), which
        # is a third of the decoding time. Names are looked up once, for what is used.
        packet = AcctPacket(packet=data, secret=secret)
    except PacketError as exc:
        raise MalformedPacket(str(exc)) from None
    # By code, pyrad keeps the raw octets: the few attributes used are interpreted here, with
    # their sizes checked, so a malformed value is a counted drop and never a wrong figure.
    # Vendor-specific attributes are keyed (vendor, type): kept by pyrad, unused here.
    values: dict[int, list[bytes]] = {k: v for k, v in packet.items() if isinstance(k, int)}
    ints = {code: _integer(values, code) for code in _INTEGER_CODES if code in values}
    status = ints.get(STATUS_TYPE)
    if status is None:
        raise MalformedPacket("no Acct-Status-Type")
    session_id = _text(values, SESSION_ID)
    if session_id is None and status in (START, STOP, INTERIM):
        raise MalformedPacket("no Acct-Session-Id")
    in_octets = (ints.get(IN_GIGAWORDS) or 0) * 2**32 + (ints.get(IN_OCTETS) or 0)
    out_octets = (ints.get(OUT_GIGAWORDS) or 0) * 2**32 + (ints.get(OUT_OCTETS) or 0)
    cause = ints.get(TERMINATE_CAUSE)
    cause_name = None
    if cause is not None:
        cause_name = _terminate_causes().get(cause, str(cause))
    record = AcctRecord(
        status=status,
        session_id=session_id or "",
        # Acct-Unique-Session-Id is FreeRADIUS's own (no IANA code): a NAS never sends it, so the
        # session is keyed by Acct-Session-Id, unique per NAS (RFC 2866 5.5).
        unique_id=None,
        username=_text(values, USER_NAME),
        framed_ip=_address(values, FRAMED_IP),
        nas_ip=_address(values, NAS_IP),
        nas_identifier=_text(values, NAS_IDENTIFIER),
        calling_station=_text(values, CALLING_STATION),
        terminate_cause=cause_name,
        interim_interval=ints.get(INTERIM_INTERVAL),
        session_time=ints.get(SESSION_TIME),
        in_octets=in_octets,
        out_octets=out_octets,
        delay_time=ints.get(DELAY_TIME) or 0,
    )
    return packet, record


def response(packet: AcctPacket) -> bytes:
    """The Accounting-Response to `packet`: same Identifier, authenticator per RFC 2866 3."""
    reply = packet.CreateReply()
    raw: bytes = reply.ReplyPacket()
    return raw
