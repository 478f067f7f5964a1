"""List routes from a `ListSpec` (see `ispmon.store.listing`): their query parameters and their page.

`list_params(spec)` is a route's ``query``: one parameter per filter, then ``limit``, ``offset`` and
``after``, so `routing.parse_query` validates them and `openapi` documents them from the same
declaration the SQL is built from. `list_page` answers ``{"items", "count", "limit", "offset",
"next_after"}``: ``next_after`` is null on the last page, otherwise the ``after`` of the next one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from ispmon.api.errors import list_response, list_response_json
from ispmon.api.problem import ApiError
from ispmon.api.routing import check_time_range
from ispmon.api.spec import BIGINT_MAX, Call, Param, ParamType
from ispmon.store.listing import ListSpec

MAX_OFFSET = 2**31 - 1
AFTER_DESCRIPTION = (
    "Keyset paging: the next_after of the previous page (opaque). The page starts after that row in "
    "this list's order, so rows added meanwhile neither repeat nor are skipped. Not with offset"
)
_PARAM_TYPE: dict[str, ParamType] = {
    "text": "string",
    "enum": "string",
    "boolean": "boolean",
    "integer": "integer",
    "date-time": "date-time",
    "inet": "string",
}


def parse_network(raw: str) -> str:
    """An address or prefix (host bits allowed: 10.1.2.3/24 means 10.1.2.0/24), as PostgreSQL's inet."""
    try:
        return str(ipaddress.ip_network(raw.strip(), strict=False))
    except ValueError:
        raise ValueError(f"must be an IP address or prefix, got {raw[:64]!r}") from None

ListFetch = Callable[..., Awaitable[Sequence[Any]]]
# A fetch whose rows come encoded already: (the row's last keyset value, its JSON item).
ListFetchJson = Callable[..., Awaitable[Sequence[tuple[Any, bytes]]]]


def filter_params(spec: ListSpec) -> tuple[Param, ...]:
    """One query parameter per filter of `spec` (path-bound filters are not among them)."""
    return tuple(
        Param(
            f.param,
            _PARAM_TYPE[f.type],
            f.description,
            enum=f.choices or None,
            minimum=f.minimum,
            # Integer filters compare with bigint columns: a larger value would overflow the driver.
            maximum=BIGINT_MAX if f.type == "integer" else None,
            target=f.key if f.key != f.param else None,
            parser=parse_network if f.type == "inet" else None,
        )
        for f in spec.filters
        if not f.path
    )


def list_params(spec: ListSpec) -> tuple[Param, ...]:
    """The query parameters of `spec`'s route: its filters, then limit, offset and after."""
    return (
        *filter_params(spec),
        Param("limit", "integer", "Page size", default=spec.default_limit, minimum=1, maximum=spec.max_limit),
        Param("offset", "integer", "Rows to skip", default=0, minimum=0, maximum=MAX_OFFSET),
        Param("after", "string", AFTER_DESCRIPTION, parser=spec.parse_cursor),
    )


def _page_query(call: Call) -> dict[str, Any]:
    query = call.query
    check_time_range(query)
    if query["after"] is not None and query["offset"]:
        # Both say where the page starts; silently preferring one would hide a client's bug.
        raise ApiError.on(400, "after", "cannot be combined with offset (use one way of paging)")
    return query


async def list_page(call: Call, spec: ListSpec, fetch: ListFetch) -> web.Response:
    """Call `fetch` (a service's list method) with the checked query and answer one page."""
    query = _page_query(call)
    limit = query["limit"]
    # One row more than asked says whether another page follows, so the last page has no next_after
    # and a client never fetches an empty page to find out.
    rows = await fetch(**{**query, "limit": limit + 1})
    items, next_after = spec.page(rows, limit)
    return list_response(items, limit=limit, offset=query["offset"], next_after=next_after)


async def list_page_json(call: Call, spec: ListSpec, fetch: ListFetchJson) -> web.Response:
    """`list_page` for a `spec` keyed by one column, whose `fetch` gives (key, item JSON) pairs:
    the page is joined from the items' bytes, and is the body `list_page` would answer."""
    (key,) = spec.keyset
    query = _page_query(call)
    limit = query["limit"]
    rows = await fetch(**{**query, "limit": limit + 1})
    next_after = spec.cursor({key.field: rows[limit - 1][0]}) if len(rows) > limit else None
    items = [item for _, item in rows[:limit]]
    return list_response_json(items, limit=limit, offset=query["offset"], next_after=next_after)
