"""Prometheus metric families from the daemon's live state: pure functions, no I/O, no asyncio.

`readiness_families` turns the figures ``/readyz`` shows into metrics without knowing them: every
number becomes a gauge named after its path (``monitor.writer.backlog`` ->
``ispmon_monitor_writer_backlog``), so a figure another module adds to ``/readyz`` is scraped with
no code here. Units follow the leaf's suffix (``_ms`` -> seconds, ``_s`` -> seconds); a figure that
only grows is a counter when its name ends in ``_total`` or is one of `COUNTERS`; a ``by_<label>``
object of numbers becomes one family with that label. `counter_families` and `flow_totals` read
the poller's and the listeners' counters as they are at scrape time. (The per-endpoint and
per-interface families, tens of thousands of samples, are rendered by `ispmon.api.prometheus_text`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "ispmon"
# Leaf names in /readyz's figures that only grow (since start): exposed as `<name>_total` counters.
COUNTERS = frozenset(
    {
        # monitor.scheduler
        "dispatched", "completed", "skipped_overrun", "skipped_late",
        # monitor.writer
        "written", "dropped", "failed_flushes", "recovered_batches",
        # monitor.resources
        "failures", "by_resource",
        # api (admission)
        "admitted", "waited", "shed",
    }
)  # fmt: skip
# The name's suffix -> (the base-unit suffix, the factor to it).
UNITS: tuple[tuple[str, str, float], ...] = (
    ("_ms", "_seconds", 1e-3),
    ("_us", "_seconds", 1e-6),
    ("_s", "_seconds", 1.0),
    ("_seconds", "_seconds", 1.0),
)
# Suffixes promtool reserves for histograms and summaries.
_RESERVED = ("_count", "_sum", "_bucket")
_NOT_NAME = re.compile(r"[^a-z0-9_]+")


def metric_part(text: str) -> str:
    """`text` as part of a metric name: lower case, runs of anything else as one '_'."""
    return _NOT_NAME.sub("_", text.lower()).strip("_") or "x"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _named(path: list[str], leaf: str) -> tuple[str, float, bool]:
    """(metric name without `_total`, unit factor, is a counter) for the figure at path/leaf."""
    factor = 1.0
    name = leaf
    for suffix, base, scale in UNITS:
        if name.endswith(suffix):
            name, factor = name[: -len(suffix)] + base, scale
            break
    counter = leaf in COUNTERS or name.endswith("_total")
    if name.endswith("_total"):
        name = name[: -len("_total")]
    full = "_".join([PREFIX, *path, name])
    if not counter and full.endswith(_RESERVED):
        full += "_value"
    return full, factor, counter


def _family(name: str, help_text: str, counter: bool, labels: Iterable[str] = ()) -> Metric:
    if counter:
        return CounterMetricFamily(name, help_text, labels=list(labels))
    return GaugeMetricFamily(name, help_text, labels=list(labels))


def readiness_families(doc: Mapping[str, Any]) -> list[Metric]:
    """Every figure of a ``/readyz`` answer as a metric family (first name wins on a clash)."""
    out: dict[str, Metric] = {}
    ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 when /readyz answers ready (the database answers), else 0")
    ready.add_metric([], 1.0 if doc.get("status") == "ready" else 0.0)
    out[ready.name] = ready
    checks = doc.get("checks")
    if isinstance(checks, Mapping) and checks:
        family = GaugeMetricFamily(
            f"{PREFIX}_readiness_check_ok", "1 when the /readyz check is ok, else 0", labels=["check"]
        )
        for check, state in checks.items():
            family.add_metric([str(check)], 1.0 if state == "ok" else 0.0)
        out[family.name] = family
    for key, value in doc.items():
        if key not in ("status", "checks", "reason") and isinstance(value, Mapping):
            _walk([metric_part(key)], value, out)
        elif key not in ("status", "checks", "reason"):
            _leaf([], metric_part(key), value, out)
    return list(out.values())


def _walk(path: list[str], figures: Mapping[str, Any], out: dict[str, Metric]) -> None:
    for key, value in figures.items():
        part = metric_part(str(key))
        if isinstance(value, Mapping):
            if part.startswith("by_") and len(part) > 3 and all(_number(v) is not None for v in value.values()):
                _labelled(path, part, value, out)
            else:
                _walk([*path, part], value, out)
        else:
            _leaf(path, part, value, out)


def _leaf(path: list[str], part: str, value: Any, out: dict[str, Metric]) -> None:
    number = _number(value)
    if number is None:  # text (an error, a date) and null are not figures
        return
    name, factor, counter = _named(path, part)
    if name in out:
        return
    dotted = ".".join([*path, part])
    family = _family(name, f"/readyz figure {dotted}", counter)
    family.add_metric([], number * factor)
    out[family.name] = family


def _labelled(path: list[str], part: str, values: Mapping[str, Any], out: dict[str, Metric]) -> None:
    label = part[3:]
    name, factor, counter = _named(path, part)
    if name in out:
        return
    family = _family(name, f"/readyz figures {'.'.join([*path, part])}, by {label}", counter, [label])
    for key, value in values.items():
        family.add_metric([str(key)], (_number(value) or 0.0) * factor)
    out[family.name] = family


def counter_families(area: str, counters: Mapping[str, Any], gauges: Iterable[str] = ()) -> Iterator[Metric]:
    """`ispmon_<area>_<name>_total` for each number of `counters`, but a gauge for `gauges`
    (figures that go up and down, such as a queue's length)."""
    keep = frozenset(gauges)
    for key, value in counters.items():
        number = _number(value)
        if number is None:
            continue
        part = metric_part(key)
        if key in keep:
            name, factor, _ = _named([area], part)
            family = _family(name, f"{area} figure {key}", False)
            family.add_metric([], number * factor)
        else:
            family = _family(f"{PREFIX}_{area}_{part}", f"{area} {key} since start", True)
            family.add_metric([], number)
        yield family


def flow_totals(exporters: Iterable[Any]) -> dict[str, float]:
    """The decoder's per-exporter counters summed (one series, however many exporters send)."""
    totals: dict[str, float] = {}
    for state in exporters:
        for key, value in state.counters().items():
            if key in ("sampling_rate", "last_seen"):
                continue
            number = _number(value)
            if number is not None:
                totals[key] = totals.get(key, 0.0) + number
    return totals
