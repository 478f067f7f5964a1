"""The Prometheus families made from live state (api/prometheus_figures.py through
prometheus-client's exposition, api/prometheus_text.py written directly), read back with
prometheus-client's parser: names, types, units, labels and values."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ispmon.api.prometheus import splice, vars_of
from ispmon.api.prometheus_figures import counter_families, metric_part, readiness_families
from ispmon.api.prometheus_text import ENCODE_SAMPLES, Snapshot, endpoint_text, interface_text, render
from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.monitor import EndpointRuntime
from ispmon.availability.outages import EndpointState
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.network.counters import Sample
from ispmon.network.devices import DeviceSpec
from ispmon.network.poller import DeviceState, Iface, PollerStats

READYZ: dict[str, Any] = {
    "status": "ready",
    "checks": {"database": "ok", "probe_resources": "exhausted"},
    "monitor": {
        "endpoints": 3,
        "scheduler": {
            "dispatched": 10, "skipped_overrun": 1, "skipped_late": 2, "completed": 9, "inflight": 4,
            "lag_p50_ms": 1.5, "lag_p99_ms": 30.0,
        },
        "writer": {
            "written": 100, "dropped": 0, "failed_flushes": 0, "last_error": "boom", "last_flush_rows": 5,
            "last_flush_ms": 2.0, "recovered_batches": 0, "backlog": 7,
        },
        "resources": {"exhausted": True, "since": None, "failures": 3, "by_resource": {"fd": 2, "memory": 1}},
    },
    "api": {"max_concurrent_requests": 64, "queue_timeout_s": 5.0, "admitted": 12, "shed": 0, "in_progress": 1},
    # A section this module has never heard of (as another developer's sync would add it).
    "search": {"lag_s": 2.5, "indexed_total": 40, "backlog": 3, "count": 2, "state": "ok"},
}  # fmt: skip


class Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def scrape(families: list[Metric]) -> tuple[str, dict[str, Any]]:
    """The exposition text, and its families parsed back by name."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(families))
    text = generate_latest(registry).decode()
    return text, {family.name: family for family in text_string_to_metric_families(text)}


def parse(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def values(family: Any) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def key(*pairs: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs))


def one(parsed: dict[str, Any], name: str) -> float:
    (value,) = values(parsed[name]).values()
    return value


def test_every_readyz_figure_is_a_metric_with_base_units_and_counters() -> None:
    text, parsed = scrape(readiness_families(READYZ))
    assert one(parsed, "ispmon_ready") == 1.0
    assert values(parsed["ispmon_readiness_check_ok"]) == {
        (("check", "database"),): 1.0,
        (("check", "probe_resources"),): 0.0,
    }
    assert parsed["ispmon_monitor_scheduler_completed"].type == "counter"
    assert "ispmon_monitor_scheduler_completed_total 9.0" in text
    assert parsed["ispmon_monitor_scheduler_inflight"].type == "gauge"
    assert one(parsed, "ispmon_monitor_scheduler_lag_p99_seconds") == 0.030
    assert one(parsed, "ispmon_monitor_writer_last_flush_seconds") == 0.002
    assert one(parsed, "ispmon_monitor_writer_backlog") == 7.0
    assert one(parsed, "ispmon_monitor_resources_exhausted") == 1.0
    assert values(parsed["ispmon_monitor_resources_by_resource"]) == {
        (("resource", "fd"),): 2.0,
        (("resource", "memory"),): 1.0,
    }
    assert parsed["ispmon_monitor_resources_by_resource"].type == "counter"
    assert one(parsed, "ispmon_api_queue_timeout_seconds") == 5.0
    assert parsed["ispmon_api_shed"].type == "counter"
    # Unknown figures: a gauge, seconds from _s, a counter from _total, no reserved _count suffix.
    assert one(parsed, "ispmon_search_lag_seconds") == 2.5
    assert parsed["ispmon_search_indexed"].type == "counter"
    assert one(parsed, "ispmon_search_backlog") == 3.0
    assert one(parsed, "ispmon_search_count_value") == 2.0
    # Text is not a figure.
    assert "last_error" not in text and "since" not in text and "search_state" not in text


