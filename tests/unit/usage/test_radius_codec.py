"""The accounting codec on hostile input: every malformed packet is a MalformedPacket (counted by
the listener), never another exception and never a wrong figure."""

from __future__ import annotations

import contextlib
import hashlib
import struct

import pytest
from pyrad.packet import AccountingRequest, AcctPacket

from ispmon.usage.radius import BadAuthenticator, MalformedPacket, decode_request, dictionary, response

SECRET = b"codec-secret"


def sign(body: bytes, ident: int = 7, code: int = AccountingRequest, length: int | None = None) -> bytes:
    """A request with the attributes `body`, its Length field and authenticator as RFC 2866 says."""
    size = 20 + len(body) if length is None else length
    header = struct.pack("!BBH", code, ident, size)
    auth = hashlib.md5(header + bytes(16) + body + SECRET, usedforsecurity=False).digest()
    return header + auth + body


def attr(code: int, value: bytes) -> bytes:
    return bytes([code, len(value) + 2]) + value


def integer(code: int, value: int) -> bytes:
    return attr(code, value.to_bytes(4, "big"))


INTERIM = integer(40, 3) + attr(44, b"sess-1") + attr(1, b"alice")


def test_a_well_formed_interim_decodes() -> None:
    body = INTERIM + integer(42, 10) + integer(52, 3) + integer(43, 4294967295) + integer(53, 4294967295)
    _, record = decode_request(sign(body), SECRET)
    assert record.in_octets == 3 * 2**32 + 10
    assert record.out_octets == 2**64 - 1  # the largest a counter can say, exactly
    assert (record.session_id, record.username, record.status) == ("sess-1", "alice", 3)


def test_a_pyrad_built_packet_round_trips_and_its_response_is_signed() -> None:
    packet = AcctPacket(code=AccountingRequest, id=42, secret=SECRET, dict=dictionary())
    packet["Acct-Status-Type"] = "Stop"
    packet["Acct-Session-Id"] = "x"
    packet["Acct-Terminate-Cause"] = "Lost-Carrier"
    packet["Framed-IP-Address"] = "100.64.0.1"
    raw = packet.RequestPacket()
    parsed, record = decode_request(raw, SECRET)
    assert (record.terminate_cause, record.framed_ip) == ("Lost-Carrier", "100.64.0.1")
    reply = response(parsed)
    expected = hashlib.md5(reply[:4] + raw[4:20] + reply[20:] + SECRET, usedforsecurity=False).digest()
    assert reply[0] == 5 and reply[1] == 42 and reply[4:20] == expected


def test_unknown_and_vendor_specific_attributes_are_carried_not_fatal() -> None:
    vsa = attr(26, (9).to_bytes(4, "big") + attr(1, b"cisco-avpair=x"))
    body = INTERIM + attr(222, b"\x01\x02") + vsa + integer(42, 5)
    _, record = decode_request(sign(body), SECRET)
    assert record.in_octets == 5


def test_octets_beyond_the_length_field_are_padding() -> None:
    raw = sign(INTERIM) + b"\xff" * 10
    assert decode_request(raw, SECRET)[1].session_id == "sess-1"


def test_a_wrong_secret_is_a_bad_authenticator() -> None:
    with pytest.raises(BadAuthenticator):
        decode_request(sign(INTERIM), b"other-secret")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x04\x01\x00", "shorter than"),
        (sign(INTERIM)[:30], "exceeds"),  # truncated: the Length field says more than arrived
        (sign(INTERIM, length=19), "outside"),
        (sign(INTERIM, length=5000), "outside"),
        (sign(INTERIM, code=1), "not Accounting-Request"),
        (sign(INTERIM + bytes([42, 40, 0, 0])), "overrunning"),  # an attribute longer than the packet
        (sign(INTERIM + bytes([42, 1])), "overrunning"),  # an attribute length below 2
        (sign(INTERIM + b"\x2a"), "truncated attribute"),
        (sign(INTERIM + attr(42, b"\x00\x00\x01")), "integer of 3 octets"),
        (
            sign(INTERIM + attr(42, b"\x00" * 8)),
            "integer of 8 octets",
        ),  # a "huge" counter: refused, not misread
        (sign(INTERIM + attr(8, b"\x01\x02")), "IPv4 address of 2"),
        (sign(attr(44, b"s") + attr(1, b"a")), "no Acct-Status-Type"),
        (sign(integer(40, 3)), "no Acct-Session-Id"),
    ],
)
def test_malformed_packets_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=reason):
        decode_request(raw, SECRET)


def test_random_garbage_never_raises_anything_else() -> None:
    import random

    rng = random.Random(12)
    for _ in range(3000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60)))
        for raw in (sign(INTERIM + body), sign(body), body):
            with contextlib.suppress(MalformedPacket, BadAuthenticator):
                decode_request(raw, SECRET)


def test_the_shipped_dictionaries_define_no_tlv_so_decoding_without_them_is_the_same() -> None:
    # decode_request hands pyrad no dictionary (a third of the decoding time): pyrad only asks
    # one whether an attribute is a TLV. A TLV added to the dictionaries must bring it back.
    assert [a.name for a in dictionary().attributes.values() if a.type == "tlv"] == []


def test_the_response_carries_the_requests_proxy_state_in_order() -> None:
    # RFC 2865 5.33: a proxy matches our answer by the Proxy-State it put in the request.
    body = INTERIM + attr(33, b"proxy-one") + attr(33, b"proxy-two")
    raw = sign(body, ident=9)
    reply = response(decode_request(raw, SECRET)[0])
    assert reply[20:] == attr(33, b"proxy-one") + attr(33, b"proxy-two")
    expected = hashlib.md5(reply[:4] + raw[4:20] + reply[20:] + SECRET, usedforsecurity=False).digest()
    assert reply[4:20] == expected
