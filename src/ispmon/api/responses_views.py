"""JSON schemas of the computed answers (status, summaries, polls, interfaces, events, latency,
sessions).

The companion of `api.responses` (the stored resources): these bodies are built by hand in the
services, so each schema names the function it describes and takes its field lists from the
constants those functions use (`METRIC_FIELDS`, `SMOKE_PERCENTILES`, the enums), and
tests/integration/api/test_api_documented.py validates a real answer of each route against the
document, so a field that drifts fails there.
"""

from __future__ import annotations

from typing import Any, get_args

from ispmon.api.responses import DATE_TIME, STATUS, nullable, obj
from ispmon.availability.outages import Phase
from ispmon.models import ErrorKind, Severity
from ispmon.network.counters import NoSample
from ispmon.network.events import DEVICE_REACHABLE, DEVICE_UNREACHABLE, INTERFACE_DOWN, INTERFACE_UP
from ispmon.network.latency import SMOKE_PERCENTILES
from ispmon.store.interfaces import METRIC_FIELDS
from ispmon.store.usage_enforcements import STATES as ENFORCEMENT_STATES
from ispmon.usage.customers import Policy

_TEXT: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_NUMBER: dict[str, Any] = {"type": "number"}
_ID: dict[str, Any] = {"type": "integer", "minimum": 1}
_SEVERITY: dict[str, Any] = {"type": "string", "enum": [s.value for s in Severity]}
_ERROR_KIND = nullable({"type": "string", "enum": [k.value for k in ErrorKind]})


def _counts(keys: list[str] | None = None) -> dict[str, Any]:
    """A {name: count} map (only the names seen appear), names from `keys` when they are known."""
    schema: dict[str, Any] = {"type": "object", "additionalProperties": _COUNT}
    if keys is not None:
        schema["propertyNames"] = {"enum": keys}
    return schema


# -- /services/{id}/status: `AvailabilityService.get_status` ----------------------------------------
# The last check: from the monitor's snapshot (`ProbeResult.as_dict`, with attempts and details), or
# without a monitor from the newest stored row (`HistoryRepo.latest`, without them).
_LAST_CHECK = obj(
    {
        "checked_at": DATE_TIME,
        "status": STATUS,
        "response_time_ms": nullable(_NUMBER),
        "error_kind": _ERROR_KIND,
        "error": nullable(_TEXT),
    },
    {"attempts": _COUNT, "details": {"type": "object"}},
    additionalProperties=False,
)
SERVICE_STATUS = obj(
    {
        "endpoint_id": _TEXT,
        "name": _TEXT,
        "is_active": {"type": "boolean"},
        "status": STATUS,
        # `_outage_brief`
        "open_outage": nullable(
            obj(
                {
                    "id": _ID,
                    "started_at": DATE_TIME,
                    "severity": _SEVERITY,
                    "status": STATUS,
                    "error": nullable(_TEXT),
                },
                additionalProperties=False,
            )
        ),
        # `_stats_dict`
        "last_24h": obj(
            {
                "checks": _COUNT,
                "up": _COUNT,
                "degraded": _COUNT,
                "down": _COUNT,
                "unknown": _COUNT,
                "uptime_percent": nullable({"type": "number", "minimum": 0, "maximum": 100}),
                "avg_response_time_ms": nullable(_NUMBER),
                "p95_response_time_ms": nullable(_NUMBER),
            },
            additionalProperties=False,
        ),
    },
    # `Monitor.snapshot` (the daemon's API only), and the last check when there is one.
    {
        "phase": {"type": "string", "enum": [p.value for p in Phase]},
        "consecutive_failures": _COUNT,
        "consecutive_successes": _COUNT,
        "flapping": {"type": "boolean"},
        "outage_id": nullable(_ID),
        "last_check": _LAST_CHECK,
        # `LocationVerdicts.statuses`: each location's newest check (several agents, agents/).
        "locations": {
            "type": "array",
            "items": obj(
                {
                    "location": _TEXT,
                    "live": {"type": "boolean"},
                    "status": STATUS,
                    "reason": nullable(_TEXT),
                    "checked_at": nullable(DATE_TIME),
                    "agent_id": nullable(_TEXT),
                    "down_since": nullable(DATE_TIME),
                },
                additionalProperties=False,
            ),
        },
        "checked_by": nullable(_TEXT),
    },
    title="ServiceStatus",
    additionalProperties=False,
)

