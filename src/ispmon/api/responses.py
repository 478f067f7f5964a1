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

from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.rules import AlertRule
from ispmon.availability.endpoints import PROTOCOL_FIELDS, SLUG_RE, EndpointSpec
from ispmon.availability.maintenance import MaintenanceWindowSpec
from ispmon.models import ErrorKind, Severity, Status
from ispmon.network.devices import SECRET_FIELDS as DEVICE_SECRETS
from ispmon.network.devices import DeviceSpec
from ispmon.store.alerts import ALERT_COLUMNS
from ispmon.store.metrics import NETWORK_COLUMNS, SYSTEM_COLUMNS
from ispmon.store.outages import OUTAGE_COLUMNS
from ispmon.usage.customers import CustomerSpec

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
    {
        "monitor": {"type": "object", "description": "The monitor's figures (scheduler, writer, resources)"},
        "api": obj(
            {
                "max_concurrent_requests": {"type": "integer", "minimum": 1},
                "limit": {"type": "integer", "minimum": 1, "description": "Places allowed now"},
                "queue_timeout_s": {"type": "number", "exclusiveMinimum": 0},
                **{
                    name: {"type": "integer", "minimum": 0}
                    for name in ("in_progress", "queued", "max_queued", "admitted", "waited", "shed")
                },
            },
            description="The API's load: requests in a handler, waiting for a place, and shed with 503",
            additionalProperties=False,
        ),
    },
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

CHANNEL_VIEW = obj(
    {
        "name": {"type": "string"},
        "source": {"type": "string", "enum": ["api", "config"]},
        "urls": {
            "type": "array",
            "items": {"type": "string"},
            "description": "apprise's privacy form of each URL (secrets masked)",
        },
        "kinds": {"type": "array", "items": {"type": "string"}},
        "notification_type": {"type": "string"},
    },
    title="Channel",
    additionalProperties=False,
)
CHANNEL_TEST = obj(
    {
        "channel": {"type": "string"},
        "ok": {"type": "boolean"},
        "targets": {
            "type": "array",
            "items": obj(
                {
                    "url": {"type": "string"},
                    "kind": {"type": "string"},
                    "ok": {"type": "boolean"},
                    "error": nullable({"type": "string"}),
                },
                additionalProperties=False,
            ),
        },
    },
    additionalProperties=False,
)
# A rule as `AlertService._rule_dict` answers it; the default route (source "default") lists its
# channels as null when ALERT_NOTIFICATION_CHANNELS is empty, which the rule's own schema allows.
ALERT_RULE = _model_dump(
    AlertRule, "AlertRuleView", {"source": {"type": "string", "enum": ["api", "config", "default"]}}
)
# A body may not use the reserved id "default", but the default route is listed under it.
ALERT_RULE["properties"]["id"] = {"type": "string", "pattern": SLUG_RE.pattern, "description": "Slug id"}
ESCALATION_POLICY = _model_dump(
    EscalationPolicy, "EscalationPolicyView", {"source": {"type": "string", "enum": ["config"]}}
)


def _device() -> dict[str, Any]:
    """`services.network.device_dict`: `DeviceSpec.public_dict` (the stored definition: fields left
    at their default are absent; secrets `[redacted]`), bookkeeping and the last poll's state."""
    schema = copy.deepcopy(DeviceSpec.model_json_schema(mode="serialization", ref_template=REF))
    props = schema["properties"]
    for name in DEVICE_SECRETS:
        props[name] = {"type": "string", "description": "Always [redacted] when set"}
    props["source"] = {"type": "string", "enum": ["api", "config"]}
    props["created_at"] = DATE_TIME
    props["updated_at"] = DATE_TIME
    text = nullable({"type": "string"})
    props["state"] = obj(
        {
            "reachable": nullable({"type": "boolean"}),
            "last_error": text,
            "sys_name": text,
            "sys_descr": text,
            "sys_object_id": text,
            "sys_uptime": nullable({"type": "integer"}),
            "last_poll_at": nullable(DATE_TIME),
            "last_discovery_at": nullable(DATE_TIME),
        },
        additionalProperties=False,
    )
    schema["required"] = [*schema.get("required", []), "source", "created_at", "updated_at", "state"]
    schema["title"] = "Device"
    schema["additionalProperties"] = False
    return schema


