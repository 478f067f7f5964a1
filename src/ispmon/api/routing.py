"""The one wrapper that turns a `Route` (see `spec`) into an aiohttp handler.

`bind` parses and checks the path, the query and the body before the handler runs, so handlers
only call a service and shape the answer. Query rules: unknown or repeated parameters are a 400
naming them (a typo such as ``?activ=true`` must not silently return everything).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ispmon.api.keys import SERVICES
from ispmon.api.problem import ApiError
from ispmon.api.spec import Body, Call, Param, Route, text_problem
from ispmon.services.errors import InvalidInput, NotFoundError


def parse_query(request: web.Request, params: tuple[Param, ...]) -> dict[str, Any]:
    known = {p.name: p for p in params}
    out = {p.target or p.name: p.default for p in params}
    for key in dict.fromkeys(request.query.keys()):
        param = known.get(key)
        if param is None:
            accepted = ", ".join(known) or "none"
            raise ApiError.on(400, key[:100], f"unknown query parameter (accepted: {accepted})")
        values = request.query.getall(key)
        if len(values) > 1:
            raise ApiError.on(400, key, "given more than once")
        try:
            out[param.target or param.name] = param.convert(values[0])
        except ValueError as exc:
            raise ApiError.on(400, key, str(exc)) from None
    return out


def check_time_range(query: dict[str, Any]) -> None:
    """A 400 naming `until` when a list route's `since`/`until` window is empty or reversed."""
    since, until = query.get("since"), query.get("until")
    if since is not None and until is not None and until <= since:
        raise ApiError.on(400, "until", "must be after since")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_text(value: Any, where: str) -> None:
    """Find strings PostgreSQL cannot store, and name the field they are in."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise InvalidInput([{"field": where or "body", "message": problem}])
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, where or "body")
            _check_text(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_text(item, f"{where}[{index}]")


async def read_json_object(request: web.Request, body: Body) -> dict[str, Any] | None:
    """The body as a dict; None when an optional body is absent. Errors name ``body``."""
    if not request.body_exists:
        if body.required:
            raise ApiError.on(400, "body", "a JSON object is required")
        return None
    ctype = request.content_type
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise ApiError.on(415, "body", f"Content-Type must be application/json, got {ctype[:100]!r}")
    try:
        if body.max_bytes is None:
            raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge -> 413 JSON
        else:
            raw = await request.clone(client_max_size=body.max_bytes).read()
    except web.HTTPRequestEntityTooLarge:
        if body.max_bytes is None:
            raise
        raise ApiError.on(413, "body", f"larger than this route's {body.max_bytes}-byte limit") from None
    except web.RequestPayloadError:
        # aiohttp decodes Content-Encoding and chunked framing while reading: a body that is not
        # what its headers say (gzip that is not gzip) is the client's error, not ours. The rest of
        # the body cannot be read either: end the stream so that aiohttp does not try to drain it
        # after the answer (it would raise again and reset the connection before the client reads),
        # and close the connection, whose framing is lost.
        request.content.feed_eof()
        raise ApiError.on(
            400,
            "body",
            "could not be read: it does not match its Content-Encoding or chunked framing",
            headers={"Connection": "close"},
        ) from None
    if not raw.strip():
        if body.required:
            raise ApiError.on(400, "body", "a JSON object is required")
        return None
    try:
        # RFC 8259: JSON exchanged between systems is UTF-8, whatever the charset parameter says.
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ApiError.on(400, "body", "is not valid UTF-8") from None
    except RecursionError:
        raise ApiError.on(400, "body", "is nested too deeply") from None
    except ValueError as exc:
        raise ApiError.on(400, "body", f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput(
            [{"field": "body", "message": f"must be a JSON object, not {type(data).__name__}"}]
        )
    _check_text(data, "")
    return data


def bind(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler for `route`: path, query and body checked in that order (404/400/4xx)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        path = {p.name: p.convert(request.match_info[p.name]) for p in route.path_params}
        query = parse_query(request, route.query)
        body = await read_json_object(request, route.body) if route.body is not None else None
        call = Call(request=request, services=request.app[SERVICES], path=path, query=query, body=body)
        try:
            return await route.handler(call)
        except NotFoundError as exc:
            # The thing not found is the one the path names; say which parameter that is.
            field_name = route.path_params[-1].name if route.path_params else "(request)"
            raise ApiError.on(404, field_name, exc.message) from None

    handle.__name__ = route.operation_id
    return handle
