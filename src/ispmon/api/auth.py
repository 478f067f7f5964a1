"""Bearer-token authentication for writes.

When ``ISPMON_API_TOKEN`` is set, every method except GET/HEAD/OPTIONS needs
``Authorization: Bearer <token>``; reads stay open so dashboards and scrapers need no secret
(nothing the API returns is a secret: tokens and passwords are never part of a response). The
comparison is constant-time and the token is never logged.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from ispmon.api.errors import Handler
from ispmon.api.problem import ApiError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def auth_middleware(token: str) -> Middleware:
    expected = token.encode("utf-8")

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in SAFE_METHODS:
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ApiError.on(
                401,
                "Authorization",
                "a bearer token is required for this method (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": 'Bearer realm="ispmon"'},
            )
        # surrogatepass: a header with odd bytes must compare unequal, not raise.
        if not hmac.compare_digest(presented.strip().encode("utf-8", "surrogatepass"), expected):
            raise ApiError.on(
                401,
                "Authorization",
                "the bearer token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="ispmon", error="invalid_token"'},
            )
        return await handler(request)

    return require_token