def test_not_ready_is_zero_and_figures_survive() -> None:
    _, parsed = scrape(readiness_families({"status": "not_ready", "reason": "x", "checks": {"database": "failing"}}))
    assert one(parsed, "ispmon_ready") == 0.0
    assert values(parsed["ispmon_readiness_check_ok"]) == {(("check", "database"),): 0.0}


def test_names_are_sanitised_and_clashes_keep_the_first() -> None:
    assert metric_part("Lag-P99 (ms)") == "lag_p99_ms"
    _, parsed = scrape(readiness_families({"status": "ready", "x": {"lag_ms": 1000.0, "lag_s": 7.0}}))
    assert one(parsed, "ispmon_x_lag_seconds") == 1.0


def runtime(name: str, url: str, status: Status, last: ProbeResult | None) -> EndpointRuntime:
    spec = build_endpoint({"id": name, "name": name, "url": url, "check_interval": 30, "timeout": 5, "retries": 0})
    rt = EndpointRuntime(spec, EndpointState(status=status))
    if last is not None:
        rt.last = (datetime(2026, 12, 2, 4, 0, tzinfo=UTC), last)
    return rt


def test_endpoint_families() -> None:
    expiry = datetime(2027, 1, 1, tzinfo=UTC)
    runtimes = [
        runtime("web", "https://127.0.0.1/", Status.UP,
                ProbeResult.up(12.5, status_code=200, cert_not_after=expiry.isoformat())),
        runtime("dns-1", "dns://127.0.0.1/example.net", Status.DOWN,
                ProbeResult.down(ErrorKind.TIMEOUT, "no answer")),
        runtime("slow", "tcp://127.0.0.1:81", Status.DEGRADED, ProbeResult.degraded(ErrorKind.SLOW, "slow", 900.0)),
        runtime("new", "http://127.0.0.1/", Status.UNKNOWN, None),
        runtime("ours", "http://127.0.0.1/x", Status.UP, ProbeResult(Status.UNKNOWN, error="no fd")),
    ]  # fmt: skip
    parsed = parse(endpoint_text(runtimes))
    assert values(parsed["ispmon_endpoint_up"]) == {
        (("endpoint", "web"), ("protocol", "https")): 1.0,
        (("endpoint", "dns-1"), ("protocol", "dns")): 0.0,
        (("endpoint", "slow"), ("protocol", "tcp")): 1.0,
    }  # neither before the first check nor after one that failed for our own reasons
    assert values(parsed["ispmon_endpoint_response_time_seconds"]) == {
        (("endpoint", "web"), ("protocol", "https")): 0.0125,
        (("endpoint", "slow"), ("protocol", "tcp")): 0.9,
    }
    assert values(parsed["ispmon_endpoint_certificate_expiry_timestamp_seconds"]) == {
        (("endpoint", "web"), ("protocol", "https")): expiry.timestamp()
    }
    # One series per endpoint, labelled with its current status.
    assert values(parsed["ispmon_endpoint_status"]) == {
        (("endpoint", "web"), ("protocol", "https"), ("status", "up")): 1.0,
        (("endpoint", "dns-1"), ("protocol", "dns"), ("status", "down")): 1.0,
        (("endpoint", "slow"), ("protocol", "tcp"), ("status", "degraded")): 1.0,
        (("endpoint", "new"), ("protocol", "http"), ("status", "unknown")): 1.0,
        (("endpoint", "ours"), ("protocol", "http"), ("status", "up")): 1.0,
    }
    checked = values(parsed["ispmon_endpoint_last_check_timestamp_seconds"])
    assert checked[(("endpoint", "web"), ("protocol", "https"))] == datetime(2026, 12, 2, 4, tzinfo=UTC).timestamp()


