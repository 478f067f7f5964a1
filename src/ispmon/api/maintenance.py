"""``/maintenance/``: maintenance windows, one-off and recurring (see `ispmon.availability.maintenance`).

Thin handlers over `MaintenanceService`; windows are validated by `MaintenanceWindowSpec`.
"""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response, list_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import MAINTENANCE_WINDOW
from ispmon.api.spec import Body, Call, PathParam, Route
from ispmon.availability.maintenance import WINDOW_ID_PATTERN, MaintenanceWindowSpec
from ispmon.store.maintenance import MAINTENANCE_LIST

TAG = "maintenance"
WINDOW_ID = PathParam(
    "window_id", "slug", "Maintenance window id (a slug other than 'active')", pattern=WINDOW_ID_PATTERN
)


async def list_windows(call: Call) -> web.Response:
    return await list_page(call, MAINTENANCE_LIST, call.services.maintenance.list_windows)


async def active_windows(call: Call) -> web.Response:
    items = await call.services.maintenance.active_windows()
    return list_response(items)


async def create_window(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.maintenance.create_window(call.body)
    return json_response(item, status=201, headers={"Location": f"/maintenance/{item['id']}"})


async def get_window(call: Call) -> web.Response:
    return json_response(await call.services.maintenance.get_window(call.path["window_id"]))


async def update_window(call: Call) -> web.Response:
    assert call.body is not None
    return json_response(await call.services.maintenance.update_window(call.path["window_id"], call.body))


async def delete_window(call: Call) -> web.Response:
    await call.services.maintenance.delete_window(call.path["window_id"])
    return web.Response(status=204)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/maintenance/",
        list_windows,
        "listMaintenanceWindows",
        "List maintenance windows",
        TAG,
        query=list_params(MAINTENANCE_LIST),
        response="page",
        also_without_slash=True,
        response_schema=MAINTENANCE_WINDOW,
    ),
    Route(
        "POST",
        "/maintenance/",
        create_window,
        "createMaintenanceWindow",
        "Create a maintenance window",
        TAG,
        # The id is generated (mw-xxxxxxxx) when absent.
        body=Body("MaintenanceWindowSpec", MaintenanceWindowSpec, filled=frozenset({"id"})),
        status=201,
        errors=(409,),
        also_without_slash=True,
        response_schema=MAINTENANCE_WINDOW,
    ),
    Route(
        "GET",
        "/maintenance/active",
        active_windows,
        "activeMaintenanceWindows",
        "Windows in effect now",
        TAG,
        response="list",
        response_schema=MAINTENANCE_WINDOW,
    ),
    Route(
        "GET",
        "/maintenance/{window_id}",
        get_window,
        "getMaintenanceWindow",
        "Get a maintenance window",
        TAG,
        path_params=(WINDOW_ID,),
        response_schema=MAINTENANCE_WINDOW,
    ),
    Route(
        "PUT",
        "/maintenance/{window_id}",
        update_window,
        "updateMaintenanceWindow",
        "Update a maintenance window (partial: given fields replace stored ones)",
        TAG,
        path_params=(WINDOW_ID,),
        body=Body("MaintenanceWindowUpdate", MaintenanceWindowSpec, partial=True),
        errors=(409,),
        response_schema=MAINTENANCE_WINDOW,
    ),
    Route(
        "DELETE",
        "/maintenance/{window_id}",
        delete_window,
        "deleteMaintenanceWindow",
        "Delete a maintenance window",
        TAG,
        path_params=(WINDOW_ID,),
        status=204,
        errors=(409,),
        response="none",
    ),
)
