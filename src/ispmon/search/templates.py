"""Elasticsearch index templates, their mappings and ILM policies, for every index family.

Pure data: nothing here talks to a cluster (`search/setup.py` puts these). Each family's fields
are declared once, as dotted paths with a type (`FIELDS`); the nested ``properties`` mappings, the
composable templates and the flat field lists (what Kibana's saved objects are checked against)
are all derived from that table.

Field names: the seed's own names (``service_id``, ``status``, ``response_time``...) BESIDE the ECS
names Kibana and its Uptime app read (``@timestamp``, ``monitor.*``, ``summary.*``, ``url.full``,
``error.*``, ``observer.*``, ``service.name``, ``tags``; ``event.*`` and ``log.level`` for logs).

Type choices: identifiers, statuses, kinds and tags are ``keyword`` (exact filters, terms
aggregations); human names are ``keyword`` with a ``text`` sub-field ``<name>.text`` (aggregate
on the keyword, full-text search on the sub-field); free text (error messages, log messages,
notes) is ``text`` with a bounded ``keyword`` sub-field for "top errors" tables; addresses that
are always addresses are ``ip``; the observer's location is a ``geo_point``.

ILM: indices are daily and named by the document's own timestamp (a resend must land in the same
index to overwrite its document), so there is no rollover alias; the policies force-merge an index
once its day is over (it is then only read) and delete it after the family's retention.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

DEFAULT_PREFIX = "isp"

# Shorthand type specs; every field gets one of these.
KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
NAME: dict[str, Any] = {"type": "keyword", "ignore_above": 1024, "fields": {"text": {"type": "text"}}}
TEXT: dict[str, Any] = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
DATE: dict[str, Any] = {"type": "date"}
LONG: dict[str, Any] = {"type": "long"}
INTEGER: dict[str, Any] = {"type": "integer"}
DOUBLE: dict[str, Any] = {"type": "double"}
FLOAT: dict[str, Any] = {"type": "float"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
IP: dict[str, Any] = {"type": "ip"}
GEO: dict[str, Any] = {"type": "geo_point"}
DATE_RANGE: dict[str, Any] = {"type": "date_range"}
FLATTENED: dict[str, Any] = {"type": "flattened", "ignore_above": 1024}

# Fields every family carries (a component template of its own).
COMMON: dict[str, dict[str, Any]] = {
    "@timestamp": DATE,
    "tags": KEYWORD,
    "observer.hostname": KEYWORD,
    "observer.geo.name": KEYWORD,
    "observer.geo.location": GEO,
    "service.name": KEYWORD,
    "event.dataset": KEYWORD,
    "event.kind": KEYWORD,
    "event.ingested": DATE,
    "ispmon.family": KEYWORD,
    "ispmon.row_id": KEYWORD,
}


@dataclass(frozen=True)
class Family:
    key: str  # settings / cursor / status name
    index: str  # the part after the prefix: "<prefix>-<index>-YYYY.MM.DD"
    daily: bool  # False: one index without a date (maintenance windows)
    fields: dict[str, dict[str, Any]]
    retention_days: int  # default ILM delete age
    description: str


SERVICE_STATUS = Family(
    key="service_status",
    index="service-status",
    daily=True,
    retention_days=30,
    description="every check result (status_history) with its endpoint's name, protocol, URL and tags",
    fields={
        # The seed's names.
        "service_id": KEYWORD,
        "service_name": NAME,
        "service_type": KEYWORD,
        "status": KEYWORD,
        "response_time": FLOAT,  # milliseconds
        "error_message": TEXT,
        "error_kind": KEYWORD,
        "checked_at": DATE,
        "attempts": INTEGER,
        "criticality": KEYWORD,
        # ECS / Uptime.
        "monitor.id": KEYWORD,
        "monitor.name": NAME,
        "monitor.type": KEYWORD,
        "monitor.status": KEYWORD,  # "up" / "down" (Uptime's vocabulary)
        "monitor.duration.us": LONG,
        "monitor.check_group": KEYWORD,
        "monitor.timespan": DATE_RANGE,
        "monitor.ip": IP,
        "summary.up": INTEGER,
        "summary.down": INTEGER,
        "url.full": KEYWORD,
        "url.domain": KEYWORD,
        "url.port": INTEGER,
        "url.scheme": KEYWORD,
        "error.message": TEXT,
        "error.type": KEYWORD,
        "http.response.status_code": INTEGER,
    },
)

SERVICE_OUTAGE = Family(
    key="service_outage",
    index="service-outage",
    daily=True,
    retention_days=365,
    description="outages, re-sent as the same document when they change (escalated, resolved)",
    fields={
        "outage_id": KEYWORD,
        "service_id": KEYWORD,
        "service_name": NAME,
        "service_type": KEYWORD,
        "status": KEYWORD,  # open / resolved ...
        "severity": KEYWORD,
        "started_at": DATE,
        "declared_at": DATE,
        "resolved_at": DATE,
        "duration_seconds": DOUBLE,
        "error_kind": KEYWORD,
        "error_message": TEXT,
        "failures": INTEGER,
        "verified": BOOLEAN,
        "flapping": BOOLEAN,
        "resolution": KEYWORD,
        "resolution_notes": TEXT,
        "resolved_by": KEYWORD,
        "active": BOOLEAN,
        "updated_at": DATE,
        "criticality": KEYWORD,
        "monitor.id": KEYWORD,
        "monitor.name": NAME,
        "monitor.type": KEYWORD,
        "url.full": KEYWORD,
        "error.message": TEXT,
        "error.type": KEYWORD,
        "event.start": DATE,
        "event.end": DATE,
        "event.duration": LONG,  # nanoseconds (ECS)
        "event.severity": INTEGER,
        "event.outcome": KEYWORD,
    },
)

NETWORK_METRICS = Family(
    key="network_metrics",
    index="network-metrics",
    daily=True,
    retention_days=30,
    description="SNMP interface rates (interface_metrics with interface and device) and metrics reported "
    "through MetricsService / POST /metrics/network (network_metrics)",
    fields={
        # The seed's network_metrics names.
        "interface": KEYWORD,
        "host": KEYWORD,
        "bandwidth_usage": DOUBLE,  # percent
        "packet_loss": DOUBLE,  # percent
        "latency": DOUBLE,  # ms
        "recorded_at": DATE,
        "source": KEYWORD,  # "snmp" (interface_metrics) or "reported" (network_metrics)
        # SNMP interface rows.
        "device.id": KEYWORD,
        "device.name": NAME,
        "device.address": KEYWORD,  # a host name or an address
        "device.ip": IP,
        "interface_id": KEYWORD,
        "if.index": INTEGER,
        "if.name": NAME,
        "if.alias": NAME,
        "if.descr": TEXT,
        "if.speed_bps": LONG,
        "interval_s": FLOAT,
        "in_bps": DOUBLE,
        "out_bps": DOUBLE,
        "in_pps": DOUBLE,
        "out_pps": DOUBLE,
        "in_util_pct": FLOAT,
        "out_util_pct": FLOAT,
        "util_pct": FLOAT,  # the larger of the two directions
        "in_errors_ps": FLOAT,
        "out_errors_ps": FLOAT,
        "errors_ps": FLOAT,
        "in_discards_ps": FLOAT,
        "out_discards_ps": FLOAT,
        "in_octets": LONG,
        "out_octets": LONG,
        "network.bytes": LONG,
    },
)

CUSTOMER_USAGE = Family(
    key="customer_usage",
    index="customer-usage",
    daily=True,
    retention_days=400,
    # Hourly rollups rather than sessions: one document per customer and hour whatever the interim
    # rate, summing exactly what accounting counted (written in the same transaction), re-sent
    # as the hour fills up. Sessions are updated by every interim and say nothing per hour.
    description="octets per customer and hour (usage_rollups, step 'hour'), re-sent as the hour fills",
    fields={
        "customer_id": KEYWORD,
        "customer_name": NAME,
        "hour": DATE,
        "bytes_in": LONG,
        "bytes_out": LONG,
        "bytes_total": LONG,
        "quota.bytes": LONG,
        "quota.used_pct": FLOAT,  # this hour's share of the monthly quota
        "user.id": KEYWORD,
        "user.name": NAME,
        "network.bytes": LONG,
        "client.bytes": LONG,  # bytes from the customer (in)
        "server.bytes": LONG,  # bytes to the customer (out)
        "event.start": DATE,
        "event.end": DATE,
    },
)

SYSTEM_LOGS = Family(
    key="system_logs",
    index="system-logs",
    daily=True,
    retention_days=30,
    description="LoggingService lines and the daemon's own structured events (state changes, outages, "
    "alerts, errors), never one per check",
    fields={
        # The seed's LoggingService names.
        "timestamp": DATE,
        "level": KEYWORD,
        "message": TEXT,
        "context": FLATTENED,
        "logger": KEYWORD,
        # ECS.
        "log.level": KEYWORD,
        "log.logger": KEYWORD,
        "event.action": KEYWORD,
        "event.category": KEYWORD,
        "event.severity": INTEGER,
        "error.message": TEXT,
        "error.type": KEYWORD,
        "host.name": KEYWORD,
        "process.pid": INTEGER,
    },
)

MAINTENANCE_WINDOWS = Family(
    key="maintenance_windows",
    index="maintenance-windows",
    daily=False,
    retention_days=0,  # one index, kept (a window is deleted from it when deleted here)
    description="maintenance windows (one document per window, re-sent when changed): Kibana's table of "
    "upcoming and past windows",
    fields={
        "window_id": KEYWORD,
        "name": NAME,
        "description": TEXT,
        "timezone": KEYWORD,
        "starts_at": DATE,
        "ends_at": DATE,
        "next_start": DATE,
        "next_end": DATE,
        "last_start": DATE,
        "rrule": KEYWORD,
        "recurring": BOOLEAN,
        "duration_minutes": INTEGER,
        "endpoint_ids": KEYWORD,
        "all_endpoints": BOOLEAN,
        "mode": KEYWORD,
        "suppress_alerts": BOOLEAN,
        "source": KEYWORD,
        "updated_at": DATE,
        "event.start": DATE,
        "event.end": DATE,
    },
)

FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        SERVICE_STATUS,
        SERVICE_OUTAGE,
        NETWORK_METRICS,
        CUSTOMER_USAGE,
        SYSTEM_LOGS,
        MAINTENANCE_WINDOWS,
    )
}


def all_fields(family: str) -> dict[str, dict[str, Any]]:
    """Every field of `family` (common ones included) as dotted path -> type spec."""
    return {**COMMON, **FAMILIES[family].fields}


def _nest(fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for path, spec in sorted(fields.items()):
        node = props
        parts = path.split(".") if path != "@timestamp" else [path]
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = dict(spec)
    return props


def mapping(family: str) -> dict[str, Any]:
    """The index mapping of `family`: strict, so a field we did not declare is an error we see
    (a per-item 400) instead of a dynamic mapping Kibana then aggregates wrongly."""
    return {"dynamic": "strict", "properties": _nest(all_fields(family))}


def mappings() -> dict[str, dict[str, Any]]:
    """Every family's mapping, by family key (what the Kibana saved objects are checked against)."""
    return {key: mapping(key) for key in FAMILIES}


