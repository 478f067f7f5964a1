"""ICMP checks send at most 20 packets (Smokeping's default), and their spacing fits the interval."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ispmon.availability.endpoints import build_endpoint
from ispmon.validation import error_list

ICMP = {"name": "p", "url": "198.51.100.1", "protocol": "icmp"}


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        ({"packet_count": 21}, "less than or equal to 20"),
        # 20 x 0.5 s + 5 s = 15 s > 10 s
        ({"packet_count": 20, "packet_interval": 0.5, "timeout": 5, "check_interval": 10}, "do not fit"),
        # 3 x 1 s + 4 s = 7 s > 5 s
        ({"packet_count": 3, "packet_interval": 1, "timeout": 4, "check_interval": 5}, "check_interval (5 s)"),
    ],
)
def test_too_many_or_too_slow_packets_name_packet_count(extra: dict[str, Any], text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        build_endpoint(ICMP | extra)
    errors = error_list(exc.value)
    assert errors[0]["field"] == "packet_count" and text in errors[0]["message"], errors


@pytest.mark.parametrize(
    "extra",
    [
        {"packet_count": 20, "packet_interval": 0.2, "timeout": 5, "check_interval": 60},
        # exactly fits: 20 x 0.25 s + 5 s = 10 s
        {"packet_count": 20, "packet_interval": 0.25, "timeout": 5, "check_interval": 10},
    ],
)
def test_twenty_packets_that_fit_are_accepted(extra: dict[str, Any]) -> None:
    assert build_endpoint(ICMP | extra).packet_count == 20