# -- /outages/summary and /alerts/summary: `OutageRepo.summary`, `AlertRepo.summary` ----------------
_WINDOW = {"window_hours": {"type": "number", "exclusiveMinimum": 0}, "since": DATE_TIME}
OUTAGE_SUMMARY = obj(
    {
        "active": _COUNT,
        "started": _COUNT,
        "resolved": _COUNT,
        "mean_duration_seconds": nullable(_NUMBER),
        "max_duration_seconds": nullable(_NUMBER),
        "by_severity": _counts([s.value for s in Severity]),
        "top_endpoints": {
            "type": "array",
            "maxItems": 10,
            "items": obj(
                {"endpoint_id": _TEXT, "n": {"type": "integer", "minimum": 1}, "downtime_seconds": _NUMBER},
                additionalProperties=False,
            ),
        },
        **_WINDOW,
    },
    title="OutageSummary",
    additionalProperties=False,
)
ALERT_SUMMARY = obj(
    {
        "firing": _COUNT,
        "acknowledged": _COUNT,
        "suppressed_now": _COUNT,
        "started": _COUNT,
        "resolved": _COUNT,
        "mean_seconds_to_acknowledge": nullable(_NUMBER),
        "by_severity": _counts([s.value for s in Severity]),
        "notifications": _counts(["pending", "sent", "dead", "cancelled"]),
        **_WINDOW,
    },
    # Only when the alert engine runs (the daemon's API): is the monitor cut off from the network?
    {"monitor_isolated": {"type": "boolean"}},
    title="AlertSummary",
    additionalProperties=False,
)

# -- interfaces: `store.interfaces.sample_dict`, `services.network.interface_dict` ------------------
_OCTETS = {"in_octets", "out_octets"}
SAMPLE = obj(
    {
        "at": DATE_TIME,
        "interval_s": _NUMBER,
        **{f: nullable({"type": "integer", "minimum": 0} if f in _OCTETS else _NUMBER) for f in METRIC_FIELDS},
    },
    title="InterfaceSample",
    additionalProperties=False,
)
INTERFACE = obj(
    {
        "id": _ID,
        "device_id": _TEXT,
        "if_index": _INT,
        "name": _TEXT,
        "descr": _TEXT,
        "alias": _TEXT,
        "if_type": nullable(_INT),
        "speed_bps": nullable(_COUNT),
        "admin_status": nullable(_TEXT),
        "oper_status": nullable(_TEXT),
        "last_change": nullable(_INT),
        "polled": {"type": "boolean"},
        "present": {"type": "boolean"},
        "last_sample": nullable(SAMPLE),
    },
    title="Interface",
    additionalProperties=False,
)

# -- /network/events, /devices/{id}/events: `NetworkService.list_events` (network_events rows) ------
# `data` by `network.events`: interface_down (name, oper_status), interface_up (those, admin_status,
# duration_s), device_unreachable (error), device_reachable (duration_s).
NETWORK_EVENT = obj(
    {
        "id": _ID,
        "device_id": _TEXT,
        "interface_id": nullable(_ID),
        "at": DATE_TIME,
        "kind": {"type": "string", "enum": [INTERFACE_DOWN, INTERFACE_UP, DEVICE_UNREACHABLE, DEVICE_REACHABLE]},
        "data": obj(
            {},
            {
                "name": _TEXT,
                "oper_status": nullable(_TEXT),
                "admin_status": nullable(_TEXT),
                "duration_s": {"type": "number", "minimum": 0},
                "error": _TEXT,
            },
            additionalProperties=False,
        ),
    },
    title="NetworkEvent",
    additionalProperties=False,
)

# -- /devices/{id}/poll: `Poller._poll` (unreachable) or `Poller._record` ---------------------------
_POLLED_INTERFACE = obj(
    {
        "id": _ID,
        "name": _TEXT,
        "if_index": _INT,
        "admin_status": nullable(_TEXT),
        "oper_status": nullable(_TEXT),
        "counters": nullable({"type": "object", "additionalProperties": _COUNT}),
        "rates": nullable(SAMPLE),
        "no_sample": nullable({"type": "string", "enum": [r.value for r in NoSample]}),
    },
    additionalProperties=False,
)
DEVICE_POLL = {
    "title": "DevicePoll",
    "oneOf": [
        obj(
            {
                "device_id": _TEXT,
                "reachable": {"const": True},
                "polled_at": DATE_TIME,
                "sys_uptime": nullable(_COUNT),
                "counters": {"type": "string", "enum": ["64-bit", "32-bit"]},
                "discovered": {"type": "boolean", "description": "This poll walked the interfaces again"},
                "interfaces": {"type": "array", "items": _POLLED_INTERFACE},
            },
            additionalProperties=False,
        ),
        obj(
            {
                "device_id": _TEXT,
                "reachable": {"const": False},
                "error": _TEXT,
                "error_kind": {"type": "string", "enum": ["timeout", "auth", "agent", "error"]},
                "interfaces": {"type": "array", "maxItems": 0},
            },
            additionalProperties=False,
        ),
    ],
}

