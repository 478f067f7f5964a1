"""``/dashboard/*``: the thin JSON routes the dashboard needs beside the existing API (the health
grid in one request; checks by status over time for views)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from ispmon.api.errors import json_response
from ispmon.api.problem import ApiError
from ispmon.api.responses import DATE_TIME, STATUS, nullable, obj
from ispmon.api.routing import check_time_range
from ispmon.api.spec import Call, Param, Route
from ispmon.models import Protocol, Status
from ispmon.web.dashboard_data import MAX_BUCKETS, STEP_SECONDS, GridCache, checks_by_status

TAG = "dashboard"

GRID = obj(
    {
        "generated_at": DATE_TIME,
        "count": {"type": "integer", "minimum": 0},
        "endpoints": {
            "type": "array",
            "items": obj(
                {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "protocol": {"type": "string", "enum": [p.value for p in Protocol]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "status": STATUS,
                    "response_time_ms": nullable({"type": "number"}),
                },
                additionalProperties=False,
            ),
        },
    },
    title="DashboardGrid",
    additionalProperties=False,
)

CHECKS = obj(
    {
        "since": DATE_TIME,
        "until": DATE_TIME,
        "step_seconds": {"type": "integer", "minimum": 1},
        "buckets": {
            "type": "array",
            "items": obj(
                {
                    "start": DATE_TIME,
                    "counts": {
                        "type": "object",
                        "propertyNames": {"enum": [s.value for s in Status]},
                        "additionalProperties": {"type": "integer", "minimum": 1},
                    },
                },
                additionalProperties=False,
            ),
        },
    },
    title="ChecksByStatus",
    additionalProperties=False,
)


GRID_CACHE: web.AppKey[GridCache] = web.AppKey("ispmon_dashboard_grid")


async def get_grid(call: Call) -> web.Response:
    services = call.services
    cache = call.request.app[GRID_CACHE]  # set by web.routes.register
    count, endpoints = await cache.endpoints_json(services.db.pool, services.monitor)
    generated = json.dumps(datetime.now(UTC).isoformat())
    body = f'{{"generated_at":{generated},"count":{count},"endpoints":{endpoints}}}'
    response = web.Response(text=body, content_type="application/json")
    # 5,000 endpoints are ~500 KB of JSON and ~40 KB gzipped: the first load is mostly this.
    response.enable_compression()
    return response


async def get_checks(call: Call) -> web.Response:
    query: dict[str, Any] = dict(call.query)
    now = datetime.now(UTC)
    query["until"] = query["until"] or now
    query["since"] = query["since"] or query["until"] - timedelta(hours=24)
    check_time_range(query)
    step = STEP_SECONDS[query["step"]]
    if (query["until"] - query["since"]).total_seconds() / step > MAX_BUCKETS:
        raise ApiError.on(400, "step", f"too fine for this range: more than {MAX_BUCKETS} buckets")
    buckets = await checks_by_status(call.services.db.pool, **query)
    return json_response(
        {
            "since": query["since"].isoformat(),
            "until": query["until"].isoformat(),
            "step_seconds": step,
            "buckets": buckets,
        }
    )


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/dashboard/grid",
        get_grid,
        "dashboardGrid",
        "Every active endpoint with its current status, compact (the dashboard's health grid)",
        TAG,
        response_schema=GRID,
    ),
    Route(
        "GET",
        "/dashboard/checks",
        get_checks,
        "dashboardChecks",
        "Checks by status per step between since and until (default the last 24 h)",
        TAG,
        query=(
            Param("since", "date-time", "Start (default: until - 24 h)"),
            Param("until", "date-time", "End (default: now)"),
            Param("step", "string", "Bucket size", default="1h", enum=tuple(STEP_SECONDS)),
            Param("tag", "string", "Only endpoints with this tag"),
            Param("protocol", "string", "Only endpoints of this protocol", enum=tuple(p.value for p in Protocol)),
        ),
        response_schema=CHECKS,
    ),
)
