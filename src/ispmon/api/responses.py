"""JSON schemas of success bodies, one per kind of resource, for `Route.response_schema`.

The OpenAPI document takes a route's 2xx schema from here (a list or page route's is the schema of
one item; `openapi` wraps it in the envelope `api.listing.list_page` answers). Where the handler
answers a pydantic model's dump, the schema is that model's own (`model_json_schema`), adjusted
only where the API changes the dump (redaction, per-protocol fields), so the two cannot drift; the
schemathesis run (tests/integration/api/test_schemathesis.py) validates every answer against them.
"""

from __future__ import annotations

import copy
from typing import Any

from ispmon.availability.endpoints import PROTOCOL_FIELDS, EndpointSpec
from ispmon.availability.maintenance import MaintenanceWindowSpec
from ispmon.models import ErrorKind, Status

REF = "#/components/schemas/{model}"
DATE_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
STATUS: dict[str, Any] = {"type": "string", "enum": [s.value for s in Status]}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An object whose `required` keys are always present and `optional` ones may be absent."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        **extra,
    }


def _endpoint() -> dict[str, Any]:
    """`EndpointView.to_dict`: `EndpointSpec.public_dict` plus bookkeeping. Fields of other
    protocols are left out of the answer, so they are not required; redaction may lengthen or
    replace a value (`[redacted]`), so the URL's and secrets' length bounds do not apply."""
    schema = copy.deepcopy(EndpointSpec.model_json_schema(mode="serialization", ref_template=REF))
    props = schema["properties"]
    for name in ("url", "body", "send", "send_hex"):
        for key in ("maxLength", "pattern"):
            props[name].pop(key, None)
            for option in props[name].get("anyOf", []):
                option.pop(key, None)
    props["send_hex"] = {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "Hex, or [redacted]"}
    props["source"] = {"type": "string", "enum": ["api", "config"]}
    props["created_at"] = DATE_TIME
    props["updated_at"] = DATE_TIME
    props["current_status"] = {**STATUS, "description": "The monitor's view; absent outside the daemon"}
    always = [name for name in props if name not in PROTOCOL_FIELDS and name != "current_status"]
    schema["required"] = always
    schema["title"] = "Endpoint"
    schema["additionalProperties"] = False
    return schema


ENDPOINT = _endpoint()

CHECK_RESULT = obj(
    {
        "checked_at": DATE_TIME,
        "status": STATUS,
        "response_time_ms": nullable({"type": "number"}),
        "error_kind": nullable({"type": "string", "enum": [k.value for k in ErrorKind]}),
        "error": nullable({"type": "string"}),
        "attempts": {"type": "integer", "minimum": 0},
        "details": {"type": "object"},
        "endpoint_id": {"type": "string"},
    },
    title="CheckResult",
    additionalProperties=False,
)

LIVEZ = obj({"status": {"const": "ok"}, "version": {"type": "string"}}, additionalProperties=False)

READYZ = obj(
    {
        "status": {"const": "ready"},
        "checks": obj(
            {"database": {"type": "string", "enum": ["ok", "failing"]}},
            {"probe_resources": {"type": "string", "enum": ["ok", "exhausted"]}},
            additionalProperties=False,
        ),
    },
    {"monitor": {"type": "object", "description": "The monitor's figures (scheduler, writer, resources)"}},
    additionalProperties=False,
)

OPENAPI = obj({"openapi": {"type": "string"}, "info": {"type": "object"}, "paths": {"type": "object"}})


def _model_dump(model: Any, title: str, extra: dict[str, Any]) -> dict[str, Any]:
    """`model.model_dump(mode="json")` plus `extra` keys: every field is in a dump, so all required."""
    schema = copy.deepcopy(model.model_json_schema(mode="serialization", ref_template=REF))
    schema["properties"] |= extra
    schema["required"] = list(schema["properties"])
    schema["title"] = title
    schema["additionalProperties"] = False
    return schema


OCCURRENCE = nullable(obj({"start": DATE_TIME, "end": DATE_TIME}, additionalProperties=False))
MAINTENANCE_WINDOW = _model_dump(
    MaintenanceWindowSpec,
    "MaintenanceWindow",
    {
        "source": {"type": "string", "enum": ["api", "config"]},
        "active": {"type": "boolean", "description": "An occurrence covers now"},
        "current_occurrence": OCCURRENCE,
        "next_occurrence": OCCURRENCE,
    },
)
