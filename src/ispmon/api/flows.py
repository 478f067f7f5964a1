"""``/flows/``: declared exporters, top talkers and series; ``/customers/{id}/traffic``.

Thin handlers over `FlowService`; every query parameter is declared (and so validated, 400
naming it) in the routes below.
"""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses_flows import (
    CUSTOMER_TRAFFIC,
    DECLARED_EXPORTER,
    FLOW_EXPORTERS,
    FLOW_RECORD,
    FLOW_SERIES,
    FLOW_TOP,
)
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.flows.exporters import ExporterSpec
from ispmon.services.flows import SERIES_FILTERS, TOP_KEYS
from ispmon.store.flow_records import RECORD_LIST

TAG = "flows"
EXPORTER_ID = PathParam("exporter_id", "slug", "Exporter id (a slug)")
CUSTOMER_ID = PathParam("customer_id", "slug", "Customer id (a slug)")
WINDOW = (
    Param("since", "date-time", "Start of the window (default: 1 h before until)"),
    Param("until", "date-time", "End of the window, exclusive (default: now)"),
)
FILTERS = tuple(
    Param(name, "integer" if convert is int else "string", f"Only flows with this {name}")
    for name, (_column, convert) in SERIES_FILTERS.items()
)


async def list_exporters(call: Call) -> web.Response:
    return json_response(await call.services.flows.list_exporters())


async def add_exporter(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.flows.add_exporter(call.body)
    return json_response(item, status=201, headers={"Location": f"/flows/exporters/{item['id']}"})


async def delete_exporter(call: Call) -> web.Response:
    await call.services.flows.delete_exporter(call.path["exporter_id"])
    return web.Response(status=204)


async def top(call: Call) -> web.Response:
    return json_response(await call.services.flows.top(**call.query))


async def series(call: Call) -> web.Response:
    query = dict(call.query)
    raw = {name: query.pop(name, None) for name in SERIES_FILTERS}
    filters = {name: str(value) for name, value in raw.items() if value is not None}
    return json_response(await call.services.flows.series(filters=filters, **query))


async def list_records(call: Call) -> web.Response:
    return await list_page(call, RECORD_LIST, call.services.flows.list_records)


async def customer_traffic(call: Call) -> web.Response:
    return json_response(await call.services.flows.customer_traffic(call.path["customer_id"], **call.query))


ROUTES: tuple[Route, ...] = (
    Route("GET", "/flows/exporters", list_exporters, "listFlowExporters",
          "Declared flow exporters with packets, flows, templates, sequence gaps, last seen", TAG,
          response_schema=FLOW_EXPORTERS),
    Route("POST", "/flows/exporters", add_exporter, "createFlowExporter",
          "Declare (or replace) a flow exporter", TAG, body=Body("ExporterSpec", ExporterSpec), status=201,
          response_schema=DECLARED_EXPORTER),
    Route("DELETE", "/flows/exporters/{exporter_id}", delete_exporter, "deleteFlowExporter",
          "Forget a flow exporter (its packets are then dropped and counted)", TAG,
          path_params=(EXPORTER_ID,), status=204, response="none"),
    Route("GET", "/flows/top", top, "flowTop", "Top talkers, protocols, ports or interfaces by bytes", TAG,
          query=(*WINDOW,
                 Param("by", "string", "What to rank", default="dst", enum=TOP_KEYS),
                 Param("limit", "integer", "How many", default=10, minimum=1, maximum=1000)),
          response_schema=FLOW_TOP),
    Route("GET", "/flows/series", series, "flowSeries", "Bytes and packets per step", TAG,
          query=(*WINDOW, Param("step", "integer", "Step in seconds (a multiple of 60)", default=60,
                                minimum=60, maximum=86400), *FILTERS),
          response_schema=FLOW_SERIES),
    Route("GET", "/flows/records", list_records, "listFlowRecords",
          "Raw flow records, newest first (kept only for FLOW_RAW_HOURS; empty when that is 0)", TAG,
          query=list_params(RECORD_LIST), response="page", response_schema=FLOW_RECORD),
    Route("GET", "/customers/{customer_id}/traffic", customer_traffic, "customerTraffic",
          "A customer's download and upload bytes and packets from flows, with protocol and peer mix", "customers",
          path_params=(CUSTOMER_ID,), query=WINDOW, response_schema=CUSTOMER_TRAFFIC),
)  # fmt: skip
