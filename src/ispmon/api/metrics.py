"""``/metrics/network``, ``/metrics/system`` (record and list samples) and ``/network/latency/{id}``.

Thin handlers over `MetricsService`; the bodies are validated there by the seed's record models
(`ispmon.network.metrics`), so the API and a Python caller refuse the same things the same way.
"""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import NETWORK_SAMPLE, SYSTEM_SAMPLE
from ispmon.api.responses_views import LATENCY
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.network.latency import MAX_STEPS
from ispmon.network.metrics import NetworkMetric, SystemMetric
from ispmon.services.metrics import MetricsService
from ispmon.store.metrics import NETWORK_LIST, SYSTEM_LIST

TAG = "metrics"
ENDPOINT_ID = PathParam("endpoint_id", "slug", "Endpoint id")


def _service(call: Call) -> MetricsService:
    return call.services.metrics or MetricsService(call.services.db)


async def record_network(call: Call) -> web.Response:
    return json_response(await _service(call).record_network_metric(call.body or {}), status=201)


async def record_system(call: Call) -> web.Response:
    return json_response(await _service(call).record_system_metric(call.body or {}), status=201)


async def list_network(call: Call) -> web.Response:
    return await list_page(call, NETWORK_LIST, _service(call).list_network_metrics)


async def list_system(call: Call) -> web.Response:
    return await list_page(call, SYSTEM_LIST, _service(call).list_system_metrics)


async def latency(call: Call) -> web.Response:
    query = call.query
    view = await _service(call).latency(
        call.path["endpoint_id"], since=query["since"], until=query["until"], step=query["step"]
    )
    return json_response(view)


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/metrics/network",
        record_network,
        "recordNetworkMetric",
        "Record one interface sample (percentages 0-100, latency in ms)",
        TAG,
        body=Body("NetworkMetric", NetworkMetric),
        status=201,
        response_schema=NETWORK_SAMPLE,
    ),
    Route(
        "GET",
        "/metrics/network",
        list_network,
        "listNetworkMetrics",
        "Interface samples, newest first",
        TAG,
        query=list_params(NETWORK_LIST),
        response="page",
        response_schema=NETWORK_SAMPLE,
    ),
    Route(
        "POST",
        "/metrics/system",
        record_system,
        "recordSystemMetric",
        "Record one host sample (percentages 0-100, 1-minute load average)",
        TAG,
        body=Body("SystemMetric", SystemMetric),
        status=201,
        response_schema=SYSTEM_SAMPLE,
    ),
    Route(
        "GET",
        "/metrics/system",
        list_system,
        "listSystemMetrics",
        "Host samples, newest first",
        TAG,
        query=list_params(SYSTEM_LIST),
        response="page",
        response_schema=SYSTEM_SAMPLE,
    ),
    Route(
        "GET",
        "/network/latency/{endpoint_id}",
        latency,
        "endpointLatency",
        "Smokeping-style latency: per step, median RTT, loss % and RTT percentiles over all packets",
        TAG,
        path_params=(ENDPOINT_ID,),
        query=(
            Param("since", "date-time", "Window start (default: until - 3 h; no offset: UTC)"),
            Param("until", "date-time", "Window end, exclusive (default: now; no offset: UTC)"),
            Param(
                "step",
                "number",
                f"Step length in seconds, at least 1 (default 300); at most {MAX_STEPS} steps per window",
                minimum=1,
                maximum=86400 * 366,
            ),
        ),
        response_schema=LATENCY,
    ),
)