def device(name: str, reachable: bool | None, ifaces: list[Iface]) -> DeviceState:
    spec = DeviceSpec(id=name, name=name, address="127.0.0.1", community="public")
    return DeviceState(spec=spec, reachable=reachable, by_index={i.id: i for i in ifaces})


def iface(ident: int, name: str, *, sample: Sample | None, selected: bool = True, down: bool = False) -> Iface:
    return Iface(ident, f"k{ident}", name, 6, 10**9, 1000, selected, 1.0 if down else None, sample)


def test_interface_families() -> None:
    sample = Sample(at=1.0, interval=60.0, in_bps=8000.0, out_bps=800.0, in_pps=10.0, out_pps=None,
                    in_util_pct=50.0, out_util_pct=5.0, in_errors_ps=0.0, out_errors_ps=1.0)  # fmt: skip
    devices = [
        device("core-1", True, [
            iface(1, "eth0", sample=sample),
            iface(2, "eth1", sample=None, down=True),
            iface(3, "lo", sample=sample, selected=False),
        ]),
        device("edge-1", False, [iface(4, "ge-0/0/0", sample=sample)]),
        device("new", None, []),
    ]  # fmt: skip
    poller = SimpleNamespace(devices={d.spec.id: d for d in devices})
    parsed = parse(interface_text(Snapshot.take(None, poller).devices))
    assert values(parsed["ispmon_device_up"]) == {(("device", "core-1"),): 1.0, (("device", "edge-1"),): 0.0}
    eth0 = (("device", "core-1"), ("interface", "eth0"), ("interface_id", "1"))
    assert values(parsed["ispmon_interface_down"]) == {
        eth0: 0.0,
        (("device", "core-1"), ("interface", "eth1"), ("interface_id", "2")): 1.0,
        (("device", "edge-1"), ("interface", "ge-0/0/0"), ("interface_id", "4")): 0.0,
    }
    # Only eth0: eth1 has no sample, lo is not selected, edge-1 stopped answering.
    assert values(parsed["ispmon_interface_traffic_bytes_per_second"]) == {
        key(*eth0, ("direction", "in")): 1000.0,
        key(*eth0, ("direction", "out")): 100.0,
    }
    assert values(parsed["ispmon_interface_utilisation_ratio"]) == {
        key(*eth0, ("direction", "in")): 0.5,
        key(*eth0, ("direction", "out")): 0.05,
    }
    assert values(parsed["ispmon_interface_packets_per_second"]) == {key(*eth0, ("direction", "in")): 10.0}
    assert values(parsed["ispmon_interface_errors_per_second"])[key(*eth0, ("direction", "out"))] == 1.0


def test_counter_families_and_stats_fields() -> None:
    stats = PollerStats(polls=5, failures=1, samples=9, no_sample={"first_reading": 2}, lateness=[0.1] * 3)
    fields = {k: v for k, v in vars_of(stats).items() if k != "lateness"}
    assert fields["polls"] == 5 and fields["no_sample"] == {"first_reading": 2}
    assert dataclasses.is_dataclass(stats)
    text, parsed = scrape(list(counter_families("snmp", fields)) + list(
        counter_families("flow_listener", {"datagrams": 3, "receive_buffer": 4096}, gauges=("receive_buffer",))
    ))
    assert "ispmon_snmp_polls_total 5.0" in text
    assert parsed["ispmon_snmp_failures"].type == "counter"
    assert "no_sample" not in text  # a dict is not a number
    assert parsed["ispmon_flow_listener_receive_buffer"].type == "gauge"
    assert "ispmon_flow_listener_datagrams_total 3.0" in text


