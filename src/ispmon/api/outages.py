"""``/outages/``: outage listing with filters, the active set, the summary, detail and manual resolve.

Thin handlers over `OutageService`. The resolve body is the one body validated here, by
`ResolveOutageBody`, because the service takes plain keyword arguments.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ispmon.api.errors import json_response, list_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import OUTAGE
from ispmon.api.responses_views import OUTAGE_SUMMARY
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.services.errors import InvalidInput
from ispmon.store.outages import OUTAGE_LIST

TAG = "outages"
OUTAGE_ID = PathParam("outage_id", "integer", "Outage id (a positive integer)")


class ResolveOutageBody(BaseModel):
    """Optional notes for a manual resolution (e.g. the endpoint is being decommissioned)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    notes: str | None = Field(default=None, max_length=4000, description="Why it was resolved by hand")
    resolved_by: str | None = Field(default=None, max_length=200, description="Who resolved it")


async def list_outages(call: Call) -> web.Response:
    return await list_page(call, OUTAGE_LIST, call.services.outages.list_outages)


async def active_outages(call: Call) -> web.Response:
    items = await call.services.outages.active_outages()
    return list_response(items)


async def outage_summary(call: Call) -> web.Response:
    return json_response(await call.services.outages.outage_summary(call.query["hours"]))


async def get_outage(call: Call) -> web.Response:
    return json_response(await call.services.outages.get_outage(call.path["outage_id"]))


async def resolve_outage(call: Call) -> web.Response:
    try:
        body = ResolveOutageBody.model_validate(call.body or {})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    resolved = await call.services.outages.resolve_outage(
        call.path["outage_id"], notes=body.notes, resolved_by=body.resolved_by
    )
    return json_response(resolved)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/outages/",
        list_outages,
        "listOutages",
        "List outages, newest first",
        TAG,
        query=list_params(OUTAGE_LIST),
        response="page",
        also_without_slash=True,
        response_schema=OUTAGE,
    ),
    Route(
        "GET",
        "/outages/active",
        active_outages,
        "activeOutages",
        "Open outages",
        TAG,
        response="list",
        response_schema=OUTAGE,
    ),
    Route(
        "GET",
        "/outages/summary",
        outage_summary,
        "outageSummary",
        "Counts, durations and top endpoints over the last hours",
        TAG,
        query=(
            # At most ten years: retention is far shorter, and huge values would overflow timedelta.
            Param(
                "hours",
                "number",
                "Window length in hours",
                default=24.0,
                minimum=0,
                maximum=87600,
                exclusive_minimum=True,
            ),
        ),
        response_schema=OUTAGE_SUMMARY,
    ),
    Route(
        "GET",
        "/outages/{outage_id}",
        get_outage,
        "getOutage",
        "An outage with its events",
        TAG,
        path_params=(OUTAGE_ID,),
        response_schema=OUTAGE,
    ),
    Route(
        "POST",
        "/outages/{outage_id}/resolve",
        resolve_outage,
        "resolveOutage",
        "Resolve an open outage by hand",
        TAG,
        path_params=(OUTAGE_ID,),
        body=Body("ResolveOutageBody", ResolveOutageBody, required=False),
        errors=(409,),
        response_schema=OUTAGE,
    ),
)
