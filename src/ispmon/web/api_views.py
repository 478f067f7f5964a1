"""``/views/``: the dashboard's saved views, shared by everyone who opens the page.

Thin handlers over `ViewService`; bodies are validated by `ViewSpec` (a 422 naming the field), the
list is keyset-paged by id (`VIEW_LIST`).
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import DATE_TIME, REF
from ispmon.api.spec import Body, Call, PathParam, Route
from ispmon.web.view_spec import ViewSpec
from ispmon.web.views import VIEW_LIST, ViewService

TAG = "views"
VIEW_ID = PathParam("view_id", "slug", "View id (a slug)")


def _view_schema() -> dict[str, Any]:
    schema = copy.deepcopy(ViewSpec.model_json_schema(mode="serialization", ref_template=REF))
    schema["properties"] |= {"created_at": DATE_TIME, "updated_at": DATE_TIME}
    schema["required"] = list(schema["properties"])
    for definition in schema.get("$defs", {}).values():
        definition["required"] = list(definition["properties"])
        definition["additionalProperties"] = False
    schema["title"] = "View"
    schema["additionalProperties"] = False
    return schema


VIEW = _view_schema()


def _service(call: Call) -> ViewService:
    return ViewService(call.services.db.pool)


async def list_views(call: Call) -> web.Response:
    return await list_page(call, VIEW_LIST, _service(call).list_views)


async def create_view(call: Call) -> web.Response:
    assert call.body is not None
    item = await _service(call).create_view(call.body)
    return json_response(item, status=201, headers={"Location": f"/views/{item['id']}"})


async def get_view(call: Call) -> web.Response:
    return json_response(await _service(call).get_view(call.path["view_id"]))


async def update_view(call: Call) -> web.Response:
    assert call.body is not None
    return json_response(await _service(call).update_view(call.path["view_id"], call.body))


async def delete_view(call: Call) -> web.Response:
    await _service(call).delete_view(call.path["view_id"])
    return web.Response(status=204)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/views/",
        list_views,
        "listViews",
        "List the dashboard's saved views",
        TAG,
        query=list_params(VIEW_LIST),
        response="page",
        also_without_slash=True,
        response_schema=VIEW,
    ),
    Route(
        "POST",
        "/views/",
        create_view,
        "createView",
        "Save a view (a chart of series, filters, step and kind)",
        TAG,
        body=Body("ViewSpec", ViewSpec, filled=frozenset({"id"})),
        status=201,
        errors=(409,),
        also_without_slash=True,
        response_schema=VIEW,
    ),
    Route(
        "GET",
        "/views/{view_id}",
        get_view,
        "getView",
        "Get a saved view",
        TAG,
        path_params=(VIEW_ID,),
        response_schema=VIEW,
    ),
    Route(
        "PUT",
        "/views/{view_id}",
        update_view,
        "updateView",
        "Change a view (partial: given fields replace stored ones)",
        TAG,
        path_params=(VIEW_ID,),
        body=Body("ViewUpdate", ViewSpec, partial=True),
        response_schema=VIEW,
    ),
    Route(
        "DELETE",
        "/views/{view_id}",
        delete_view,
        "deleteView",
        "Delete a view",
        TAG,
        path_params=(VIEW_ID,),
        status=204,
        response="none",
    ),
)
