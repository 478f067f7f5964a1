"""``GET /reports/{kind}``: a report over [since, until) as JSON, CSV (streamed from a server-side
cursor) or PDF, with a file name (Content-Disposition) that carries the kind and the period."""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.problem import ApiError
from ispmon.api.responses_reports import CSV_SCHEMA, PDF_SCHEMA, REPORT
from ispmon.api.spec import Call, Param, PathParam, Route
from ispmon.reports import query as report_query
from ispmon.reports.base import FILTERS, FORMATS, MEDIA_TYPES, file_name
from ispmon.reports.kinds import KINDS
from ispmon.services.reports import ReportService

TAG = "reports"
KIND = PathParam("kind", "slug", f"Report kind: {', '.join(KINDS)}")
_FILTER_TEXT = {
    "tag": "Only endpoints with this tag",
    "endpoint": "Only this endpoint id",
    "device": "Only this device id (network)",
    "customer": "Only this customer id (usage)",
}


async def get_report(call: Call) -> web.StreamResponse:
    try:
        kind = report_query.kind_named(call.path["kind"])
    except report_query.QueryError as exc:
        raise ApiError.on(404, "kind", exc.message) from None
    try:
        query = report_query.build(
            kind,
            call.query["since"],
            call.query["until"],
            {name: call.query[name] for name in FILTERS},
            top=call.query["top"],
            table=call.query["table"],
        )
    except report_query.QueryError as exc:
        raise ApiError.on(400, exc.field, exc.message) from None
    fmt = call.query["format"]
    service = ReportService(call.services.db)
    name = file_name(kind.name, query.since, query.until, fmt, query.table)
    disposition = f'{"inline" if fmt == "json" else "attachment"}; filename="{name}"'
    if fmt == "json":
        return json_response(await service.document(kind, query), headers={"Content-Disposition": disposition})
    if fmt == "pdf":
        body = await service.pdf(kind, query)
        return web.Response(body=body, content_type="application/pdf", headers={"Content-Disposition": disposition})
    resp = web.StreamResponse(headers={"Content-Type": MEDIA_TYPES["csv"], "Content-Disposition": disposition})
    await resp.prepare(call.request)
    async for chunk in service.csv(kind, query):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/reports/{kind}",
        get_report,
        "getReport",
        "A report over a period as JSON, CSV or PDF",
        TAG,
        path_params=(KIND,),
        query=(
            Param("since", "date-time", "Start of the period (taken to the hour); default 30 days before until"),
            Param("until", "date-time", "End of the period, exclusive (taken to the hour); default this hour"),
            Param("format", "string", "json, csv or pdf", default="json", enum=FORMATS),
            *(Param(name, "string", _FILTER_TEXT[name]) for name in FILTERS),
            Param("top", "integer", "Rows of a top-N report (usage)", default=100, minimum=1, maximum=10000),
            Param("table", "string", "CSV of a kind's other table instead of its rows (network: latency)"),
        ),
        response_schema=REPORT,
        media_types=(("text/csv", CSV_SCHEMA), ("application/pdf", PDF_SCHEMA)),
        description="Kinds: " + "; ".join(f"{k.name}: {k.description}" for k in KINDS.values())
        + ". A filter the kind does not take is a 400 naming it.",
    ),
)
