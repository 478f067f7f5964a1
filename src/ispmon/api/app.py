"""The aiohttp application: the route table, its registration, and starting the listener.

`ROUTES` is the single table: `create_app` registers exactly those routes and the OpenAPI
document is generated from the same tuple, so the two cannot drift. Authentication: when
``ISPMON_API_TOKEN`` is set, writes need ``Authorization: Bearer <token>`` and GETs stay open
(see `ispmon.api.auth`); without a token, `start_api` only listens on loopback.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from ispmon.api import alerts, health, maintenance, metrics, openapi, outages, services
from ispmon.api.auth import auth_middleware
from ispmon.api.errors import error_middleware
from ispmon.api.keys import MAX_BODY_BYTES, OPENAPI_CACHE, ROUTE_TABLE, SERVICES
from ispmon.api.routing import bind
from ispmon.api.spec import Route
from ispmon.errors import StartupError
from ispmon.services.context import AppServices
from ispmon.validation import is_loopback

ROUTES: tuple[Route, ...] = (
    *health.ROUTES,
    *services.ROUTES,
    *outages.ROUTES,
    *maintenance.ROUTES,
    *alerts.ROUTES,
    *metrics.ROUTES,
    *openapi.ROUTES,
)


def create_app(services: AppServices, routes: tuple[Route, ...] = ROUTES) -> web.Application:
    middlewares: list[Middleware] = [error_middleware]
    if services.settings.ispmon_api_token:
        # Inside the error middleware, so a 401 has the same JSON shape as every other error.
        middlewares.append(auth_middleware(services.settings.ispmon_api_token))
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
    app[SERVICES] = services
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
    return app


async def start_api(
    app: web.Application, host: str, port: int, token: str | None
) -> tuple[web.AppRunner, str, int]:
    """Start listening; returns (runner, bound host, bound port). Port 0 picks a free port.

    Without a token anyone who can reach the port could create or delete endpoints, so a
    non-loopback `host` is refused. Settings already refuse that combination at load time (naming
    API_HOST); this is the same rule for a caller that builds its own app.
    """
    if not token and not is_loopback(host):
        raise StartupError(
            f"API_HOST: {host!r} is not a loopback address and ISPMON_API_TOKEN is not set "
            "(without a token anyone who can reach the port could change the configuration)"
        )
    # One access-log line per request is too much for a daemon that is polled all day; the error
    # middleware logs 5xx responses and unhandled exceptions instead.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, str(bound_host), int(bound_port)