def test_written_text_is_what_prometheus_client_writes_for_the_same_gauges() -> None:
    """Labels that need escaping, large and small floats: byte for byte the library's output."""
    from prometheus_client.core import GaugeMetricFamily

    odd = 'ge-0/0/1 "uplink" \\ to\nisp'
    sample = Sample(at=1.0, interval=60.0, in_bps=8.0e10, out_bps=1.0e-3, in_util_pct=100.0)
    devices = [("core-1", True, [iface(7, odd, sample=sample)])]
    ours = interface_text(devices)
    expected: list[Metric] = []
    labels = ["device", "interface_id", "interface"]
    up = GaugeMetricFamily("ispmon_device_up", "1 when the device answered its last SNMP poll, 0 when not",
                           labels=["device"])  # fmt: skip
    up.add_metric(["core-1"], 1.0)
    down = GaugeMetricFamily("ispmon_interface_down", "1 when the interface is admin up and oper not up", labels=labels)
    down.add_metric(["core-1", "7", odd], 0.0)
    expected += [up, down]
    from ispmon.api.prometheus_text import INTERFACE_RATES

    for suffix, help_text, attr_in, attr_out, factor in INTERFACE_RATES:
        family = GaugeMetricFamily(f"ispmon_interface_{suffix}", help_text, labels=[*labels, "direction"])
        for direction, attr in (("in", attr_in), ("out", attr_out)):
            value = getattr(sample, attr)
            if value is not None:
                family.add_metric(["core-1", "7", odd, direction], value * factor)
        expected.append(family)
    library, _ = scrape(expected)
    assert ours == library
    assert 'interface="ge-0/0/1 \\"uplink\\" \\\\ to\\nisp"' in ours  # escaped, no raw newline in a label


def test_splice_keeps_openmetrics_eof_last() -> None:
    assert splice(b"# HELP a x\n# EOF\n", [b"b 1.0\n", b"c 2.0\n"]) == b"# HELP a x\nb 1.0\nc 2.0\n# EOF\n"
    assert splice(b"a 1.0\n", [b"b 1.0\n"]) == b"a 1.0\nb 1.0\n"


def test_snapshot_of_nothing_renders_empty_families() -> None:
    parsed = parse(render(Snapshot.take(None, None)))
    assert parsed["ispmon_endpoint_up"].samples == [] and parsed["ispmon_interface_down"].samples == []


def test_a_family_encoded_in_slices_is_the_library_output_for_the_whole_family() -> None:
    """More endpoints than one encoder slice holds: one HELP/TYPE per family, every sample once,
    the same text the library writes for the whole family at once (text and OpenMetrics)."""
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    from ispmon.api.prometheus_text import endpoint_families, finish, render_steps

    count = ENCODE_SAMPLES * 2 + 7
    specs = [build_endpoint({"id": f"e{n}", "name": f"e{n}", "protocol": "tcp", "url": "tcp://127.0.0.1:1"})
             for n in range(count)]  # fmt: skip
    runtimes = [EndpointRuntime(spec, EndpointState()) for spec in specs]
    for encoder in (generate_latest, openmetrics):
        chunks = finish(render_steps(Snapshot(runtimes=runtimes), encoder))
        whole: list[Metric] = []
        for name, help_text, rows in endpoint_families(runtimes):  # each family built at once
            whole.append(Metric(name, help_text, "gauge"))
            for labels, value in rows:
                whole[-1].add_sample(name, labels, value)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Families(whole))
        expected = encoder(registry)
        if expected.endswith(b"# EOF\n"):
            expected = expected[: -len(b"# EOF\n")]
        text = b"".join(chunks)
        assert text.startswith(expected)  # the endpoint families come first, then the interfaces'
        assert text.count(b"# TYPE ispmon_endpoint_status ") == 1
        assert text.count(b"\nispmon_endpoint_status{") == count


def test_readme_lists_exactly_the_per_target_families() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Prometheus") :]
    table = section[section.index("| metric |") : section.index("\n\n", section.index("| metric |"))]
    documented = set(re.findall(r"`(ispmon_[a-z_]+)`", table))
    rendered = set(parse(render(Snapshot.take(None, None))))
    assert documented == rendered
