"""The per-endpoint and per-interface families of ``/metrics``, written as exposition text directly.

These are nearly all of a scrape's samples (10,000 endpoints and 10,000 interfaces make ~150,000),
and prometheus-client's families cost ~10-18 us per sample to build and encode on this machine
(bench/metrics_scrape.py): seconds of CPU per scrape. Here each target's label string is escaped
once and reused by all of its families (label names in sorted order, as the library writes them),
and a sample is one f-string with the library's own float
format (`floatToGoString`, see `go_float`), so the text is what the library would write for the same gauges. Gauge
sample lines are the same in the text 0.0.4 and OpenMetrics formats, so `ispmon.api.prometheus`
splices this text into either.

Input is a `Snapshot` taken on the event loop (lists, so the monitor and the poller may change
their dicts meanwhile). The renderers are generators that yield every `STEP` targets: the handler
runs them on the event loop and lets due checks run at each step (a worker thread would not do:
while it holds the GIL on a busy machine the loop waits for it, 100+ ms at a time); `render` runs
one to the end at once. Labels stay bounded: endpoint id and
protocol; device id, interface id and name; never a URL or anything a target sends.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.utils import floatToGoString

PREFIX = "ispmon"


def escape(value: str) -> str:
    """A label value as the exposition formats quote it."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def go_float(value: float) -> str:
    """`floatToGoString`, with its common case inline: below 1e6 (and finite) it is Python's repr,
    and the call it saves was half of a sample's cost."""
    value = float(value)
    if -math.inf < value < 1e6:
        return repr(value)
    return floatToGoString(value)


class Gauge:
    """One gauge family's text: HELP and TYPE, then a line per sample."""

    __slots__ = ("lines", "name")

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help_text}\n# TYPE {name} gauge\n"]

    def add(self, labels: str, value: float) -> None:
        self.lines.append(f"{self.name}{{{labels}}} {go_float(value)}\n")

    def text(self) -> str:
        return "".join(self.lines)


# Lines joined per chunk: one join of a whole 16 MB scrape held the loop for ~100 ms here.
CHUNK_LINES = 2000


def chunked(families: list[Gauge], out: list[bytes]) -> Steps:
    """Append each family's lines to `out` as bytes, CHUNK_LINES at a time, a step per chunk."""
    for family in families:
        lines = family.lines
        for start in range(0, len(lines), CHUNK_LINES):
            out.append("".join(lines[start : start + CHUNK_LINES]).encode())
            yield
        family.lines = []  # freed as it goes
    return ""


@dataclass
class Snapshot:
    """What a scrape reads, copied out of the live dicts on the event loop."""

    runtimes: list[Any] = field(default_factory=list)  # EndpointRuntime
    # (device id, reachable, [Iface]) per device
    devices: list[tuple[str, bool | None, list[Any]]] = field(default_factory=list)

    @classmethod
    def take(cls, monitor: Any, poller: Any) -> Snapshot:
        runtimes = list(monitor.runtimes.values()) if monitor is not None else []
        devices = (
            [(s.spec.id, s.reachable, list(s.by_index.values())) for s in list(poller.devices.values())]
            if poller is not None
            else []
        )
        return cls(runtimes, devices)


# Steps: a renderer yields after this many endpoints or interfaces (a few ms of CPU), so a caller
# on the event loop can let due checks run between steps (`ispmon.api.prometheus.metrics`).
STEP = 200

Steps = Generator[None, None, Any]


