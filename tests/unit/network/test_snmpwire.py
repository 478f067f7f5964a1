"""The v1/v2c codec against pysnmp's own BER encoder and decoder (an independent implementation):
what pysnmp encodes we read, what we encode pysnmp reads; malformed messages raise WireError."""

from __future__ import annotations

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905

from ispmon.network import snmpwire as wire

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


def pysnmp_response(request_id: int, binds: list[tuple[str, object]], status: int = 0, index: int = 0) -> bytes:
    pdu = V2C.ResponsePDU()
    V2C.apiPDU.set_defaults(pdu)
    V2C.apiPDU.set_request_id(pdu, request_id)
    V2C.apiPDU.set_error_status(pdu, status)
    V2C.apiPDU.set_error_index(pdu, index)
    V2C.apiPDU.set_varbinds(pdu, [(rfc1902.ObjectName(o), v) for o, v in binds])
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, "public")
    V2C.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def test_every_value_type_pysnmp_encodes_is_read_back() -> None:
    binds = [
        ("1.3.6.1.2.1.31.1.1.1.6.1", rfc1902.Counter64(2**64 - 1)),
        ("1.3.6.1.2.1.2.2.1.10.2", rfc1902.Counter32(2**32 - 1)),
        ("1.3.6.1.2.1.2.2.1.5.3", rfc1902.Gauge32(0)),
        ("1.3.6.1.2.1.1.3.0", rfc1902.TimeTicks(123456)),
        ("1.3.6.1.2.1.2.2.1.8.4", rfc1902.Integer32(-5)),
        ("1.3.6.1.2.1.2.2.1.2.5", rfc1902.OctetString(b"ge-0/0/0.1001\x00")),
        ("1.3.6.1.2.1.1.2.0", rfc1902.ObjectIdentifier("1.3.6.1.4.1.2636.1.1.1.2.25")),
        ("1.3.6.1.2.1.4.20.1.1.9", rfc1902.IpAddress("192.0.2.7")),
        ("1.3.6.1.2.1.2.2.1.2.4294967295", rfc1905.NoSuchInstance()),
        ("1.3.6.1.2.1.99.0", rfc1905.NoSuchObject()),
        ("1.3.6.1.2.1.31.1.1.1.18.6", rfc1902.OctetString(b"x" * 300)),  # a long-form length
        ("2.999.1", rfc1905.EndOfMibView()),
    ]
    got = wire.decode_response(pysnmp_response(0x7FFFFFFF, binds, status=0))
    assert got.request_id == 0x7FFFFFFF and got.error_status == 0
    assert got.varbinds == [
        ("1.3.6.1.2.1.31.1.1.1.6.1", 2**64 - 1, False),
        ("1.3.6.1.2.1.2.2.1.10.2", 2**32 - 1, False),
        ("1.3.6.1.2.1.2.2.1.5.3", 0, False),
        ("1.3.6.1.2.1.1.3.0", 123456, False),
        ("1.3.6.1.2.1.2.2.1.8.4", -5, False),
        ("1.3.6.1.2.1.2.2.1.2.5", "ge-0/0/0.1001", False),
        ("1.3.6.1.2.1.1.2.0", "1.3.6.1.4.1.2636.1.1.1.2.25", False),
        ("1.3.6.1.2.1.4.20.1.1.9", "192.0.2.7", False),
        ("1.3.6.1.2.1.2.2.1.2.4294967295", None, True),
        ("1.3.6.1.2.1.99.0", None, True),
        ("1.3.6.1.2.1.31.1.1.1.18.6", "x" * 300, False),
        ("2.999.1", None, True),
    ]
    assert wire.request_id_of(pysnmp_response(42, binds[:1])) == 42


def test_an_error_status_is_read() -> None:
    got = wire.decode_response(pysnmp_response(7, [("1.3.6.1.2.1.1.3.0", rfc1902.Null(""))], status=5, index=1))
    assert (got.error_status, got.error_index, got.varbinds) == (5, 1, [("1.3.6.1.2.1.1.3.0", None, False)])


@pytest.mark.parametrize("version, pdu", [("2c", wire.GETBULK), ("2c", wire.GET), ("1", wire.GETNEXT)])
def test_what_we_encode_pysnmp_decodes(version: str, pdu: int) -> None:
    module = api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if version == "1" else api.SNMP_VERSION_2C]
    oids = ["1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.2.2.1.8.4294967295", "2.999.16384"]
    data = wire.encode_request(version, "s3cr\u00e9t", pdu, 123_456_789, oids, max_repetitions=40)
    msg, rest = decoder.decode(data, asn1Spec=module.Message())
    assert rest == b""
    assert int(msg["version"]) == (0 if version == "1" else 1)
    assert bytes(msg["community"]).decode() == "s3cr\u00e9t"
    body = msg["data"].getComponent()
    assert int(module.apiPDU.get_request_id(body)) == 123_456_789
    assert [str(o) for o, _ in module.apiPDU.get_varbinds(body)] == oids
    if pdu == wire.GETBULK:
        assert int(V2C.apiBulkPDU.get_max_repetitions(body)) == 40


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"\x30\x05\x02\x01\x01\x04",  # truncated
        b"\x30\x84\xff\xff\xff\xff",  # a length far past the datagram
        b"\x31\x03\x02\x01\x01",  # not a SEQUENCE
        b"garbage that is not BER at all",
    ],
)
def test_malformed_messages_raise_wire_error(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_response(data)
    with pytest.raises(wire.WireError):
        wire.request_id_of(data)


def test_every_truncation_of_a_real_response_is_a_wire_error_not_another_exception() -> None:
    data = pysnmp_response(9, [("1.3.6.1.2.1.31.1.1.1.6.1", rfc1902.Counter64(5)),
                               ("1.3.6.1.2.1.2.2.1.2.5", rfc1902.OctetString(b"eth0"))])
    for cut in range(len(data)):
        with pytest.raises(wire.WireError):
            wire.decode_response(data[:cut])


def test_bad_oids_are_refused_when_encoding() -> None:
    for oid in ("1", "3.1.2", "1.40.1", "1.3.-6", "1.40", "1.3.6.x"):
        with pytest.raises(ValueError):
            wire.encode_oid(oid)


@pytest.mark.parametrize("oid", ["1.3", "1.3.6", "2.999.16384", "1.3.6.1.2.1.31.1.1.1.6.4294967295",
                                 "1.3.6.1.2.1.2.2.1.8.1", ".1.3.6.1.2.1.1.3.0"])
def test_oids_encode_as_pysnmp_encodes_them_and_decode_back(oid: str) -> None:
    reference = encoder.encode(rfc1902.ObjectName(oid.strip(".")))[2:]  # the body after tag and length
    assert wire.encode_oid(oid) == reference and wire.encode_oid(oid) == reference  # again: from the cache
    assert wire.decode_oid(reference) == oid.strip(".") and wire.decode_oid(reference) == oid.strip(".")
