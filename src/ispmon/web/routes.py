"""The web package's wiring: its JSON routes (declared with the API's vocabulary, so they are in
/openapi.json) and `register`, which adds the HTML pages, the static files and the event stream."""

from __future__ import annotations

from aiohttp import web

from ispmon.api.spec import Route
from ispmon.web import api_views, status

ROUTES: tuple[Route, ...] = (*api_views.ROUTES,)


def register(app: web.Application) -> None:
    """Pages and streams that are not JSON routes (they have no place in the OpenAPI document)."""
    status.register(app)
