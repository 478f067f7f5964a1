"""Protocol names in any case: the seed's `ProtocolType.HTTPS`, "HTTPS" in a body, `TCP://` URLs.

Whatever the case given, the definition holds the lower-case value, which is what is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ispmon.availability.endpoints import Target, build_endpoint, infer_protocol
from ispmon.config import load_config
from ispmon.models import Protocol, ProtocolType


def test_protocol_type_is_the_protocol_enum() -> None:
    assert ProtocolType is Protocol
    assert ProtocolType.HTTPS.value == "https"


@pytest.mark.parametrize("name", ["HTTPS", "Https", "https", ProtocolType.HTTPS])
def test_protocol_name_in_any_case(name: str) -> None:
    assert Protocol(name) is Protocol.HTTPS
    spec = build_endpoint({"name": "x", "url": "https://api.example.net/", "protocol": name})
    assert spec.protocol is Protocol.HTTPS
    assert spec.stored_dict()["protocol"] == "https"
    assert spec.public_dict()["protocol"] == "https"


def test_unknown_protocol_is_still_refused() -> None:
    with pytest.raises(ValueError, match="'ftp' is not a valid Protocol"):
        Protocol("ftp")
    with pytest.raises(ValueError, match="protocol"):
        build_endpoint({"name": "x", "url": "ftp.example.net:21", "protocol": "FTP"})


@pytest.mark.parametrize(
    ("data", "protocol", "target"),
    [
        ({"url": "HTTPS://api.example.net/health"}, Protocol.HTTPS, Target("api.example.net", 443)),
        ({"url": "TCP://10.0.0.1:25"}, Protocol.TCP, Target("10.0.0.1", 25)),
        ({"url": "Udp://10.0.0.1:1812", "send": "x"}, Protocol.UDP, Target("10.0.0.1", 1812)),
        ({"url": "ICMP://core-1.example.net"}, Protocol.ICMP, Target("core-1.example.net")),
        ({"url": "DNS://192.0.2.53/example.net"}, Protocol.DNS, Target("192.0.2.53", 53, "example.net", "A")),
        ({"url": "tcp://10.0.0.1:25", "protocol": "TCP"}, Protocol.TCP, Target("10.0.0.1", 25)),
    ],
)
def test_url_schemes_in_any_case(data: dict[str, Any], protocol: Protocol, target: Target) -> None:
    spec = build_endpoint({"name": "x", **data})
    assert spec.protocol is protocol
    assert spec.target == target
    assert infer_protocol(data["url"]) is protocol


def test_config_file_protocol_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "ispmon.toml"
    path.write_text(
        '[[endpoints]]\nid = "smtp"\nname = "SMTP relay"\nprotocol = "TCP"\nurl = "mail.example.net:25"\n',
        encoding="utf-8",
    )
    (spec,) = load_config(path).endpoints
    assert spec.protocol is Protocol.TCP
    assert spec.stored_dict()["protocol"] == "tcp"
