"""DeviceSpec: a table of good and bad definitions, each error naming its field; secrets redacted."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ispmon.network.devices import DeviceSpec, InterfaceSelection, build_device, restore_redacted
from ispmon.validation import error_list

V2 = {"name": "Core 1", "address": "192.0.2.1", "community": "s3cret-comm"}
V3 = {
    "id": "edge-1",
    "name": "Edge",
    "address": "[2001:db8::1]:1161",
    "version": "3",
    "username": "noc",
    "auth_protocol": "sha256",
    "auth_key": "authpass123",
    "priv_protocol": "aes",
    "priv_key": "privpass123",
}


def test_defaults_and_derived_fields() -> None:
    d = build_device(V2)
    assert (d.id, d.host, d.port, d.version, d.poll_interval, d.security_level) == (
        "core-1", "192.0.2.1", 161, "2c", 60.0, None)
    v3 = build_device(V3)
    assert (v3.host, v3.port, v3.auth_protocol, v3.priv_protocol, v3.security_level) == (
        "2001:db8::1", 1161, "SHA-256", "AES", "authPriv")
    assert build_device({**V2, "address": "router.example.net:10161"}).port == 10161
    assert build_device({**V2, "interfaces": "all"}).interfaces == InterfaceSelection()


def test_secrets_are_redacted_and_never_in_repr() -> None:
    v3 = build_device(V3)
    shown = v3.public_dict()
    assert shown["auth_key"] == shown["priv_key"] == "[redacted]"
    assert "authpass123" not in repr(v3) and "privpass123" not in str(v3)
    assert build_device(V2).public_dict()["community"] == "[redacted]"
    assert "s3cret-comm" not in repr(build_device(V2))
    assert v3.stored_dict()["auth_key"] == "authpass123"
    back = restore_redacted({**shown, "name": "Edge 2"}, v3.stored_dict())
    assert build_device(back).auth_key == "authpass123" and build_device(back).name == "Edge 2"


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({**V2, "address": "999.1.1.1"}, "address", "not a valid host"),
    ({**V2, "address": "r1:0"}, "address", "port"),
    ({**V2, "version": "4"}, "version", ""),
    ({"name": "x", "address": "192.0.2.1"}, "community", "required for SNMP version 2c"),
    ({**V2, "username": "u"}, "username", "only for SNMP version 3"),
    ({**V3, "username": None}, "username", "required for SNMP version 3"),
    ({**V3, "auth_protocol": "SHA-1024"}, "auth_protocol", "must be one of MD5, SHA"),
    ({**V3, "priv_protocol": "3DES"}, "priv_protocol", "must be one of DES, AES"),
    ({**V3, "auth_key": None}, "auth_key", "go together"),
    ({**V3, "auth_key": "short"}, "auth_key", "at least 8"),
    ({**V3, "auth_protocol": None, "auth_key": None}, "auth_protocol", "needs authentication"),
    ({**V3, "community": "x"}, "community", "not a community"),
    ({**V2, "poll_interval": 0.5}, "poll_interval", "greater than or equal to 1"),
    ({**V2, "poll_interval": 2, "timeout": 2}, "timeout", "less than poll_interval"),
    ({**V2, "id": "Bad Id"}, "id", "slug"),
    ({**V2, "parent": "no/slug"}, "parent", "slug"),
    ({**V2, "interfaces": {"include": ["(unclosed"]}}, "interfaces.include", "regular expression"),
    ({**V2, "interfaces": {"types": ["warpDrive"]}}, "interfaces.types", "unknown ifType"),
    ({**V2, "interfaces": {"typo": []}}, "interfaces.typo", ""),
    ({**V2, "colour": "red"}, "colour", ""),
    ({**V2, "name": "a\x00b"}, "name", "NUL"),
]


@pytest.mark.parametrize(("data", "field", "text"), BAD)
def test_bad_definitions_name_the_field(data: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ValidationError) as info:
        DeviceSpec.model_validate(data)
    errors = error_list(info.value)
    assert any(e["field"] == field and text in e["message"] for e in errors), errors


@pytest.mark.parametrize(
    ("selection", "iface", "expected"),
    [
        ({}, ("eth0", "eth0", "", 6), True),
        ({"include": ["^xe-"]}, ("xe-0/0/1", "", "", 6), True),
        ({"include": ["^xe-"]}, ("ge-0/0/1", "", "", 6), False),
        ({"include": ["uplink"]}, ("ge-0/0/1", "", "uplink to core", 6), True),  # ifAlias
        ({"exclude": [r"\.\d+$"]}, ("ae0.1234", "", "", 135), False),  # BRAS sub-interfaces
        ({"types": [6]}, ("lo", "", "", 24), False),
        ({"types": ["ethernetCsmacd"]}, ("eth0", "", "", 6), True),
        ({"exclude_types": ["softwareLoopback"]}, ("lo", "", "", 24), False),
    ],
)
def test_interface_selection(selection: dict[str, Any], iface: tuple[str, str, str, int], expected: bool) -> None:
    assert InterfaceSelection.model_validate(selection).selects(*iface) is expected
