"""``/openapi.json``: an OpenAPI 3.1 document generated from the route table that registers the routes.

Request bodies are the pydantic models' own JSON schemas (`model_json_schema`), so the document
and the validation are one definition. Error responses are derived from what a route declares:
query parameters can give 400, path ids 404, bodies 400/413/415/422, every route but the public
ones 401 and writes 403 (when a token is configured: `ispmon.api.auth`), and any request 414/431
(refused by the HTTP parser, see `api.protocol`). Path ids carry their slug pattern (minus reserved
ids such as ``active``) or bigint bounds, so a static path and a parametrised one never describe
the same URL. Collection routes are also served without the trailing slash; that alias is listed
under ``x-also-served-at`` instead of duplicating the operation.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from ispmon import __version__
from ispmon.api.admission import PRIORITY_PATHS
from ispmon.api.auth import is_public
from ispmon.api.errors import json_response
from ispmon.api.keys import MAX_BODY_BYTES, OPENAPI_CACHE
from ispmon.api.responses import OPENAPI
from ispmon.api.spec import BIGINT_MAX, Body, Call, Param, Route
from ispmon.availability.endpoints import SLUG_RE

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "message", "errors"],
    "properties": {
        "error": {"type": "string", "description": "The kind: bad_request, not_found, conflict, ..."},
        "message": {"type": "string", "description": "Human-readable, names the field"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

# The paging fields of a list route's answer (`api.listing.list_page`).
PAGE_PROPERTIES: dict[str, Any] = {
    "limit": {"type": "integer"},
    "offset": {"type": "integer"},
    "next_after": {
        "type": ["string", "null"],
        "description": "Pass as ?after= for the next page (keyset paging); null on the last page",
    },
}

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request: malformed JSON body or a bad query/path parameter (named in errors[].field)",
    401: "Missing or wrong bearer token (only when ISPMON_API_TOKEN is set)",
    403: "The read-only token (ISPMON_API_READ_TOKEN) cannot write",
    404: "No such resource (the path parameter is named in errors[].field)",
    409: "Conflict: the id exists, the resource comes from the config file, or it is already resolved",
    413: f"Body larger than {MAX_BODY_BYTES} bytes",
    414: "Request line (path and query) longer than the server accepts (errors[].field is url)",
    415: "Content-Type is not application/json",
    422: "The body is not a valid definition (every invalid field is listed)",
    431: "Header section larger than the server accepts (errors[].field is headers)",
    500: "Internal error (details are in the ispmon log, never in the response)",
    503: (
        "Busy: API_MAX_CONCURRENT_REQUESTS requests were in progress and this one waited "
        "API_QUEUE_TIMEOUT seconds for a place; retry after Retry-After seconds"
    ),
}
# /readyz's own 503 is its readiness answer, not the error shape.
NOT_READY = "Not ready (the reason is in the body)"


def _param_schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any]
    if param.type == "date-time":
        schema = {"type": "string", "format": "date-time"}
    elif param.type == "cursor":
        schema = {"type": "string", "pattern": "^.+~[0-9]+$"}
    else:
        schema = {"type": param.type}
    if param.minimum is not None:
        schema["exclusiveMinimum" if param.exclusive_minimum else "minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.enum is not None:
        schema["enum"] = list(param.enum)
    if param.default is not None:
        schema["default"] = param.default
    return schema


def _body_schema(body: Body, schemas: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(body.model.model_json_schema(ref_template=REF))
    schemas.update(schema.pop("$defs", {}))
    schema["title"] = body.name
    if body.partial:
        schema.pop("required", None)
        schema["description"] = f"Partial update: any subset of the fields of {body.model.__name__}."
    elif body.filled:
        required = [name for name in schema.get("required", []) if name not in body.filled]
        schema["required"] = required
    schemas[body.name] = schema
    return {"$ref": REF.format(model=body.name)}


def _error_codes(route: Route) -> list[int]:
    # 414 and 431 come from the HTTP parser (api.protocol), so any request can get them.
    codes = set(route.errors) | {414, 431, 500}
    if route.path not in PRIORITY_PATHS and not route.waits_on_target:  # never shed (api/admission.py)
        codes.add(503)
    if route.query or any(p.type == "integer" for p in route.path_params):
        codes.add(400)
    if route.path_params:
        codes.add(404)
    if not is_public(route.path):
        codes.add(401)
    if route.method not in SAFE_METHODS:
        codes.add(403)
    if route.body is not None:
        codes |= {400, 413, 415, 422}
    return sorted(codes)


def _declared(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    """The route's `response_schema`, with its pydantic `$defs` moved to the components and a
    titled schema referenced from there (so an item shared by several routes is listed once)."""
    if route.response_schema is None:
        return {"type": "object"}
    schema = copy.deepcopy(route.response_schema)
    schemas.update(schema.pop("$defs", {}))
    title = schema.get("title")
    if isinstance(title, str) and title.isidentifier():
        schemas[title] = schema
        return {"$ref": REF.format(model=title)}
    return schema


def _success(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    if route.response == "none":
        return {"description": "Done; no content"}
    declared = _declared(route, schemas)
    if route.response in ("list", "page"):
        schema: dict[str, Any] = {
            "type": "object",
            "required": ["items", "count"],
            "properties": {
                "items": {"type": "array", "items": declared},
                "count": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        }
        if route.response == "page":
            schema["required"] += ["limit", "offset", "next_after"]
            schema["properties"] |= PAGE_PROPERTIES
    else:
        schema = declared
    content = {"application/json": {"schema": schema}} if route.json_body else {}
    out: dict[str, Any] = {"description": "OK", "content": content}
    out["content"].update({media: {"schema": other} for media, other in route.media_types})
    if route.status == 201:
        out["description"] = "Created"
        out["headers"] = {
            "Location": {"description": "URL of the created resource", "schema": {"type": "string"}}
        }
    return out


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary, "tags": [route.tag]}
    if route.description:
        op["description"] = route.description
    params: list[dict[str, Any]] = [
        {
            "name": p.name,
            "in": "path",
            "required": True,
            "description": p.description,
            "schema": {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX}
            if p.type == "integer"
            else {"type": "string", "pattern": p.pattern or SLUG_RE.pattern},
        }
        for p in route.path_params
    ]
    names = {q.name for q in route.query}
    params += [
        {
            "name": q.name,
            "in": "query",
            "required": False,
            # JSON Schema cannot relate two parameters; `routing.check_time_range` answers 400.
            "description": f"{q.description}; must be after since (400 otherwise)"
            if q.name == "until" and "since" in names
            else q.description,
            "schema": _param_schema(q),
        }
        for q in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body.required,
            "content": {"application/json": {"schema": _body_schema(route.body, schemas)}},
        }
    responses: dict[str, Any] = {str(route.status): _success(route, schemas)}
    for code in _error_codes(route):
        if code == 503 and route.path in PRIORITY_PATHS:
            responses["503"] = {
                "description": NOT_READY,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        else:
            responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    op["responses"] = responses
    # Only health, this document and the status page stay open with a token configured.
    op["security"] = [] if is_public(route.path) else [{"bearerAuth": []}]
    if route.also_without_slash:
        op["x-also-served-at"] = [p for p in route.paths if p != route.path]
    return op


def build_document(routes: tuple[Route, ...]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas)
    responses = {
        f"E{code}": {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        for code, text in ERROR_DESCRIPTIONS.items()
    }
    responses["E503"]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
    }
    responses["E401"]["headers"] = {
        "WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ispmon",
            "version": __version__,
            "description": (
                "Availability monitoring for ISPs. When ISPMON_API_TOKEN is set, every request but "
                "/livez, /readyz, /openapi.json and the status page needs 'Authorization: "
                "Bearer <token>': that token, or the read-only ISPMON_API_READ_TOKEN for GET/HEAD "
                "(a write with it is a 403). Every GET also answers HEAD. Date-times are ISO 8601; "
                "a value without an offset is UTC."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


async def openapi_json(call: Call) -> web.Response:
    # Built by create_app from the same table it registered (an app is frozen once it serves).
    return json_response(call.request.app[OPENAPI_CACHE])


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/openapi.json",
        openapi_json,
        "openapi",
        "This document (OpenAPI 3.1)",
        "meta",
        response_schema=OPENAPI,
    ),
)
