"""``/agents/``: the agents sharing this database, each with its location, what it owns and does,
and whether it is live (heartbeat within AGENT_DEAD_AFTER)."""

from __future__ import annotations

from aiohttp import web

from ispmon.agents.store import list_agents
from ispmon.api.errors import list_response
from ispmon.api.responses import DATE_TIME, nullable, obj
from ispmon.api.spec import Call, Route

TAG = "agents"

_TEXT = {"type": "string"}
AGENT = obj(
    {
        "id": _TEXT,
        "location": _TEXT,
        "version": _TEXT,
        "host": _TEXT,
        "pid": {"type": "integer"},
        "api_url": nullable(_TEXT),
        "state": {"type": "string", "enum": ["live", "dead"]},
        "joined_at": DATE_TIME,
        "last_heartbeat": DATE_TIME,
        "stopped_at": nullable(DATE_TIME),
        "endpoints_owned": {"type": "integer", "minimum": 0},
        "checks_per_s": nullable({"type": "number"}),
        "scheduler_lag_p99_ms": nullable({"type": "number"}),
        "checks_shed": {"type": "integer", "minimum": 0},
        "singletons": {"type": "array", "items": _TEXT},
    },
    title="Agent",
    additionalProperties=False,
)


async def get_agents(call: Call) -> web.Response:
    settings = call.services.settings
    return list_response(await list_agents(call.services.db.pool, settings.agent_dead_after))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/agents/",
        get_agents,
        "listAgents",
        "The agents sharing this database: location, endpoints owned, checks/s, lag, heartbeat, state",
        TAG,
        response="list",
        response_schema=AGENT,
        also_without_slash=True,
    ),
)
