"""Response schemas of the Elasticsearch feed's routes (``/search/...``) and its /readyz figures."""

from __future__ import annotations

from typing import Any

from ispmon.api.responses import DATE_TIME, READYZ, nullable, obj
from ispmon.search.templates import FAMILIES

_FAMILY = obj(
    {
        "index_pattern": {"type": "string"},
        "lag_seconds": nullable({"type": "number", "minimum": 0}),
        "backlog": {
            "type": "integer",
            "minimum": 0,
            "description": "Rows waiting (an estimate, capped at 100,000)",
        },
        "sent": {"type": "integer", "minimum": 0},
        "dead_letters": {"type": "integer", "minimum": 0},
        "last_error": nullable({"type": "string"}),
        "last_error_at": nullable(DATE_TIME),
        "last_success_at": nullable(DATE_TIME),
    },
    additionalProperties=False,
)

_LOGS = obj(
    {name: {"type": "integer", "minimum": 0} for name in ("captured", "queued", "dropped", "written")},
    additionalProperties=False,
    description="System-log lines captured for <prefix>-system-logs-*: queued, dropped (queue full), written",
)

SEARCH_STATUS: dict[str, Any] = obj(
    {
        "enabled": {"type": "boolean", "description": "False when ELASTICSEARCH_URL is unset"},
        "state": {"type": "string", "enum": ["ok", "failing", "disabled"]},
        "error_kind": nullable({"type": "string"}),
        "interval_seconds": nullable({"type": "number"}),
        "last_round_at": nullable(DATE_TIME),
        "families": obj(
            {},
            {key: _FAMILY for key in FAMILIES},
            additionalProperties=False,
        ),
    },
    {
        "server_version": nullable({"type": "string"}),
        "setup_done": {"type": "boolean"},
        "syncing_here": {
            "type": "boolean",
            "description": "False on an agent that does not hold the singleton lease (another one syncs)",
        },
        "logs": nullable(_LOGS),
    },
    title="SearchStatus",
    additionalProperties=False,
)

DEAD_LETTER: dict[str, Any] = obj(
    {
        "id": {"type": "integer", "minimum": 1},
        "family": {"type": "string"},
        "index_name": {"type": "string"},
        "doc_id": {"type": "string"},
        "document": {"type": "object"},
        "status": {"type": "integer"},
        "error_type": nullable({"type": "string"}),
        "reason": {"type": "string"},
        "created_at": DATE_TIME,
        "retries": {"type": "integer", "minimum": 0},
        "last_retry_at": nullable(DATE_TIME),
    },
    title="SearchDeadLetter",
    additionalProperties=False,
)

RETRY_RESULT: dict[str, Any] = obj(
    {
        "id": {"type": "integer", "minimum": 1},
        "result": {"type": "string", "enum": ["indexed", "refused"]},
        "index": {"type": "string"},
        "doc_id": {"type": "string"},
        "reason": nullable({"type": "string"}),
    },
    title="SearchRetryResult",
    additionalProperties=False,
)

# /readyz with the feed's figures beside the monitor's and the API's (reported, never failed on:
# Elasticsearch being down does not make the monitor unready).
READYZ_WITH_SEARCH: dict[str, Any] = {
    **READYZ,
    "properties": {**READYZ["properties"], "search": SEARCH_STATUS},
}
