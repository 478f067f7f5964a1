"""``/services/``: monitored endpoints, on-demand checks, status, history and the status summary.

Thin handlers over `AvailabilityService`; validation of definitions happens in `EndpointSpec`.
"""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.listing import filter_params, list_page_json, list_params
from ispmon.api.responses import CHECK_RESULT, ENDPOINT, HISTORY, STATUS_SUMMARY
from ispmon.api.responses_views import SERVICE_STATUS
from ispmon.api.routing import check_time_range
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.availability.endpoints import EndpointSpec
from ispmon.store.endpoints import ENDPOINT_LIST
from ispmon.store.history import HISTORY_LIST

TAG = "services"
ENDPOINT_ID = PathParam("endpoint_id", "slug", "Endpoint id (a slug)")
# EndpointSpec's before-validator derives these when absent (id from name, protocol from the URL
# scheme, the timing fields from SERVICE_CHECK_*), so a client need not send them.
ENDPOINT_BODY = Body(
    "EndpointSpec",
    EndpointSpec,
    filled=frozenset({"id", "protocol", "check_interval", "timeout", "retries"}),
)
ENDPOINT_UPDATE = Body("EndpointUpdate", EndpointSpec, partial=True)


async def list_services(call: Call) -> web.Response:
    # Items come encoded from the service's cache (services/public_cache.py): a page is joined, not
    # built and encoded row by row; the body is the one `list_page` would make from to_dict().
    return await list_page_json(call, ENDPOINT_LIST, call.services.availability.list_endpoints_json)


async def create_service(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.availability.create_endpoint(call.body)
    return json_response(item.to_dict(), status=201, headers={"Location": f"/services/{item.id}"})


async def get_service(call: Call) -> web.Response:
    return json_response((await call.services.availability.get_endpoint(call.path["endpoint_id"])).to_dict())


async def update_service(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.availability.update_endpoint(call.path["endpoint_id"], call.body)
    return json_response(item.to_dict())


async def delete_service(call: Call) -> web.Response:
    await call.services.availability.delete_endpoint(call.path["endpoint_id"])
    return web.Response(status=204)


async def check_service(call: Call) -> web.Response:
    result = await call.services.availability.check_service(call.path["endpoint_id"])
    return json_response(result.to_dict())


async def service_status(call: Call) -> web.Response:
    return json_response(await call.services.availability.get_status(call.path["endpoint_id"]))


async def service_history(call: Call) -> web.Response:
    query = call.query
    check_time_range(query)
    result = await call.services.availability.get_history(call.path["endpoint_id"], **query)
    return json_response(result)


async def status_summary(call: Call) -> web.Response:
    return json_response(await call.services.availability.status_summary())


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/services/",
        list_services,
        "listServices",
        "List endpoints",
        TAG,
        query=list_params(ENDPOINT_LIST),
        response="page",
        response_schema=ENDPOINT,
        also_without_slash=True,
    ),
    Route(
        "POST",
        "/services/",
        create_service,
        "createService",
        "Create an endpoint",
        TAG,
        body=ENDPOINT_BODY,
        status=201,
        errors=(409,),
        response_schema=ENDPOINT,
        also_without_slash=True,
    ),
    # Static before dynamic: /services/status/summary has two segments, so {endpoint_id} (one
    # segment) could not match it anyway, but the order documents the intent.
    Route(
        "GET",
        "/services/status/summary",
        status_summary,
        "statusSummary",
        "Status of all endpoints",
        TAG,
        response_schema=STATUS_SUMMARY,
    ),
    Route(
        "GET",
        "/services/{endpoint_id}",
        get_service,
        "getService",
        "Get an endpoint",
        TAG,
        path_params=(ENDPOINT_ID,),
        response_schema=ENDPOINT,
    ),
    Route(
        "PUT",
        "/services/{endpoint_id}",
        update_service,
        "updateService",
        "Update an endpoint (partial: given fields replace stored ones)",
        TAG,
        path_params=(ENDPOINT_ID,),
        body=ENDPOINT_UPDATE,
        errors=(409,),
        response_schema=ENDPOINT,
    ),
    Route(
        "DELETE",
        "/services/{endpoint_id}",
        delete_service,
        "deleteService",
        "Delete an endpoint",
        TAG,
        path_params=(ENDPOINT_ID,),
        status=204,
        errors=(409,),
        response="none",
    ),
    Route(
        "POST",
        "/services/{endpoint_id}/check",
        check_service,
        "checkService",
        "Run one check now and record it",
        TAG,
        path_params=(ENDPOINT_ID,),
        response_schema=CHECK_RESULT,
        waits_on_target=True,
    ),
    Route(
        "GET",
        "/services/{endpoint_id}/status",
        service_status,
        "serviceStatus",
        "Current status, open outage and last 24 h",
        TAG,
        path_params=(ENDPOINT_ID,),
        response_schema=SERVICE_STATUS,
    ),
    Route(
        "GET",
        "/services/{endpoint_id}/history",
        service_history,
        "serviceHistory",
        "Check results, newest first, paged by cursor",
        TAG,
        path_params=(ENDPOINT_ID,),
        # Its own `cursor` (next_cursor, "<iso>~<id>") predates `after`; clients page with it, so it stays.
        query=(
            *filter_params(HISTORY_LIST),
            Param("limit", "integer", "Page size", default=100, minimum=1, maximum=1000),
            Param("cursor", "cursor", "next_cursor of the previous page (<iso>~<id>)"),
        ),
        response_schema=HISTORY,
    ),
)
