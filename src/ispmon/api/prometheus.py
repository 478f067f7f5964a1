"""``GET /metrics``: the daemon's own figures and its targets' state for Prometheus.

Everything is read from the live state at scrape time, so checks, polls and packets pay nothing
for the scrape. The daemon's own figures come from a custom collector over a `CollectorRegistry`
of our own, built per scrape (never the library's global registry, which would also carry whatever
another library registered): everything ``/readyz`` reports, by calling that handler, so a figure
added there appears here with no code (`ispmon.api.prometheus_figures`), plus the outbox backlog
and the SNMP, RADIUS and flow counters. prometheus-client picks the format from the Accept header
(text 0.0.4, or OpenMetrics as Prometheus asks for) and encodes that registry; the per-endpoint
and per-interface families, nearly all of the samples, are encoded by the library too, a slice at
a time (`ispmon.api.prometheus_text`), in steps of a few ms, letting due checks run between them
(a 10,000-endpoint scrape must not hold the event loop), and streamed after it in chunks.
Compressed when the scraper accepts gzip. Reads follow the API's rules: with ``ISPMON_API_TOKEN``
set, a scraper sends a token (the
read-only one will do).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from ispmon.api import health
from ispmon.api.prometheus_figures import (
    PREFIX,
    counter_families,
    flow_totals,
    readiness_families,
)
from ispmon.api.prometheus_text import EOF, Snapshot, render_steps
from ispmon.api.spec import Call, Route
from ispmon.services.context import AppServices
from ispmon.store.outbox_figures import outbox_backlog

TAG = "health"
# The RADIUS accounting listener's counters (`usage.listener.ListenerStats`), when the daemon runs
# one: set by `expose_radius`, since the listener is not one of the API's services.
RADIUS_STATS = web.AppKey("radius_stats", object)
MEDIA_TYPES = ("text/plain", "application/openmetrics-text")
EXPOSITION = {"type": "string", "description": "Prometheus text format 0.0.4 or OpenMetrics 1.0"}


def expose_radius(app: web.Application, protocol: Any) -> None:
    """Scrape `protocol.stats` (an `AccountingProtocol`'s) too; None: no listener, no series."""
    if protocol is not None:
        app[RADIUS_STATS] = protocol.stats


class Scrape:
    """One scrape's own figures: the /readyz answer and outbox backlog fetched before, the
    counters read from memory while prometheus-client encodes (no await in between)."""

    def __init__(
        self, services: AppServices, readiness: dict[str, Any], outbox: tuple[int, float] | None, radius: Any
    ) -> None:
        self.services = services
        self.readiness = readiness
        self.outbox = outbox
        self.radius = radius

    def collect(self) -> Iterator[Metric]:
        yield from readiness_families(self.readiness)
        if self.outbox is not None:
            pending = GaugeMetricFamily(f"{PREFIX}_outbox_pending", "Notifications waiting in the outbox")
            pending.add_metric([], float(self.outbox[0]))
            oldest = GaugeMetricFamily(
                f"{PREFIX}_outbox_oldest_pending_age_seconds",
                "Age of the oldest notification waiting in the outbox (0 when none waits)",
            )
            oldest.add_metric([], self.outbox[1])
            yield from (pending, oldest)
        poller = self.services.network.poller
        if poller is not None:
            yield from counter_families(
                "snmp", {k: v for k, v in vars_of(poller.stats).items() if k != "lateness"}
            )
        if self.radius is not None:
            yield from counter_families("radius", self.radius.as_dict())
        flows = self.services.flows
        if flows.collector is not None:
            counters = {k: v for k, v in flows.collector.counters().items() if k not in ("raw", "shared")}
            counters["receive_buffer_bytes"] = counters.pop("receive_buffer", None)  # SO_RCVBUF
            yield from counter_families("flow_listener", counters, gauges=("receive_buffer_bytes",))
        if flows.decoder is not None:
            decoder = flows.decoder
            exporters = GaugeMetricFamily(f"{PREFIX}_flow_exporters", "Flow exporters the decoder knows")
            exporters.add_metric([], float(len(decoder.exporters)))
            yield exporters
            totals = flow_totals(decoder.exporters.values())
            totals["unknown_packets"] = float(decoder.unknown_packets)
            yield from counter_families("flow_decoder", totals, gauges=("pending",))


def vars_of(stats: Any) -> dict[str, Any]:
    """The fields of a stats dataclass, without copying them (`asdict` would copy every list)."""
    return {field.name: getattr(stats, field.name) for field in dataclasses.fields(stats)}


async def metrics(call: Call) -> web.StreamResponse:
    # The same figures /readyz answers (200 or 503, both carry them), so the two never disagree.
    readiness = json.loads((await health.readyz(call)).body)  # type: ignore[arg-type]
    outbox = await outbox_backlog(call.services.db.pool)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Scrape(call.services, readiness, outbox, call.request.app.get(RADIUS_STATS)))
    encoder, content_type = choose_encoder(",".join(call.request.headers.getall(hdrs.ACCEPT, [])))
    snapshot = Snapshot.take(call.services.monitor, call.services.network.poller)
    steps = render_steps(snapshot, encoder)
    while True:  # a few ms of CPU per step; due checks run in between
        try:
            next(steps)
        except StopIteration as stop:
            chunks: list[bytes] = stop.value
            break
        await asyncio.sleep(0)
    # Streamed a chunk at a time (each write lets the loop run; aiohttp compresses chunks off the
    # loop): joining 16 MB into one body cost 20 ms of CPU and 80 ms of page faults in one go.
    response = web.StreamResponse(headers={hdrs.CONTENT_TYPE: content_type})
    response.enable_compression()
    await response.prepare(call.request)
    for part in parts(encoder(registry), chunks):
        await response.write(part)
    await response.write_eof()
    return response


def parts(encoded: bytes, chunks: list[bytes]) -> list[bytes]:
    """The body in order: prometheus-client's output with `chunks` before OpenMetrics' closing
    ``# EOF``."""
    if encoded.endswith(EOF):
        return [encoded[: -len(EOF)], *chunks, EOF]
    return [encoded, *chunks]


def splice(encoded: bytes, chunks: list[bytes]) -> bytes:
    """`parts` as one body."""
    return b"".join(parts(encoded, chunks))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/metrics",
        metrics,
        "metrics",
        "Prometheus exposition: the daemon's own figures, endpoints, devices and interfaces",
        TAG,
        response_schema=EXPOSITION,
        media_types=tuple((media, EXPOSITION) for media in MEDIA_TYPES),
        json_body=False,
        description=(
            "Every /readyz figure, per endpoint up/status/response time/certificate expiry, per "
            "interface rates and utilisation, SNMP/RADIUS/flow counters. OpenMetrics when the "
            "Accept header asks for it. With ISPMON_API_TOKEN set it needs a token, like every read."
        ),
    ),
)