def flat_fields(family: str) -> dict[str, str]:
    """Dotted path -> Elasticsearch type, sub-fields included (``service_name.text``: text)."""
    out: dict[str, str] = {}
    for path, spec in all_fields(family).items():
        out[path] = spec["type"]
        for sub, subspec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = subspec["type"]
    return out


AGGREGATABLE = frozenset(
    {"keyword", "date", "long", "integer", "double", "float", "boolean", "ip", "geo_point", "date_range"}
)


def aggregatable(family: str, field: str) -> bool:
    """Whether `field` of `family` can be used in a terms / histogram / metric aggregation."""
    return flat_fields(family).get(field) in AGGREGATABLE


# ----- names ----------------------------------------------------------------------------------------


def index_base(prefix: str, family: str) -> str:
    return f"{prefix}-{FAMILIES[family].index}"


def index_pattern(prefix: str, family: str) -> str:
    """``isp-service-status-*`` (the data view's pattern); the undated family is its own name."""
    base = index_base(prefix, family)
    return f"{base}-*" if FAMILIES[family].daily else base


def index_name(prefix: str, family: str, at: datetime) -> str:
    """The index a document of time `at` goes to: its own UTC day, ``YYYY.MM.DD``."""
    if not FAMILIES[family].daily:
        return index_base(prefix, family)
    day = at.astimezone(UTC).date() if at.utcoffset() else at.date()
    return _daily_name(prefix, family, day)


