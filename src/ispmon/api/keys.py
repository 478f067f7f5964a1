"""Application keys and limits shared by the API modules (kept apart so none imports another's guts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from ispmon.api.spec import Route
    from ispmon.services.context import AppServices

# A definition is a few hundred bytes; 64 KiB leaves room for an HTTP body check and long pattern
# lists while keeping a hostile client from making us buffer megabytes per request.
MAX_BODY_BYTES = 64 * 1024

SERVICES: web.AppKey[AppServices] = web.AppKey("ispmon_services")
ROUTE_TABLE: web.AppKey[tuple[Route, ...]] = web.AppKey("ispmon_route_table")
OPENAPI_CACHE: web.AppKey[dict[str, Any]] = web.AppKey("ispmon_openapi")
