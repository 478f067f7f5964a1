"""Rows -> Elasticsearch documents, one pure function per source (no I/O; tested without a database).

Each returns ``(timestamp, doc_id, source)``: the timestamp picks the daily index, the id derives
from the row's key so that a resend overwrites. Field names follow `search.templates` (the seed's
beside ECS); a value absent from the row is left out rather than sent as null.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

Doc = tuple[datetime, str, dict[str, Any]]

# Uptime's monitor.status has two values; ours has five (maintenance/unknown are neither).
_UPTIME_STATUS = {"up": "up", "degraded": "up", "down": "down"}
_SEVERITY_NUMBER = {"low": 1, "medium": 2, "high": 3, "critical": 4}


@dataclass(frozen=True)
class Observer:
    """Who sends: the monitoring host, and where it stands (Uptime's location)."""

    hostname: str
    location: str | None = None
    geo: tuple[float, float] | None = None  # lat, lon


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    # asyncpg hands timestamptz back in UTC already; converting is for other callers.
    return value.isoformat() if value.tzinfo is UTC else value.astimezone(UTC).isoformat()


@functools.lru_cache(maxsize=16)
def _observer_doc(observer: Observer) -> dict[str, Any]:
    """The `observer` object, made once per observer and shared by its documents (never mutated:
    documents are only serialised)."""
    obs: dict[str, Any] = {"hostname": observer.hostname}
    if observer.location or observer.geo:
        geo: dict[str, Any] = {}
        if observer.location:
            geo["name"] = observer.location
        if observer.geo:
            geo["location"] = {"lat": observer.geo[0], "lon": observer.geo[1]}
        obs["geo"] = geo
    return obs


_SERVICE = {"name": "ispmon"}


def _common(family: str, row_id: str, observer: Observer, tags: list[str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "observer": _observer_doc(observer),
        "service": _SERVICE,
        "ispmon": {"family": family, "row_id": row_id},
    }
    if tags:
        doc["tags"] = list(tags)
    return doc


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _url_parts(url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"full": url}
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        if parts.scheme:
            out["scheme"] = parts.scheme
        if parts.hostname:
            out["domain"] = parts.hostname
        if parts.port:
            out["port"] = parts.port
    except ValueError:
        pass
    return out


def _ip_or_none(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def _endpoint_parts(
    endpoint_id: str, name: str | None, protocol: str | None, url: str | None, criticality: str | None
) -> tuple[str, dict[str, Any] | None, str | None]:
    """What every check of one endpoint shares (parsed once: URL parts and the target's address)."""
    host_ip = _ip_or_none(urlsplit(url).hostname if url and "://" in url else None)
    return name or endpoint_id, (_url_parts(url) if url else None), host_ip


def status_doc(row: Mapping[str, Any], observer: Observer) -> Doc:
    """A status_history row joined to its endpoint (name, protocol, url, criticality, tags)."""
    at: datetime = row["checked_at"]
    status = row["status"]
    rt = row["response_time_ms"]
    endpoint_id = row["endpoint_id"]
    name, url_doc, host_ip = _endpoint_parts(
        endpoint_id, row["name"], row["protocol"], row["url"], row["criticality"]
    )
    when = _iso(at)
    doc = _common("service_status", str(row["id"]), observer, row["tags"])
    up = 1 if _UPTIME_STATUS.get(status) == "up" else 0
    monitor: dict[str, Any] = {
        "id": endpoint_id,
        "name": name,
        "type": row["protocol"],
        "status": _UPTIME_STATUS.get(status, status),
        # One check is one Heartbeat "check group"; the row id is unique and stable.
        "check_group": f"{endpoint_id}-{row['id']}",
        "timespan": {"gte": when, "lt": when},
    }
    if rt is not None:
        monitor["duration"] = {"us": int(rt * 1000)}
    if host_ip:
        monitor["ip"] = host_ip
    doc["@timestamp"] = when
    doc["service_id"] = endpoint_id
    doc["service_name"] = name
    doc["service_type"] = row["protocol"]
    doc["status"] = status
    doc["checked_at"] = when
    doc["attempts"] = row["attempts"]
    for key, value in (
        ("response_time", rt),
        ("error_message", row["error"]),
        ("error_kind", row["error_kind"]),
        ("criticality", row["criticality"]),
    ):
        if value is not None:
            doc[key] = value
    doc["monitor"] = monitor
    doc["summary"] = {"up": up, "down": 1 if status == "down" else 0}
    if url_doc is not None:
        doc["url"] = dict(url_doc)
    if row["error"] or row["error_kind"]:
        doc["error"] = _clean({"message": row["error"], "type": row["error_kind"]})
    details = row["details"]
    if isinstance(details, dict) and isinstance(details.get("status_code"), int):
        doc["http"] = {"response": {"status_code": details["status_code"]}}
    return at, str(row["id"]), doc


def outage_doc(row: Mapping[str, Any], observer: Observer) -> Doc:
    """An outages row with its endpoint; indexed by its start, so every change overwrites it."""
    started: datetime = row["started_at"]
    resolved: datetime | None = row["resolved_at"]
    name = row["name"] or row["endpoint_id"]
    doc = _common("service_outage", str(row["id"]), observer, row["tags"])
    duration = row["duration_seconds"]
    doc.update(
        _clean(
            {
                "@timestamp": _iso(started),
                "outage_id": str(row["id"]),
                "service_id": row["endpoint_id"],
                "service_name": name,
                "service_type": row["protocol"],
                "status": row["status"],
                "severity": row["severity"],
                "started_at": _iso(started),
                "declared_at": _iso(row["declared_at"]),
                "resolved_at": _iso(resolved),
                "duration_seconds": duration,
                "error_kind": row["error_kind"],
                "error_message": row["error"],
                "failures": row["failures"],
                "verified": row["verified"],
                "flapping": row["flapping"],
                "resolution": row["resolution"],
                "resolution_notes": row["resolution_notes"],
                "resolved_by": row["resolved_by"],
                "active": resolved is None,
                "updated_at": _iso(row["updated_at"]),
                "criticality": row["criticality"],
            }
        )
    )
    doc["monitor"] = _clean({"id": row["endpoint_id"], "name": name, "type": row["protocol"]})
    if row["url"]:
        doc["url"] = {"full": row["url"]}
    if row["error"] or row["error_kind"]:
        doc["error"] = _clean({"message": row["error"], "type": row["error_kind"]})
    doc["event"] = _clean(
        {
            "start": _iso(started),
            "end": _iso(resolved),
            "duration": int(duration * 1e9) if duration is not None else None,
            "severity": _SEVERITY_NUMBER.get(row["severity"]),
            "outcome": "success" if resolved is not None else "unknown",
        }
    )
    return started, str(row["id"]), doc


def interface_doc(row: Mapping[str, Any], observer: Observer) -> Doc:
    """An interface_metrics row joined to its interface and device (an SNMP reading)."""
    at: datetime = row["at"]
    doc_id = f"if-{row['interface_id']}-{int(at.timestamp() * 1_000_000)}"
    doc = _common("network_metrics", doc_id, observer, row["tags"])
    utils = [u for u in (row["in_util_pct"], row["out_util_pct"]) if u is not None]
    errs = [e for e in (row["in_errors_ps"], row["out_errors_ps"]) if e is not None]
    name = row["if_name"] or row["key"]
    doc.update(
        _clean(
            {
                "@timestamp": _iso(at),
                "recorded_at": _iso(at),
                "source": "snmp",
                "interface": name,
                "host": row["device_name"],
                "bandwidth_usage": max(utils) if utils else None,
                "interface_id": str(row["interface_id"]),
                "interval_s": row["interval_s"],
                "in_bps": row["in_bps"],
                "out_bps": row["out_bps"],
                "in_pps": row["in_pps"],
                "out_pps": row["out_pps"],
                "in_util_pct": row["in_util_pct"],
                "out_util_pct": row["out_util_pct"],
                "util_pct": max(utils) if utils else None,
                "in_errors_ps": row["in_errors_ps"],
                "out_errors_ps": row["out_errors_ps"],
                "errors_ps": sum(errs) if errs else None,
                "in_discards_ps": row["in_discards_ps"],
                "out_discards_ps": row["out_discards_ps"],
                "in_octets": row["in_octets"],
                "out_octets": row["out_octets"],
            }
        )
    )
    doc["device"] = _clean(
        {
            "id": row["device_id"],
            "name": row["device_name"],
            "address": row["address"],
            "ip": _ip_or_none(row["address"]),
        }
    )
    doc["if"] = _clean(
        {
            "index": row["if_index"],
            "name": name,
            "alias": row["alias"] or None,
            "descr": row["descr"] or None,
            "speed_bps": row["speed_bps"],
        }
    )
    octets = [o for o in (row["in_octets"], row["out_octets"]) if o is not None]
    if octets:
        doc["network"] = {"bytes": sum(octets)}
    return at, doc_id, doc


def reported_doc(row: Mapping[str, Any], observer: Observer) -> Doc:
    """A network_metrics row (MetricsService.record_network_metric / POST /metrics/network)."""
    at: datetime = row["recorded_at"]
    doc_id = f"nm-{row['id']}"
    doc = _common("network_metrics", doc_id, observer)
    doc.update(
        _clean(
            {
                "@timestamp": _iso(at),
                "recorded_at": _iso(at),
                "source": "reported",
                "interface": row["interface"],
                "host": row["host"],
                "bandwidth_usage": row["bandwidth_usage"],
                "packet_loss": row["packet_loss"],
                "latency": row["latency"],
            }
        )
    )
    return at, doc_id, doc


def usage_doc(row: Mapping[str, Any], observer: Observer) -> Doc:
    """An hourly usage_rollups row with its customer; re-sent (same id) as the hour fills."""
    hour: datetime = row["start"]
    doc_id = f"{row['customer_id']}-{int(hour.timestamp())}"
    doc = _common("customer_usage", doc_id, observer)
    bytes_in, bytes_out = int(row["bytes_in"]), int(row["bytes_out"])
    name = row["customer_name"] or row["customer_id"]
    quota = row["quota_bytes"]
    doc.update(
        {
            "@timestamp": _iso(hour),
            "customer_id": row["customer_id"],
            "customer_name": name,
            "hour": _iso(hour),
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "bytes_total": bytes_in + bytes_out,
            "user": {"id": row["customer_id"], "name": name},
            "network": {"bytes": bytes_in + bytes_out},
            "client": {"bytes": bytes_in},
            "server": {"bytes": bytes_out},
        }
    )
    if isinstance(quota, int) and quota > 0:
        doc["quota"] = {"bytes": quota, "used_pct": round(100.0 * (bytes_in + bytes_out) / quota, 4)}
    return hour, doc_id, doc


_LEVEL_SEVERITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}
_LOG_KEYS = frozenset({"event", "level", "logger", "timestamp"})


def log_doc(row: Mapping[str, Any], observer: Observer) -> Doc:
    """A system_logs row: a LoggingService line or one of the daemon's structured events."""
    at: datetime = row["at"]
    data = row["data"] if isinstance(row["data"], dict) else {}
    context = {k: v for k, v in data.items() if k not in _LOG_KEYS}
    level = row["level"]
    doc = _common("system_logs", str(row["id"]), observer)
    doc.update(
        _clean(
            {
                "@timestamp": _iso(at),
                "timestamp": _iso(at),
                "level": level,
                "message": row["event"],
                "logger": row["logger"],
                "context": context or None,
            }
        )
    )
    doc["log"] = _clean({"level": level, "logger": row["logger"]})
    event = row["event"]
    # structlog events are snake_case names (outage_declared); LoggingService lines are sentences.
    action = event if event.replace("_", "").isalnum() and event.lower() == event else None
    doc["event"] = _clean(
        {"dataset": "ispmon.log", "kind": "event", "action": action, "severity": _LEVEL_SEVERITY.get(level)}
    )
    if level in ("error", "critical"):
        err = context.get("error")
        doc["error"] = _clean(
            {"message": str(err) if err is not None else event, "type": context.get("error_type")}
        )
        if isinstance(doc["error"].get("type"), dict | list):
            doc["error"]["type"] = str(doc["error"]["type"])
    return at, str(row["id"]), doc


def window_doc(row: Mapping[str, Any], observer: Observer, now: datetime) -> Doc:
    """A maintenance window: its definition plus its next (or current) and last occurrence."""
    spec = row["spec"] if isinstance(row["spec"], dict) else {}
    doc = _common("maintenance_windows", row["id"], observer, spec.get("tags"))
    occ_start, occ_end, last_start = row["next_start"], row["next_end"], row["last_start"]
    doc.update(
        _clean(
            {
                "@timestamp": _iso(occ_start) or spec.get("starts_at") or _iso(row["updated_at"]),
                "window_id": row["id"],
                "name": row["name"],
                "description": spec.get("description"),
                "timezone": spec.get("timezone"),
                "starts_at": spec.get("starts_at"),
                "ends_at": spec.get("ends_at"),
                "next_start": _iso(occ_start),
                "next_end": _iso(occ_end),
                "last_start": _iso(last_start),
                "rrule": spec.get("rrule"),
                "recurring": bool(spec.get("rrule")),
                "duration_minutes": spec.get("duration_minutes"),
                "endpoint_ids": spec.get("endpoint_ids") or None,
                "all_endpoints": spec.get("all_endpoints"),
                "mode": spec.get("mode"),
                "suppress_alerts": spec.get("suppress_alerts"),
                "source": row["source"],
                "updated_at": _iso(row["updated_at"]),
            }
        )
    )
    doc["event"] = _clean(
        {"start": _iso(occ_start) or spec.get("starts_at"), "end": _iso(occ_end) or spec.get("ends_at")}
    )
    return now, row["id"], doc