DEVICE = _device()

# `CustomerService._dict`: the stored definition (a full `model_dump`) plus bookkeeping.
CUSTOMER = _model_dump(
    CustomerSpec,
    "Customer",
    {"source": {"type": "string", "enum": ["api", "config"]}, "created_at": DATE_TIME, "updated_at": DATE_TIME},
)
# `UsageService._nas_dict`: the RADIUS secret is never shown.
NAS = obj(
    {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "address": {"type": "string", "description": "An address or a prefix"},
        "coa_port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "source": {"type": "string", "enum": ["api", "config"]},
        "created_at": DATE_TIME,
    },
    title="Nas",
    additionalProperties=False,
)

# A metric sample as stored (`store.metrics`: "id" and the table's columns, by their SQL types).
_METRIC_COLUMN_TYPES: dict[str, dict[str, Any]] = {
    "recorded_at": DATE_TIME,
    "host": nullable({"type": "string"}),
    "interface": {"type": "string"},
}


def _metric(title: str, columns: tuple[str, ...]) -> dict[str, Any]:
    number = nullable({"type": "number"})
    props = {"id": {"type": "integer", "minimum": 1}} | {
        c: _METRIC_COLUMN_TYPES.get(c, number) for c in columns
    }
    return obj(props, title=title, additionalProperties=False)


NETWORK_SAMPLE = _metric("NetworkSample", NETWORK_COLUMNS)
SYSTEM_SAMPLE = _metric("SystemSample", SYSTEM_COLUMNS)
BULK_CUSTOMERS = obj(
    {"count": {"type": "integer"}, "created": {"type": "integer"}, "updated": {"type": "integer"}},
    additionalProperties=False,
)


def _outage() -> dict[str, Any]:
    """`services.outages.outage_dict`: the row's columns (`store.outages.OUTAGE_COLUMNS`, by their
    SQL types), `active`, and for a detail read its `events`."""
    text = nullable({"type": "string"})
    types: dict[str, dict[str, Any]] = {
        "id": {"type": "integer", "minimum": 1},
        "endpoint_id": {"type": "string"},
        "started_at": DATE_TIME,
        "declared_at": DATE_TIME,
        "resolved_at": nullable(DATE_TIME),
        "duration_seconds": nullable({"type": "number"}),
        "status": STATUS,
        "severity": {"type": "string", "enum": [s.value for s in Severity]},
        "error_kind": nullable({"type": "string", "enum": [k.value for k in ErrorKind]}),
        "failures": {"type": "integer"},
        "verified": {"type": "boolean"},
        "flapping": {"type": "boolean"},
        "resolution": nullable({"type": "string", "enum": ["auto", "manual"]}),
        "updated_at": DATE_TIME,
        # The agent that opened it, and for an endpoint confirmed from several locations, those
        # that saw it DOWN: [{"location", "agent_id", "down_since"}].
        "locations": nullable(
            {
                "type": "array",
                "items": obj(
                    {"location": {"type": "string"}, "agent_id": text, "down_since": nullable(DATE_TIME)},
                    additionalProperties=False,
                ),
            }
        ),
    }
    columns = [c.strip() for c in OUTAGE_COLUMNS.split(",")]
    required = {c: types.get(c, text) for c in columns} | {"active": {"type": "boolean"}}
    events = {
        "type": "array",
        "items": obj({"at": DATE_TIME, "kind": {"type": "string"}, "data": {}}, additionalProperties=False),
    }
    return obj(required, {"events": events}, title="Outage", additionalProperties=False)


OUTAGE = _outage()

