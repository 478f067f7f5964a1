"""The endpoint definition: target parsing per protocol, defaults, and secrets in API output."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ispmon.availability.endpoints import (
    REDACTED,
    EndpointDefaults,
    Target,
    build_endpoint,
    redact_url,
    restore_redacted,
)
from ispmon.models import Protocol
from ispmon.validation import error_list

TARGETS: list[tuple[dict[str, Any], Protocol, Target]] = [
    ({"url": "https://api.example.net/health"}, Protocol.HTTPS, Target("api.example.net", 443)),
    ({"url": "http://[2001:db8::1]:8080/x"}, Protocol.HTTP, Target("2001:db8::1", 8080)),
    (
        {"url": "radius.example.net:1812", "protocol": "udp", "send": "x"},
        Protocol.UDP,
        Target("radius.example.net", 1812),
    ),
    ({"url": "tcp://10.0.0.1", "port": 25}, Protocol.TCP, Target("10.0.0.1", 25)),
    ({"url": "[2001:db8::2]:179", "protocol": "tcp"}, Protocol.TCP, Target("2001:db8::2", 179)),
    ({"url": "198.51.100.1", "protocol": "icmp"}, Protocol.ICMP, Target("198.51.100.1")),
    ({"url": "icmp://core-1.example.net"}, Protocol.ICMP, Target("core-1.example.net")),
    (
        {"url": "dns://192.0.2.53/www.example.net"},
        Protocol.DNS,
        Target("192.0.2.53", 53, "www.example.net", "A"),
    ),
    (
        {"url": "dns://[2001:db8::53]:5353/example.net.?type=mx"},
        Protocol.DNS,
        Target("2001:db8::53", 5353, "example.net", "MX"),
    ),
]


@pytest.mark.parametrize(("data", "protocol", "target"), TARGETS, ids=[t[0]["url"] for t in TARGETS])
def test_targets_parse_per_protocol(data: dict[str, Any], protocol: Protocol, target: Target) -> None:
    spec = build_endpoint({"name": "t", **data})
    assert spec.protocol is protocol and spec.target == target


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"url": "ftp://h/"}, "protocol", "cannot tell it from url"),
    ({"url": "http://h/", "protocol": "https"}, "url", "needs a https:// URL"),
    ({"url": "h:0", "protocol": "tcp"}, "url", "port must be a number from 1 to 65535"),
    ({"url": "h", "protocol": "udp", "send": "x"}, "url", "needs a port"),
    ({"url": "h:1:2", "protocol": "icmp"}, "url", "is not a valid host name"),
    ({"url": "h:22", "protocol": "icmp"}, "url", "an icmp target has no port"),
    ({"url": "dns://h/x?kind=A"}, "url", "unknown query parameter 'kind'"),
    ({"url": "dns://h/"}, "url", "is not a valid name to query"),
    ({"url": "http://h/", "headers": {"X\r\nInjected": "1"}}, "headers", "not a valid HTTP token"),
    ({"url": "http://h/", "headers": {"X-A": "1\r\nX-B: 2"}}, "headers", "must not contain CR, LF or NUL"),
    ({"url": "http://h/", "expected_status_code": 700}, "expected_status_code", "not an HTTP status code"),
    ({"url": "http://h/", "expected_status_code": []}, "expected_status_code", "at least one status code"),
    ({"url": "h:1", "protocol": "udp", "send_hex": "zz"}, "send_hex", "hex digits"),
    ({"url": "h:1", "protocol": "udp", "send": "a", "send_hex": "00"}, "send_hex", "either send or send_hex"),
    ({"url": "http://h/", "name": "a\x00b"}, "name", "NUL characters"),
]


@pytest.mark.parametrize(("data", "field", "text"), BAD, ids=[f"{b[1]}:{b[2][:20]}" for b in BAD])
def test_invalid_definitions_name_the_field(data: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        build_endpoint({"name": "t", **data})
    errors = error_list(exc.value)
    assert errors[0]["field"] == field and text in errors[0]["message"], errors


def test_defaults_come_from_settings_and_payloads_stay_byte_exact() -> None:
    spec = build_endpoint(
        {"name": " SMTP relay ", "url": " mail:25 ", "protocol": "tcp", "send": "QUIT\r\n"},
        EndpointDefaults(check_interval=30, timeout=2, retries=1),
    )
    assert (spec.id, spec.name, spec.url) == ("smtp-relay", "SMTP relay", "mail:25")
    assert (spec.check_interval, spec.timeout, spec.retries) == (30, 2, 1)
    assert spec.payload == b"QUIT\r\n"


def test_stored_form_validates_again_unchanged() -> None:
    spec = build_endpoint(
        {"name": "r", "url": "core-1", "protocol": "icmp", "packet_count": 5, "tags": ["core"]}
    )
    assert build_endpoint(spec.stored_dict()) == spec
    assert "method" not in spec.public_dict()  # http-only fields are not shown for icmp


def test_secrets_are_redacted_in_api_output_and_restored_on_write_back() -> None:
    spec = build_endpoint(
        {
            "name": "billing",
            "url": "https://monitor:s3cret@billing.example.net/health",
            "headers": {"X-Auth": "Bearer abc", "X-Api-Key": "k", "Accept": "application/json"},
        }
    )
    shown = spec.public_dict()
    assert shown["url"] == f"https://monitor:{REDACTED}@billing.example.net/health"
    assert shown["headers"] == {
        "X-Auth": REDACTED,
        "X-Api-Key": REDACTED,
        "Accept": "application/json",
    }
    assert "s3cret" not in str(shown) and "abc" not in str(shown)
    # A client PUTs back what it was shown, changing one thing: the secrets survive.
    stored = spec.stored_dict()
    restored = restore_redacted({**shown, "headers": {**shown["headers"], "Accept": "text/plain"}}, stored)
    assert restored["url"] == spec.url
    assert restored["headers"] == {"X-Auth": "Bearer abc", "X-Api-Key": "k", "Accept": "text/plain"}
    # A new secret replaces the old one.
    assert restore_redacted({"headers": {"X-Auth": "Bearer new"}}, stored)["headers"] == {
        "X-Auth": "Bearer new"
    }


def test_redact_url_leaves_urls_without_password_alone() -> None:
    assert redact_url("http://user@h/") == "http://user@h/"
    assert redact_url("dns://192.0.2.53/a.example?type=A") == "dns://192.0.2.53/a.example?type=A"


def test_definitions_built_alike_share_one_frozen_fields_set() -> None:
    # Memory per idle endpoint (issue 10): the set of given field names is shared, not per copy.
    a = build_endpoint({"name": "a", "url": "http://127.0.0.1/a", "timeout": 2})
    b = build_endpoint({"name": "b", "url": "http://127.0.0.1/b", "timeout": 3})
    assert a.model_fields_set is b.model_fields_set
    assert a.model_fields_set == {"id", "name", "url", "protocol", "timeout", "check_interval", "retries"}
    assert a.model_dump(exclude_unset=True)["timeout"] == 2
    assert "port" not in a.model_dump(exclude_unset=True)
    with pytest.raises(TypeError):
        a.model_fields_set.add("port")
    copied = a.model_copy(update={"name": "c"})
    assert copied.model_fields_set is not a.model_fields_set
    assert "port" not in b.model_fields_set