# -- /network/summary: `NetworkService.summary` -------------------------------------------------------
NETWORK_SUMMARY = obj(
    {
        "devices": obj(
            {"total": _COUNT, "up": _COUNT, "unreachable": _COUNT, "unknown": _COUNT}, additionalProperties=False
        ),
        "interfaces_down": {
            "type": "array",
            "items": obj(
                {"id": _ID, "device_id": _TEXT, "name": _TEXT, "admin_status": _TEXT, "oper_status": _TEXT},
                additionalProperties=False,
            ),
        },
        "top_utilised": {
            "type": "array",
            "items": obj(
                {
                    "id": _ID,
                    "device_id": _TEXT,
                    "name": _TEXT,
                    "utilisation_pct": {"type": "number", "description": "max(in, out) of the last sample"},
                    "last_sample": SAMPLE,
                },
                additionalProperties=False,
            ),
        },
        "generated_at": DATE_TIME,
    },
    title="NetworkSummary",
    additionalProperties=False,
)

# -- /network/latency/{id}: `MetricsService.latency`, `network.latency._step` ------------------------
_MS = nullable(_NUMBER)
LATENCY = obj(
    {
        "endpoint_id": _TEXT,
        "since": DATE_TIME,
        "until": DATE_TIME,
        "step": {"type": "number", "minimum": 1, "description": "Seconds"},
        "steps": {
            "type": "array",
            "items": obj(
                {
                    "start": DATE_TIME,
                    "end": DATE_TIME,
                    "checks": _COUNT,
                    "packets_sent": _COUNT,
                    "packets_received": _COUNT,
                    "loss_percent": nullable({"type": "number", "minimum": 0, "maximum": 100}),
                    "median_ms": _MS,
                    "min_ms": _MS,
                    "max_ms": _MS,
                    "smoke_ms": nullable(
                        obj({f"p{p}": _NUMBER for p in SMOKE_PERCENTILES}, additionalProperties=False)
                    ),
                },
                additionalProperties=False,
            ),
        },
    },
    title="Latency",
    additionalProperties=False,
)

# -- sessions: `services.usage.session_dict` (radius_sessions, by its SQL types), `top_usage` ------
SESSION = obj(
    {
        "id": _ID,
        "nas_id": _TEXT,
        "acct_session_id": _TEXT,
        "customer_id": nullable(_TEXT),
        "username": nullable(_TEXT),
        "framed_ip": nullable({"type": "string", "description": "An IPv4 or IPv6 address"}),
        "calling_station_id": nullable(_TEXT),
        "state": {"type": "string", "enum": ["active", "closed"]},
        "started_at": DATE_TIME,
        "last_activity_at": DATE_TIME,
        "closed_at": nullable(DATE_TIME),
        "duration_seconds": _COUNT,
        "bytes_in": _COUNT,
        "bytes_out": _COUNT,
        "terminate_cause": nullable(_TEXT),
        "interim_interval": nullable(_INT),
        "records": _COUNT,
    },
    title="Session",
    additionalProperties=False,
)
# -- enforcements: `services.usage._enforcement_dict` (the enforcements table, by its SQL types) --------
ENFORCEMENT = obj(
    {
        "id": _ID,
        "customer_id": _TEXT,
        "period_start": DATE_TIME,
        "threshold": _INT,
        # A customer's policy, or `lift` (the CoA at the period's reset that lifts a restriction).
        "action": {"type": "string", "enum": [*get_args(Policy), "lift"]},
        "target": _TEXT,
        "nas_id": nullable(_TEXT),
        "session_key": nullable(_TEXT),
        "idempotency_key": _TEXT,
        "state": {"type": "string", "enum": list(ENFORCEMENT_STATES)},
        "attempts": _COUNT,
        "detail": nullable(_TEXT),
        "created_at": DATE_TIME,
        "updated_at": DATE_TIME,
    },
    title="EnforcementAction",
    additionalProperties=False,
)
TOP_USAGE = obj(
    {"customer_id": _TEXT, "bytes_in": _COUNT, "bytes_out": _COUNT, "bytes_total": _COUNT},
    title="CustomerUsageTotal",
    additionalProperties=False,
)