# `services.alerts.notification_dict`: an outbox row, by the notifications table's SQL types.
_TEXT = {"type": "string"}
_INT = {"type": "integer"}
NOTIFICATION = obj(
    {
        "id": {"type": "integer", "minimum": 1},
        "alert_id": nullable(_INT),
        "outage_id": nullable(_INT),
        "endpoint_id": nullable(_TEXT),
        "alert_time": DATE_TIME,
        "notification_type": _TEXT,
        "recipients": {"type": "string", "description": "The channel's name (its URLs are never shown)"},
        "channel": _TEXT,
        "event": _TEXT,
        "step": _INT,
        "title": _TEXT,
        "message": _TEXT,
        "short_message": _TEXT,
        "delivered": {"type": "boolean"},
        "delivery_time": nullable(DATE_TIME),
        "state": {"type": "string", "enum": ["pending", "sent", "dead", "cancelled"]},
        "attempts": _INT,
        "next_attempt_at": nullable(DATE_TIME),
        "last_error": nullable(_TEXT),
    },
    title="Notification",
    additionalProperties=False,
)


def _alert() -> dict[str, Any]:
    """`services.alerts.alert_dict`: the row's columns (`store.alerts.ALERT_COLUMNS`, by their SQL
    types), `suppressed`, and for a detail read its `notifications`."""
    text = nullable(_TEXT)
    types: dict[str, dict[str, Any]] = {
        "id": {"type": "integer", "minimum": 1},
        "endpoint_id": _TEXT,
        "rule_id": _TEXT,
        "kind": {"type": "string", "enum": ["outage", "threshold"]},
        "outage_id": nullable(_INT),
        "severity": {"type": "string", "enum": [s.value for s in Severity]},
        "state": {"type": "string", "enum": ["firing", "acknowledged", "resolved"]},
        "title": _TEXT,
        "message": _TEXT,
        "details": {"type": "object"},
        "was_suppressed": {"type": "boolean"},
        "started_at": DATE_TIME,
        "notify_from": nullable(DATE_TIME),
        "last_step": _INT,
        "last_reminder": _INT,
        "last_notified_at": nullable(DATE_TIME),
        "acknowledged_at": nullable(DATE_TIME),
        "resolved_at": nullable(DATE_TIME),
        "created_at": DATE_TIME,
        "updated_at": DATE_TIME,
    }
    columns = [c.strip() for c in ALERT_COLUMNS.split(",")]
    required = {c: types.get(c, text) for c in columns} | {"suppressed": {"type": "boolean"}}
    notifications = {"type": "array", "items": {"$ref": REF.format(model="Notification")}}
    return obj(
        required,
        {"notifications": notifications},
        title="Alert",
        additionalProperties=False,
        **{"$defs": {"Notification": NOTIFICATION}},
    )


ALERT = _alert()

# `AvailabilityService.get_history`: its own cursor envelope (older than `api.listing`'s pages).
_HISTORY_ITEM = copy.deepcopy(CHECK_RESULT)
del _HISTORY_ITEM["properties"]["endpoint_id"], _HISTORY_ITEM["title"]
_HISTORY_ITEM["required"].remove("endpoint_id")
HISTORY = obj(
    {
        "endpoint_id": _TEXT,
        "items": {"type": "array", "items": _HISTORY_ITEM},
        "count": {"type": "integer", "minimum": 0},
        "next_cursor": nullable({"type": "string", "description": "Pass as ?cursor= for the next page"}),
    },
    additionalProperties=False,
)
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
# `AvailabilityService.status_summary`; statuses are the check statuses plus "inactive".
STATUS_SUMMARY = obj(
    {
        "total": {"type": "integer", "minimum": 0},
        "by_status": _COUNTS,
        "by_protocol": {"type": "object", "additionalProperties": _COUNTS},
        "not_up": {
            "type": "array",
            "items": obj({"endpoint_id": _TEXT, "name": _TEXT, "status": _TEXT}, additionalProperties=False),
        },
        "active_outages": {"type": "integer", "minimum": 0},
        "generated_at": DATE_TIME,
    },
    additionalProperties=False,
)
