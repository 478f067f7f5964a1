"""``/livez`` and ``/readyz``: liveness (the process serves) and readiness (the database answers).

Kept apart on purpose: a supervisor restarts on a failed liveness check, while a failed readiness
check only means "do not send traffic now" — a database restart must not restart the daemon.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from ispmon import __version__
from ispmon.api.admission import ADMISSION
from ispmon.api.errors import json_response
from ispmon.api.responses import LIVEZ
from ispmon.api.responses_search import READYZ_WITH_SEARCH
from ispmon.api.search import search_status
from ispmon.api.spec import Call, Route

TAG = "health"
log = structlog.get_logger("ispmon.api")


async def livez(call: Call) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(call: Call) -> web.Response:
    try:
        ready = await call.services.db.ping()
        reason = "database did not answer SELECT 1 within its timeout" if not ready else None
    except Exception as exc:  # a closed pool or a driver bug is "not ready", not a 500
        ready, reason = False, f"database check failed: {type(exc).__name__}"
    # The monitor's own figures (scheduler lag, skipped checks, write backlog and drops): what an
    # operator needs to tell "the network is fine" from "the monitor is falling behind".
    monitor = call.services.monitor
    extra: dict[str, Any] = {"monitor": monitor.stats()} if monitor is not None else {}
    # The API's own load: requests in progress, waiting and shed (api/admission.py).
    extra["api"] = call.request.app[ADMISSION].stats()
    # The Elasticsearch feed's figures (lag, backlog, last error, dead letters per family).
    extra["search"] = search_status(call.request.app)
    checks = {"database": "ok" if ready else "failing"}
    if monitor is not None:
        # Reported, not failed on: checks that hit our own limits are UNKNOWN (counted under
        # monitor.resources), and the API still serves.
        checks["probe_resources"] = "exhausted" if extra["monitor"]["resources"]["exhausted"] else "ok"
    if ready:
        return json_response({"status": "ready", "checks": checks, **extra})
    return json_response({"status": "not_ready", "reason": reason, "checks": checks, **extra}, 503)


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/livez",
        livez,
        "livez",
        "Liveness: 200 while the process serves requests",
        TAG,
        response_schema=LIVEZ,
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "readyz",
        "Readiness: 200 when the database answers, else 503 with a reason",
        TAG,
        errors=(503,),
        response_schema=READYZ_WITH_SEARCH,
    ),
)
