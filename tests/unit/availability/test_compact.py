"""The monitor's compact endpoint definitions: read like the validated model, and small.

What the monitor keeps per endpoint for the daemon's life is a `CompactSpec`, not the pydantic
`EndpointSpec` (about a kilobyte more each). Every attribute a probe, the state machine or the
alert engine reads must give what the model gives, and the stored / public forms must be the same.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import pytest

from ispmon.availability.compact import CompactSpec, compact
from ispmon.availability.endpoints import EndpointSpec, build_endpoint, target_key
from ispmon.availability.monitor import EndpointRuntime, Monitor
from ispmon.availability.outages import EndpointState, OutagePolicy
from ispmon.probes.base import ProbeContext

DEFINITIONS: list[dict[str, Any]] = [
    {"name": "web", "url": "http://127.0.0.1:9/health"},
    {
        "name": "api",
        "url": "https://user:pw@127.0.0.1:8443/x?y=1",
        "tags": ["core", "edge"],
        "headers": {"X-Token": "s3cret", "Accept": "text/plain"},
        "method": "POST",
        "body": "{}",
        "expected_status_code": [200, 204],
        "expected_response_pattern": "^ok",
        "verify_tls": False,
        "cert_expiry_days": 30,
        "criticality": "critical",
        "parent": "router",
        "degraded_response_time_ms": 250,
        "description": "the API",
        "check_interval": 30,
        "timeout": 3,
        "retries": 1,
    },
    {"name": "smtp", "url": "127.0.0.1:25", "protocol": "tcp", "send": "QUIT\r\n",
     "expected_response_pattern": "^220 "},
    {"name": "radius", "url": "127.0.0.1", "protocol": "udp", "port": 1812, "send_hex": "01 00",
     "allow_no_reply": True},
    {"name": "dns", "url": "dns://127.0.0.1:5353/example.test?type=AAAA", "expected_answers": ["::1"],
     "expected_rcode": "NXDOMAIN"},
    {"name": "router", "url": "10.0.0.1", "protocol": "icmp", "packet_count": 5, "packet_interval": 0.5,
     "loss_threshold_percent": 40, "canary": True, "is_active": False, "expected_status_code": None},
]  # fmt: skip


def _built(data: dict[str, Any]) -> EndpointSpec:
    return build_endpoint({k: v for k, v in data.items() if v is not None})


@pytest.mark.parametrize("data", DEFINITIONS, ids=lambda d: d["name"])
def test_reads_like_the_model(data: dict[str, Any]) -> None:
    spec = _built(data)
    small = CompactSpec(spec)
    for name in EndpointSpec.model_fields:
        value, expected = getattr(small, name), getattr(spec, name)
        if isinstance(expected, list):
            assert value == tuple(expected), name
        else:
            assert value == expected, name
    assert small.target == spec.target
    assert small.pattern == spec.pattern and small.payload == spec.payload
    for code in (100, 200, 204, 301, 404, 500):
        assert small.accepts_status(code) is spec.accepts_status(code)
    assert small.stored_dict() == spec.stored_dict()
    assert small.public_dict() == spec.public_dict()
    assert small.definition() == build_endpoint(spec.stored_dict(), stored=True)
    assert small == spec and target_key(small) == target_key(spec)
    assert compact(small) is small


def test_a_changed_field_is_not_equal() -> None:
    spec = _built(DEFINITIONS[0])
    changed = build_endpoint({**spec.stored_dict(), "timeout": 4})
    assert CompactSpec(spec) != changed
    assert CompactSpec(spec) != CompactSpec(changed)


def test_read_only() -> None:
    small = CompactSpec(_built(DEFINITIONS[1]))
    with pytest.raises(AttributeError):
        small.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        small.headers["X-Token"] = "other"  # type: ignore[index]
    assert isinstance(small.tags, tuple)


def test_values_alike_are_shared() -> None:
    one = CompactSpec(
        build_endpoint({"name": "a", "url": "http://127.0.0.1:9/a", "tags": ["t"], "check_interval": 90})
    )
    two = CompactSpec(
        build_endpoint({"name": "b", "url": "http://127.0.0.1:9/b", "tags": ["t"], "check_interval": 90})
    )
    assert one.tags is two.tags and one.check_interval is two.check_interval and one.target is two.target


def test_the_runtime_keeps_no_validated_model() -> None:
    spec = _built(DEFINITIONS[1])
    runtime = EndpointRuntime(spec, EndpointState())
    assert isinstance(runtime.spec, CompactSpec)
    gc.collect()
    assert not any(isinstance(r, EndpointSpec) for r in gc.get_referents(runtime.spec))


async def test_memory_per_loaded_endpoint() -> None:
    """What the monitor keeps per loaded endpoint (definition, state, schedule) stays well under
    the 2 KiB per idle endpoint the whole daemon may use; the validated models alone were 1.1 KB."""
    count = 2000
    stored = [
        build_endpoint(
            {
                "id": f"idle-{i}",
                "name": f"idle {i}",
                "url": f"http://127.0.0.1:9/idle/{i}",
                "check_interval": 3600,
            }
        ).stored_dict()
        for i in range(count)
    ]
    monitor = Monitor(ctx=ProbeContext(), policy=OutagePolicy(), history=None, events=None, outages=None)  # type: ignore[arg-type]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        monitor.load((build_endpoint(s, stored=True) for s in stored), {}, {})
        gc.collect()
        per_endpoint = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()
    assert len(monitor.runtimes) == count
    assert per_endpoint < 900, f"{per_endpoint:.0f} B per endpoint"
