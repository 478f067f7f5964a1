"""Bearer-token authentication: who may read, who may write.

With ``ISPMON_API_TOKEN`` set, every request needs ``Authorization: Bearer <token>``: the write
token may do anything, the optional read-only ``ISPMON_API_READ_TOKEN`` (for dashboards) may GET
and HEAD, and anything else with it is a 403 naming its scope. `PUBLIC_PATHS` stay open: health
checks, the OpenAPI description, the public status page and the dashboard's own files (`/`,
`/static/`: no data; the page asks for a token to read any), none of which holds a secret. The
Prometheus scrape (``/metrics``) is a read like any other: it names every endpoint, device and
interface, which ``GET /endpoints`` only shows with a token, so a scraper sends the read token.
What any read returns has its secrets redacted anyway (`EndpointSpec.public_dict`), so a
dashboard token shows no more than the definitions' shape. Comparisons are constant-time and
no token is ever logged. Without ``ISPMON_API_TOKEN`` this middleware is not installed and the
API only listens on loopback (`start_api`).
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from ispmon.api.errors import Handler
from ispmon.api.problem import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Open without a token: probes of the monitor itself, the status page and the dashboard's files.
PUBLIC_PATHS = frozenset({"/livez", "/readyz", "/openapi.json", "/status", "/"})
# /static/: the dashboard's JS and CSS (no data; the page asks for a token to read any).
PUBLIC_PREFIXES = ("/status/", "/static/")


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _matches(presented: bytes, expected: bytes | None) -> bool:
    return expected is not None and hmac.compare_digest(presented, expected)


def auth_middleware(token: str, read_token: str | None = None) -> Middleware:
    """`token` may do everything; `read_token` (if any) may only read."""
    write_key = token.encode("utf-8")
    read_key = read_token.encode("utf-8") if read_token else None

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request.path):
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError.on(
                401,
                "Authorization",
                "a bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="ispmon"'},
            )
        # surrogatepass: a header with odd bytes must compare unequal, not raise.
        key = presented.strip().encode("utf-8", "surrogatepass")
        # Both comparisons always run, so the time taken does not tell which token was close.
        is_writer, is_reader = _matches(key, write_key), _matches(key, read_key)
        if not (is_writer or is_reader):
            raise ApiError.on(
                401,
                "Authorization",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="ispmon", error="invalid_token"'},
            )
        if not is_writer and request.method not in SAFE_METHODS:
            raise ApiError.on(
                403,
                "Authorization",
                f"the token's scope is read (ISPMON_API_READ_TOKEN): it cannot {request.method}; "
                "use ISPMON_API_TOKEN to change anything",
                headers={
                    "WWW-Authenticate": 'Bearer realm="ispmon", error="insufficient_scope", scope="write"'
                },
            )
        return await handler(request)

    return require_token
