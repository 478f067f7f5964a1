"""The per-endpoint and per-interface families of ``/metrics``, encoded by prometheus-client in steps.

These are nearly all of a scrape's samples (10,000 endpoints and 10,000 interfaces make ~150,000),
and prometheus-client costs ~10-20 us per sample to build and encode here (bench/metrics_scrape.py):
seconds of CPU per scrape, which in one go would hold the event loop the monitor shares. So each
family is handed to the library's encoder a slice of samples at a time (`ENCODE_SAMPLES`), with a
step after each slice in which the caller lets due checks run; the HELP/TYPE header of every slice
after a family's first, and OpenMetrics' closing ``# EOF`` of each slice, are dropped, so the
chunks joined are the library's output for the whole family. Every sample line is written by
prometheus-client (its escaping, its float format, its label order): none is written here.

Input is a `Snapshot` taken on the event loop (lists, so the monitor and the poller may change
their dicts meanwhile). Labels stay bounded: endpoint id and protocol; device id, interface id and
name; never a URL or anything a target sends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

PREFIX = "ispmon"
Encoder = Callable[[CollectorRegistry], bytes]
# Samples per call of the encoder: ~5 ms of CPU, the longest the loop is held by a scrape step.
ENCODE_SAMPLES = 250
EOF = b"# EOF\n"


class _One:
    """A collector of one metric, for the encoder (which takes a registry)."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self.metric


def _encode(metric: Metric, samples: list[Any], encoder: Encoder, header: bool) -> bytes:
    part = Metric(metric.name, metric.documentation, metric.type)
    part.samples = samples
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_One(part))
    text = encoder(registry)
    if text.endswith(EOF):
        text = text[: -len(EOF)]
    if not header:
        while text.startswith(b"# "):  # HELP, TYPE (and UNIT): the family's first slice has them
            text = text[text.index(b"\n") + 1 :]
    return text


def family_steps(name: str, help_text: str, rows: Iterable[tuple[dict[str, str], float]], out: list[bytes],
                 encoder: Encoder) -> Steps:  # fmt: skip
    """Encode one gauge family into `out` as its rows come, ENCODE_SAMPLES at a time, a step per
    slice: only one slice of samples is alive at once (150,000 live samples made the collector's
    full passes hold the loop for hundreds of ms)."""
    metric = Metric(name, help_text, "gauge")
    header = True
    for labels, value in rows:
        metric.add_sample(name, labels, float(value))
        if len(metric.samples) >= ENCODE_SAMPLES:
            out.append(_encode(metric, metric.samples, encoder, header))
            header, metric.samples = False, []
            yield
    if metric.samples or header:  # a family with no sample still says HELP and TYPE
        out.append(_encode(metric, metric.samples, encoder, header))
    yield
    return None


@dataclass
class Snapshot:
    """What a scrape reads, copied out of the live dicts on the event loop."""

    runtimes: list[Any] = field(default_factory=list)  # EndpointRuntime
    # (device id, reachable, [Iface]) per device
    devices: list[tuple[str, bool | None, list[Any]]] = field(default_factory=list)

    @classmethod
    def take(cls, monitor: Any, poller: Any) -> Snapshot:
        # Several agents: each exports the endpoints it checks (Prometheus scrapes every agent).
        runtimes = (
            [r for r in monitor.runtimes.values() if monitor.checks_here(r.spec.id)] if monitor is not None else []
        )
        devices = (
            [(s.spec.id, s.reachable, list(s.by_index.values())) for s in list(poller.devices.values())]
            if poller is not None
            else []
        )
        return cls(runtimes, devices)


Steps = Generator[None, None, Any]
Rows = Iterator[tuple[dict[str, str], float]]