@functools.lru_cache(maxsize=4096)
def _daily_name(prefix: str, family: str, day: date) -> str:
    return f"{index_base(prefix, family)}-{day:%Y.%m.%d}"


def policy_name(prefix: str, family: str) -> str:
    return f"{index_base(prefix, family)}-policy"


# ----- what es-setup puts ---------------------------------------------------------------------------


def ilm_policy(retention_days: int) -> dict[str, Any]:
    """Force-merge a daily index once its day is over, delete it after `retention_days` (0: never)."""
    phases: dict[str, Any] = {
        "hot": {"min_age": "0ms", "actions": {"set_priority": {"priority": 100}}},
        "warm": {
            "min_age": "1d",
            "actions": {"forcemerge": {"max_num_segments": 1}, "set_priority": {"priority": 50}},
        },
    }
    if retention_days > 0:
        phases["delete"] = {"min_age": f"{retention_days}d", "actions": {"delete": {}}}
    return {"policy": {"phases": phases, "_meta": {"managed_by": "ispmon"}}}


# ELASTICSEARCH_RETENTION's names: a dated family's key, or the short word of its index name.
RETENTION_NAMES: dict[str, str] = {
    name: key for key, fam in FAMILIES.items() if fam.daily for name in (key, fam.index.rsplit("-", 1)[-1])
}
MAX_RETENTION_DAYS = 36500


