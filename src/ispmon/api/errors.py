"""Error responses: one JSON shape for every failure, and the middleware that produces it.

Every error body is ``{"error": "<kind>", "message": "<text naming the field>", "errors":
[{"field": ..., "message": ...}]}``, whether it comes from our own checks (`ApiError`), from the
service layer (`ServiceError`: 404 / 409 / 422), or from aiohttp itself (no such route, method not
allowed, body over ``client_max_size``), so a client parses one format. Anything unexpected is a
500 with a generic message; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from aiohttp import web

from ispmon.api.keys import MAX_BODY_BYTES, ROUTE_TABLE
from ispmon.api.problem import ApiError, public_field
from ispmon.services.errors import ServiceError

if TYPE_CHECKING:
    from ispmon.api.spec import Route

log = structlog.get_logger("ispmon.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

KINDS: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "invalid_input",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
    504: "timeout",
}


def _json_default(value: Any) -> Any:
    # PostgreSQL's numeric (e.g. EXTRACT(EPOCH ...) since PG 14) arrives as Decimal; JSON has numbers.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(data: Any) -> str:
    return json.dumps(data, default=_json_default, allow_nan=False)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def list_response(items: list[Any], **extra: Any) -> web.Response:
    """The envelope of every list route: {"items": [...], "count": n, ...paging}."""
    return json_response({"items": items, "count": len(items), **extra})


def list_response_json(items: list[bytes], **extra: Any) -> web.Response:
    """`list_response` for items that are JSON already: the same bytes, joined instead of encoded."""
    # dumps({"items": [...], "count": n, **extra}) is '{"items": [' + the items joined by ", " +
    # '], ' + dumps({"count": n, **extra}) without its opening brace.
    tail = dumps({"count": len(items), **extra})
    body = b'{"items": [' + b", ".join(items) + b"], " + tail[1:].encode()
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def error_response(
    status: int,
    message: str,
    errors: list[dict[str, str]],
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    body = {"error": KINDS.get(status, "error"), "message": message, "errors": errors}
    return json_response(body, status=status, headers=headers)


def _unmatched_field(path: str, routes: tuple[Route, ...]) -> str:
    """Name the path parameter a request under a known prefix got wrong (``/services/a/b``)."""
    best, best_len = "path", 0
    for route in routes:
        if not route.path_params:
            continue
        prefix = route.path.split("{", 1)[0]
        if path.startswith(prefix) and len(path) > len(prefix) and len(prefix) > best_len:
            best, best_len = route.path_params[0].name, len(prefix)
    return best


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
    if exc.status == 413:
        limit = MAX_BODY_BYTES
        return error_response(
            413,
            f"body: larger than the {limit}-byte limit",
            [{"field": "body", "message": f"larger than the {limit}-byte limit"}],
        )
    if exc.status == 404:
        field = _unmatched_field(request.path, request.app.get(ROUTE_TABLE, ()))
        if field == "path":
            message = f"no such resource: {request.path}"
        else:
            message = f"no route matches {request.path}; {field} must be one path segment"
        return error_response(404, f"{field}: {message}", [{"field": field, "message": message}])
    if exc.status == 405:
        allowed = headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
        return error_response(405, message, [{"field": "method", "message": message}], headers)
    message = exc.reason or "request failed"
    return error_response(exc.status, message, [{"field": "(request)", "message": message}], headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.message, exc.errors, exc.headers)
    except ServiceError as exc:
        errors = [{"field": public_field(e["field"]), "message": e["message"]} for e in exc.errors()]
        return error_response(exc.status, exc.message, errors)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects are responses, not errors
            raise
        response = _from_http_exception(request, exc)
    except Exception:
        # Access logs are off, so this is the one place a failed request is recorded.
        log.exception("api_unhandled_error", method=request.method, path=request.path)
        return error_response(
            500, "internal error; see the ispmon log", [{"field": "(request)", "message": "internal error"}]
        )
    if response.status >= 500:
        log.warning("api_server_error", method=request.method, path=request.path, status=response.status)
    return response
