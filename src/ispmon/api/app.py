"""The aiohttp application: the route table, its registration, and starting the listener.

`ROUTES` is the single table: `create_app` registers exactly those routes and the OpenAPI
document is generated from the same tuple, so the two cannot drift. Authentication: when
``ISPMON_API_TOKEN`` is set, every request but the public paths needs a bearer token (that one,
or the read-only ``ISPMON_API_READ_TOKEN`` for GETs; see `ispmon.api.auth`); without a token,
`start_api` only listens on loopback and the API is open there.
"""

from __future__ import annotations

import re

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from ispmon.api import (
    agents,
    alerts,
    customers,
    devices,
    flows,
    health,
    maintenance,
    metrics,
    nas,
    openapi,
    outages,
    prometheus,
    reports,
    search,
    services,
    sessions,
)
from ispmon.api.admission import ADMISSION, Admissions, admission_middleware, governed
from ispmon.api.auth import auth_middleware
from ispmon.api.errors import Handler, error_middleware
from ispmon.api.keys import MAX_BODY_BYTES, OPENAPI_CACHE, ROUTE_TABLE, SERVICES
from ispmon.api.listener import BoundedSite, ConnectionGuard
from ispmon.api.protocol import ApiRunner
from ispmon.api.routing import bind
from ispmon.api.spec import Route
from ispmon.errors import StartupError
from ispmon.services.context import AppServices
from ispmon.validation import is_loopback
from ispmon.web import routes as web_routes

ROUTES: tuple[Route, ...] = (
    *health.ROUTES,
    *agents.ROUTES,
    *services.ROUTES,
    *outages.ROUTES,
    *maintenance.ROUTES,
    *alerts.ROUTES,
    *devices.ROUTES,
    *customers.ROUTES,
    *flows.ROUTES,
    *nas.ROUTES,
    *sessions.ROUTES,
    *metrics.ROUTES,
    *reports.ROUTES,
    *prometheus.ROUTES,
    *search.ROUTES,
    *openapi.ROUTES,
    *web_routes.ROUTES,
)


def _shadowed_static_paths(routes: tuple[Route, ...]) -> dict[str, set[str]]:
    """Static paths that a parametrised path also matches (``/maintenance/active`` and
    ``/maintenance/{window_id}``), with the methods the static path declares."""
    patterns = [
        re.compile(re.sub(r"\{\w+\}", "[^/]+", route.path) + "$") for route in routes if route.path_params
    ]
    out: dict[str, set[str]] = {}
    for route in routes:
        for path in route.paths:
            if not route.path_params and any(p.match(path) for p in patterns):
                out.setdefault(path, set()).add(route.method)
    return out


def _not_allowed(allowed: set[str]) -> Handler:
    methods = sorted(allowed | ({"HEAD"} if "GET" in allowed else set()))

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, methods)

    return not_allowed


def create_app(services: AppServices, routes: tuple[Route, ...] = ROUTES) -> web.Application:
    settings = services.settings
    admission = Admissions.build(
        settings.api_max_concurrent_requests,
        settings.api_queue_timeout,
        frozenset((r.method, p) for r in routes if r.waits_on_target for p in r.paths) | web_routes.UNBOUNDED,
    )
    # Inside the error middleware (a 503 has the JSON error shape) and before authentication, so
    # a flood of requests with a wrong token is bounded like any other.
    middlewares: list[Middleware] = [error_middleware, admission_middleware(admission)]
    if settings.ispmon_api_token:
        # Inside the error middleware, so a 401 has the same JSON shape as every other error.
        middlewares.append(auth_middleware(settings.ispmon_api_token, settings.ispmon_api_read_token))
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[SERVICES] = services
    app[ADMISSION] = admission
    app.cleanup_ctx.append(governed)
    app[ROUTE_TABLE] = routes
    app[OPENAPI_CACHE] = openapi.build_document(routes)
    for route in routes:
        handler = bind(route)
        for path in route.paths:
            if route.method == "GET":
                # HEAD comes with every GET (aiohttp drops the body): monitors of the monitor use it.
                app.router.add_get(path, handler, allow_head=True)
            else:
                app.router.add_route(route.method, path, handler)
    # Without this, PUT /maintenance/active would fall through to PUT /maintenance/{window_id} and
    # answer for a window called "active"; the path is the list's, so other methods are a 405.
    for path, allowed in _shadowed_static_paths(routes).items():
        app.router.add_route(hdrs.METH_ANY, path, _not_allowed(allowed))
    web_routes.register(app)  # the dashboard's pages, static files and live updates (not JSON routes)
    return app


async def start_api(
    app: web.Application,
    host: str,
    port: int,
    token: str | None,
    *,
    max_connections: int = 4096,
    header_timeout: float = 10.0,
    keepalive_timeout: float = 30.0,
) -> tuple[web.AppRunner, str, int]:
    """Start listening; returns (runner, bound host, bound port). Port 0 picks a free port.

    Without a token anyone who can reach the port could create or delete endpoints, so a
    non-loopback `host` is refused. Settings already refuse that combination at load time (naming
    API_HOST); this is the same rule for a caller that builds its own app. What one client can
    hold is bounded (`ispmon.api.listener`): API_MAX_CONNECTIONS, API_HEADER_TIMEOUT,
    API_KEEPALIVE_TIMEOUT.
    """
    if not token and not is_loopback(host):
        raise StartupError(
            f"API_HOST: {host!r} is not a loopback address and ISPMON_API_TOKEN is not set "
            "(without a token anyone who can reach the port could change the configuration)"
        )
    # One access-log line per request is too much for a daemon that is polled all day; the error
    # middleware logs 5xx responses and unhandled exceptions instead.
    # ApiRunner: requests aiohttp's parser rejects get the JSON error shape too.
    runner = ApiRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = BoundedSite(
            runner, host, port, ConnectionGuard(max_connections, header_timeout), keepalive_timeout
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = site.bound
    return runner, bound_host, bound_port
