"""The web package's wiring: its JSON routes (declared with the API's vocabulary, so they are in
/openapi.json) and `register`, which adds the HTML pages, the static files and the event stream."""

from __future__ import annotations

from aiohttp import web

from ispmon.api.keys import SERVICES
from ispmon.api.spec import Route
from ispmon.web import api_dashboard, api_views, pages, status, stream
from ispmon.web.dashboard_data import GridCache
from ispmon.web.hub import EventHub

ROUTES: tuple[Route, ...] = (*api_dashboard.ROUTES, *api_views.ROUTES)
# What `register` adds beside the JSON routes: pages and a stream, not in the OpenAPI document
# (it describes the JSON API; these answer HTML, files and text/event-stream).
PAGES = frozenset(
    {("GET", "/"), ("GET", "/static/{path}"), ("GET", "/status"), ("GET", "/status/{group}"), ("GET", stream.PATH)}
)
# Routes that hold no admission place (api/admission.py): the event stream waits on the hub for hours.
UNBOUNDED = frozenset({("GET", stream.PATH)})


def register(app: web.Application) -> None:
    """Pages and streams that are not JSON routes (they have no place in the OpenAPI document)."""
    status.register(app)
    pages.register(app)
    app[api_dashboard.GRID_CACHE] = GridCache()
    hub = EventHub()
    monitor = app[SERVICES].monitor
    if monitor is not None:
        monitor.watchers.append(hub.observe)

        async def unwatch(_: web.Application) -> None:
            if hub.observe in monitor.watchers:
                monitor.watchers.remove(hub.observe)

        app.on_cleanup.append(unwatch)
    stream.register(app, hub)