def finish(steps: Steps) -> Any:
    """Run `steps` to the end at once; what they return."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def families(snapshot: Snapshot) -> list[tuple[str, str, Rows]]:
    """Every per-target family: (name, help, its rows made lazily from the snapshot)."""
    return [*endpoint_families(snapshot.runtimes), *interface_families(snapshot.devices)]


def render_steps(snapshot: Snapshot, encoder: Encoder = generate_latest) -> Generator[None, None, list[bytes]]:
    """The exposition of every per-target family, as chunks of bytes, in steps."""
    return (yield from _steps(families(snapshot), encoder))


def _steps(of: list[tuple[str, str, Rows]], encoder: Encoder) -> Generator[None, None, list[bytes]]:
    out: list[bytes] = []
    for name, help_text, rows in of:
        yield from family_steps(name, help_text, rows, out, encoder)
    return out


def render(snapshot: Snapshot, encoder: Encoder = generate_latest) -> str:
    return b"".join(finish(render_steps(snapshot, encoder))).decode()


def endpoint_text(runtimes: list[Any]) -> str:
    return b"".join(finish(_steps(endpoint_families(runtimes), generate_latest))).decode()


def interface_text(devices: list[tuple[str, bool | None, list[Any]]]) -> str:
    return b"".join(finish(_steps(interface_families(devices), generate_latest))).decode()


def _endpoint_labels(runtime: Any) -> dict[str, str]:
    return {"endpoint": runtime.spec.id, "protocol": runtime.spec.protocol.value}


def _up(runtimes: list[Any]) -> Rows:
    for runtime in runtimes:
        if runtime.last is not None:
            code = runtime.last[1].status.value
            if code == "up" or code == "degraded":
                yield _endpoint_labels(runtime), 1.0
            elif code == "down":
                yield _endpoint_labels(runtime), 0.0


def _status(runtimes: list[Any]) -> Rows:
    for runtime in runtimes:
        yield {**_endpoint_labels(runtime), "status": runtime.state.status.value}, 1.0


def _response_time(runtimes: list[Any]) -> Rows:
    for runtime in runtimes:
        if runtime.last is not None and runtime.last[1].response_time_ms is not None:
            yield _endpoint_labels(runtime), runtime.last[1].response_time_ms / 1000.0


def _checked(runtimes: list[Any]) -> Rows:
    for runtime in runtimes:
        if runtime.last is not None:
            yield _endpoint_labels(runtime), runtime.last[0].timestamp()


def _cert(runtimes: list[Any]) -> Rows:
    for runtime in runtimes:
        if runtime.last is None or not runtime.last[1].details:
            continue
        not_after = runtime.last[1].details.get("cert_not_after")
        if isinstance(not_after, str):
            with contextlib.suppress(ValueError):  # a detail we did not write: no series
                yield _endpoint_labels(runtime), datetime.fromisoformat(not_after).timestamp()


def endpoint_families(runtimes: list[Any]) -> list[tuple[str, str, Rows]]:
    """Per endpoint: the last check's up, response time, time and certificate expiry; the status.

    ``up`` is the last check (1 UP or DEGRADED, 0 DOWN; absent before the first check and after one
    that was UNKNOWN: our own resources failed, the target said nothing). ``status`` is the
    endpoint's status after the outage policy (thresholds, maintenance): one series, value 1, with
    the current status as its label (the previous one goes stale when it changes), so 10,000
    endpoints cost 10,000 samples, not 50,000.
    """
    return [
        (f"{PREFIX}_endpoint_up", "1 when the endpoint's last check was up or degraded, 0 when down", _up(runtimes)),
        (f"{PREFIX}_endpoint_status",
         "1, labelled with the endpoint's current status (after thresholds and maintenance)", _status(runtimes)),
        (f"{PREFIX}_endpoint_response_time_seconds", "Response time of the endpoint's last check",
         _response_time(runtimes)),
        (f"{PREFIX}_endpoint_last_check_timestamp_seconds", "When the endpoint was last checked (Unix time)",
         _checked(runtimes)),
        (f"{PREFIX}_endpoint_certificate_expiry_timestamp_seconds",
         "When the certificate of the endpoint's last HTTPS check expires (Unix time)", _cert(runtimes)),
    ]  # fmt: skip


# (family suffix, help, Sample attribute for in, for out, factor): bits -> bytes, percent -> ratio.
INTERFACE_RATES = (
    ("traffic_bytes_per_second", "Traffic over the last poll interval", "in_bps", "out_bps", 1 / 8),
    ("packets_per_second", "Packets per second over the last poll interval", "in_pps", "out_pps", 1.0),
    ("utilisation_ratio", "Traffic over the interface speed (0-1)", "in_util_pct", "out_util_pct", 0.01),
    ("errors_per_second", "Errored packets per second", "in_errors_ps", "out_errors_ps", 1.0),
    ("discards_per_second", "Discarded packets per second", "in_discards_ps", "out_discards_ps", 1.0),
)
Devices = list[tuple[str, bool | None, list[Any]]]


def _device_up(devices: Devices) -> Rows:
    for device_id, reachable, _ in devices:
        if reachable is not None:
            yield {"device": device_id}, 1.0 if reachable else 0.0


def _selected(devices: Devices) -> Iterator[tuple[dict[str, str], bool | None, Any]]:
    for device_id, reachable, interfaces in devices:
        for iface in interfaces:
            if iface.selected:
                yield {"device": device_id, "interface": iface.name, "interface_id": str(iface.id)}, reachable, iface


def _down(devices: Devices) -> Rows:
    for labels, _, iface in _selected(devices):
        yield labels, 1.0 if iface.down_since is not None else 0.0


def _rates(devices: Devices, attr_in: str, attr_out: str, factor: float) -> Rows:
    """The rates of a device that stopped answering are left out rather than shown stale."""
    for labels, reachable, iface in _selected(devices):
        sample = iface.sample
        if sample is None or reachable is False:
            continue
        for direction, attr in (("in", attr_in), ("out", attr_out)):
            value = getattr(sample, attr)
            if value is not None:
                yield {**labels, "direction": direction}, value * factor


def interface_families(devices: Devices) -> list[tuple[str, str, Rows]]:
    """Per device reachability; per selected interface the last poll's rates, utilisation and
    whether it is down (admin up, oper not up)."""
    return [
        (f"{PREFIX}_device_up", "1 when the device answered its last SNMP poll, 0 when not", _device_up(devices)),
        (f"{PREFIX}_interface_down", "1 when the interface is admin up and oper not up", _down(devices)),
        *((f"{PREFIX}_interface_{suffix}", help_text, _rates(devices, attr_in, attr_out, factor))
          for suffix, help_text, attr_in, attr_out, factor in INTERFACE_RATES),
    ]  # fmt: skip