def parse_retention(text: str) -> dict[str, int]:
    """``"status=30,outage=730,logs=14"`` -> days by family key (0: never deleted). Raises
    ValueError naming what is wrong; an empty text is no override."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = (x.strip() for x in part.partition("="))
        key = RETENTION_NAMES.get(name.lower())
        if key is None:
            known = ", ".join(sorted(RETENTION_NAMES))
            raise ValueError(f"unknown family {name[:40]!r} (one of: {known})")
        if not sep or not value.isdigit() or int(value) > MAX_RETENTION_DAYS:
            raise ValueError(
                f"the days of {name[:40]!r} must be a whole number from 0 to {MAX_RETENTION_DAYS}, as {name}=30"
            )
        if key in out:
            raise ValueError(f"the family {name[:40]!r} is given twice")
        out[key] = int(value)
    return out


def ilm_policies(prefix: str, retention: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Policy name -> body, one per family; `retention` overrides the default days by family key."""
    retention = retention or {}
    return {
        policy_name(prefix, key): ilm_policy(retention.get(key, fam.retention_days))
        for key, fam in FAMILIES.items()
    }


def component_templates(prefix: str) -> dict[str, dict[str, Any]]:
    """Name -> body: the common fields, then one mappings and one settings component per family."""
    out: dict[str, dict[str, Any]] = {
        f"{prefix}-ecs-common": {
            "template": {"mappings": {"properties": _nest(COMMON)}},
            "_meta": {"managed_by": "ispmon"},
        }
    }
    for key in FAMILIES:
        base = index_base(prefix, key)
        out[f"{base}-mappings"] = {
            "template": {"mappings": {"dynamic": "strict", "properties": _nest(FAMILIES[key].fields)}},
            "_meta": {"managed_by": "ispmon"},
        }
        out[f"{base}-settings"] = {
            "template": {
                "settings": {
                    "index.lifecycle.name": policy_name(prefix, key),
                    "index.number_of_shards": 1,
                    "index.refresh_interval": "5s",
                }
            },
            "_meta": {"managed_by": "ispmon"},
        }
    return out


def index_templates(prefix: str) -> dict[str, dict[str, Any]]:
    """Name -> composable index template body, one per family."""
    out: dict[str, dict[str, Any]] = {}
    for key in FAMILIES:
        base = index_base(prefix, key)
        out[base] = {
            "index_patterns": [index_pattern(prefix, key)],
            "composed_of": [f"{prefix}-ecs-common", f"{base}-mappings", f"{base}-settings"],
            # Above the built-in templates (priority 100 for logs-*-*, metrics-*-*), so ours wins.
            "priority": 200,
            "_meta": {"managed_by": "ispmon", "description": FAMILIES[key].description},
        }
    return out