def finish(steps: Steps) -> Any:
    """Run `steps` to the end at once; what they return."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def render_steps(snapshot: Snapshot) -> Generator[None, None, list[bytes]]:
    """The exposition of every per-target family, as chunks of bytes, in steps."""
    out: list[bytes] = []
    yield from chunked((yield from endpoint_steps(snapshot.runtimes)), out)
    yield from chunked((yield from interface_steps(snapshot.devices)), out)
    return out


def render(snapshot: Snapshot) -> str:
    return b"".join(finish(render_steps(snapshot))).decode()


def endpoint_text(runtimes: list[Any]) -> str:
    return "".join(family.text() for family in finish(endpoint_steps(runtimes)))


def interface_text(devices: list[tuple[str, bool | None, list[Any]]]) -> str:
    return "".join(family.text() for family in finish(interface_steps(devices)))


def endpoint_steps(runtimes: list[Any]) -> Steps:
    """Per endpoint: the last check's up, response time, time and certificate expiry; the status.

    ``up`` is the last check (1 UP or DEGRADED, 0 DOWN; absent before the first check and after one
    that was UNKNOWN: our own resources failed, the target said nothing). ``status`` is the
    endpoint's status after the outage policy (thresholds, maintenance): one series, value 1, with
    the current status as its label (the previous one goes stale when it changes), so 10,000
    endpoints cost 10,000 samples, not 50,000.
    """
    up = Gauge(f"{PREFIX}_endpoint_up", "1 when the endpoint's last check was up or degraded, 0 when down")
    status = Gauge(
        f"{PREFIX}_endpoint_status",
        "1, labelled with the endpoint's current status (after thresholds and maintenance)",
    )
    rtt = Gauge(f"{PREFIX}_endpoint_response_time_seconds", "Response time of the endpoint's last check")
    checked = Gauge(f"{PREFIX}_endpoint_last_check_timestamp_seconds", "When the endpoint was last checked (Unix time)")
    cert = Gauge(
        f"{PREFIX}_endpoint_certificate_expiry_timestamp_seconds",
        "When the certificate of the endpoint's last HTTPS check expires (Unix time)",
    )
    for n, runtime in enumerate(runtimes, 1):
        if n % STEP == 0:
            yield
        spec = runtime.spec
        labels = f'endpoint="{escape(spec.id)}",protocol="{spec.protocol.value}"'
        status.add(f'{labels},status="{runtime.state.status.value}"', 1.0)
        last = runtime.last
        if last is None:
            continue
        at, result = last
        checked.add(labels, at.timestamp())
        code = result.status.value
        if code == "up" or code == "degraded":
            up.add(labels, 1.0)
        elif code == "down":
            up.add(labels, 0.0)
        if result.response_time_ms is not None:
            rtt.add(labels, result.response_time_ms / 1000.0)
        not_after = result.details.get("cert_not_after") if result.details else None
        if isinstance(not_after, str):
            with contextlib.suppress(ValueError):  # a detail we did not write: no series
                cert.add(labels, datetime.fromisoformat(not_after).timestamp())
    return [up, status, rtt, checked, cert]


# (family suffix, help, Sample attribute for in, for out, factor): bits -> bytes, percent -> ratio.
INTERFACE_RATES = (
    ("traffic_bytes_per_second", "Traffic over the last poll interval", "in_bps", "out_bps", 1 / 8),
    ("packets_per_second", "Packets per second over the last poll interval", "in_pps", "out_pps", 1.0),
    ("utilisation_ratio", "Traffic over the interface speed (0-1)", "in_util_pct", "out_util_pct", 0.01),
    ("errors_per_second", "Errored packets per second", "in_errors_ps", "out_errors_ps", 1.0),
    ("discards_per_second", "Discarded packets per second", "in_discards_ps", "out_discards_ps", 1.0),
)


def interface_steps(devices: list[tuple[str, bool | None, list[Any]]]) -> Steps:
    """Per device reachability; per selected interface the last poll's rates, utilisation and
    whether it is down (admin up, oper not up). The rates of a device that stopped answering are
    left out rather than shown stale."""
    device_up = Gauge(f"{PREFIX}_device_up", "1 when the device answered its last SNMP poll, 0 when not")
    down = Gauge(f"{PREFIX}_interface_down", "1 when the interface is admin up and oper not up")
    rates = [
        (Gauge(f"{PREFIX}_interface_{suffix}", help_text), attr_in, attr_out, factor)
        for suffix, help_text, attr_in, attr_out, factor in INTERFACE_RATES
    ]
    n = 0
    for device_id, reachable, interfaces in devices:
        device = escape(device_id)
        if reachable is not None:
            device_up.add(f'device="{device}"', 1.0 if reachable else 0.0)
        for iface in interfaces:
            n += 1
            if n % STEP == 0:
                yield
            if not iface.selected:
                continue
            # Label names in sorted order, as prometheus-client writes them.
            rest = f'interface="{escape(iface.name)}",interface_id="{iface.id}"'
            down.add(f'device="{device}",{rest}', 1.0 if iface.down_since is not None else 0.0)
            sample = iface.sample
            if sample is None or reachable is False:
                continue
            labels_in = f'device="{device}",direction="in",{rest}'
            labels_out = f'device="{device}",direction="out",{rest}'
            for family, attr_in, attr_out, factor in rates:
                value = getattr(sample, attr_in)
                if value is not None:
                    family.add(labels_in, value * factor)
                value = getattr(sample, attr_out)
                if value is not None:
                    family.add(labels_out, value * factor)
    return [device_up, down, *(family for family, _, _, _ in rates)]
