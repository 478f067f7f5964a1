"""``/sessions/`` and ``/usage/top``: accounting sessions and the heaviest customers."""

from __future__ import annotations

from aiohttp import web

from ispmon.api.errors import json_response, list_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses_views import ENFORCEMENT, SESSION, TOP_USAGE
from ispmon.api.spec import Call, Param, PathParam, Route
from ispmon.store.usage_enforcements import ENFORCEMENTS
from ispmon.store.usage_sessions import ACTIVE_SESSIONS

TAG = "sessions"
SESSION_ID = PathParam("session_id", "integer", "Session id")


async def active_sessions(call: Call) -> web.Response:
    return await list_page(call, ACTIVE_SESSIONS, call.services.usage.active_sessions)


async def get_session(call: Call) -> web.Response:
    return json_response(await call.services.usage.get_session(call.path["session_id"]))


async def enforcements(call: Call) -> web.Response:
    return await list_page(call, ENFORCEMENTS, call.services.usage.enforcements)


async def top_usage(call: Call) -> web.Response:
    return list_response(await call.services.usage.top_usage(**call.query))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/sessions/active",
        active_sessions,
        "activeSessions",
        "Open accounting sessions",
        TAG,
        query=list_params(ACTIVE_SESSIONS),
        response="page",
        response_schema=SESSION,
    ),
    Route(
        "GET",
        "/sessions/{session_id}",
        get_session,
        "getSession",
        "One accounting session",
        TAG,
        path_params=(SESSION_ID,),
        response_schema=SESSION,
    ),
    Route(
        "GET",
        "/usage/top",
        top_usage,
        "topUsage",
        "Customers by octets used in a window",
        TAG,
        query=(
            Param("since", "date-time", "Start of the window (default: 24 h before until)"),
            Param("until", "date-time", "End of the window, exclusive (default: now)"),
            Param("limit", "integer", "How many customers", default=10, minimum=1, maximum=1000),
        ),
        response="list",
        response_schema=TOP_USAGE,
    ),
    Route(
        "GET",
        "/enforcements/",
        enforcements,
        "listEnforcements",
        "The quota enforcement audit trail (each action written before it was sent), newest first",
        "customers",
        query=list_params(ENFORCEMENTS),
        response="page",
        response_schema=ENFORCEMENT,
        also_without_slash=True,
    ),
)
