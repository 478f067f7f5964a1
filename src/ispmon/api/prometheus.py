"""``GET /metrics``: the daemon's own figures and its targets' state for Prometheus.

A custom collector over a `CollectorRegistry` of our own, built per scrape (never the library's
global registry, which would also carry whatever another library registered): the families are
made from the live state at scrape time (`ispmon.api.prometheus_figures`), so checks, polls and
packets pay nothing for the scrape. Everything ``/readyz`` reports is included as it is, by
calling that handler: a figure added there appears here with no code. The exposition itself is
prometheus-client's (text 0.0.4, or OpenMetrics when the scraper asks for it; gzip when accepted).
Reads follow the API's rules: with ``ISPMON_API_TOKEN`` set, a scraper sends a token (the
read-only one will do).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import GaugeMetricFamily, Metric

from ispmon.api import health
from ispmon.api.prometheus_figures import (
    PREFIX,
    counter_families,
    endpoint_families,
    flow_totals,
    interface_families,
    readiness_families,
)
from ispmon.api.spec import Call, Route
from ispmon.services.context import AppServices
from ispmon.store.outbox_figures import outbox_backlog

TAG = "health"
# The RADIUS accounting listener's counters (`usage.listener.ListenerStats`), when the daemon runs
# one: set by `expose_radius`, since the listener is not one of the API's services.
RADIUS_STATS = web.AppKey("radius_stats", object)
MEDIA_TYPES = ("text/plain", "application/openmetrics-text")


def expose_radius(app: web.Application, protocol: Any) -> None:
    """Scrape `protocol.stats` (an `AccountingProtocol`'s) too; None: no listener, no series."""
    if protocol is not None:
        app[RADIUS_STATS] = protocol.stats


class Scrape:
    """One scrape's families: the /readyz figures and outbox backlog fetched before, the rest read
    from memory while prometheus-client encodes (no await in between)."""

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
        monitor = self.services.monitor
        if monitor is not None:
            yield from endpoint_families(monitor.runtimes.values())
        poller = self.services.network.poller
        if poller is not None:
            yield from interface_families(poller.devices.values())
            yield from counter_families(
                "snmp", {k: v for k, v in vars_of(poller.stats).items() if k != "lateness"}
            )
        if self.radius is not None:
            yield from counter_families("radius", self.radius.as_dict())
        flows = self.services.flows
        if flows.collector is not None:
            yield from counter_families(
                "flow_listener",
                {k: v for k, v in flows.collector.counters().items() if k != "raw"},
                gauges=("receive_buffer",),
            )
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
    return await make_aiohttp_handler(registry)(call.request)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/metrics",
        metrics,
        "metrics",
        "Prometheus exposition: the daemon's own figures, endpoints, devices and interfaces",
        TAG,
        response_schema={"type": "string", "description": "Prometheus text format 0.0.4 or OpenMetrics 1.0"},
        media_types=MEDIA_TYPES,
        description=(
            "Every /readyz figure, per endpoint up/status/response time/certificate expiry, per "
            "interface rates and utilisation, SNMP/RADIUS/flow counters. OpenMetrics when the "
            "Accept header asks for it. With ISPMON_API_TOKEN set it needs a token, like every read."
        ),
    ),
)
