"""``/nas/``: the NAS clients allowed to send accounting (their secrets are write-only)."""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import NAS
from ispmon.api.spec import Body, Call, PathParam, Route
from ispmon.store.usage_nas import NAS_LIST
from ispmon.usage.nas import NasSpec

TAG = "nas"
NAS_ID = PathParam("nas_id", "slug", "NAS id (a slug)")


async def list_nas(call: Call) -> web.Response:
    return await list_page(call, NAS_LIST, call.services.usage.list_nas)


async def create_nas(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.usage.create_nas(call.body)
    return json_response(item, status=201, headers={"Location": f"/nas/{item['id']}"})


async def delete_nas(call: Call) -> web.Response:
    await call.services.usage.delete_nas(call.path["nas_id"])
    return web.Response(status=204)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/nas/",
        list_nas,
        "listNas",
        "List NAS clients (without their secrets)",
        TAG,
        query=list_params(NAS_LIST),
        response="page",
        also_without_slash=True,
        response_schema=NAS,
    ),
    Route(
        "POST",
        "/nas/",
        create_nas,
        "createNas",
        "Add a NAS client",
        TAG,
        body=Body("NasSpec", NasSpec, filled=frozenset({"id", "name"})),
        status=201,
        errors=(409,),
        also_without_slash=True,
        response_schema=NAS,
    ),
    Route(
        "DELETE",
        "/nas/{nas_id}",
        delete_nas,
        "deleteNas",
        "Remove a NAS client",
        TAG,
        path_params=(NAS_ID,),
        status=204,
        errors=(409,),
        response="none",
    ),
)
