"""The document fields the Kibana objects read, per index family, and the data views over them.

Names as the search sync's index templates map them: changing a document's field name is a change
here, and tests/unit/search/test_kibana_files.py checks every field a visualization uses against
the template mapping (present, and of a type its aggregation can use).

Data views of "current state" (open outages, maintenance windows) have no time field: an outage
opened three days ago and still open, or a window planned for next week, must show whatever time
range the dashboard is set to.
"""

from __future__ import annotations

# The document fields each visualization reads, per index family (names as the search sync's
# templates map them). Changing a document's field name is a change here, and the template test
# checks every one of them against the mapping.
STATUS = {
    "time": "@timestamp",
    "status": "status",
    "service": "service.name",
    "response_ms": "response_time_ms",
}
OUTAGE = {
    "time": "@timestamp",
    "id": "outage.id",
    "service": "service.name",
    "severity": "outage.severity",
    "status": "outage.status",
    "started": "outage.started_at",
    "resolved": "outage.resolved_at",
    "duration_s": "outage.duration_seconds",
}
MAINTENANCE = {
    "name": "maintenance.name",
    "start": "maintenance.starts_at",
    "end": "maintenance.ends_at",
}
NETWORK = {
    "time": "@timestamp",
    "device": "observer.hostname",
    "interface": "interface.name",
    "in_util": "interface.in_util_pct",
    "out_util": "interface.out_util_pct",
    "in_bps": "interface.in_bps",
    "out_bps": "interface.out_bps",
    "in_errors": "interface.in_errors_ps",
    "out_errors": "interface.out_errors_ps",
    "in_discards": "interface.in_discards_ps",
    "out_discards": "interface.out_discards_ps",
    "latency": "latency",
    "loss": "packet_loss",
}
USAGE = {
    "time": "@timestamp",
    "customer": "customer.id",
    "bytes_in": "usage.bytes_in",
    "bytes_out": "usage.bytes_out",
    "bytes_total": "usage.bytes_total",
    "quota_pct": "quota.used_pct",
    "session": "session.id",
    "session_open": "session.active",
}

# (family suffix, time field or None, display name suffix)
DATA_VIEWS: dict[str, tuple[str, str | None, str]] = {
    "service-status": ("service-status-*", "@timestamp", ""),
    "service-outage": ("service-outage-*", "@timestamp", ""),
    "service-outage-current": ("service-outage-*", None, " (current state, any time)"),
    "network-metrics": ("network-metrics-*", "@timestamp", ""),
    "customer-usage": ("customer-usage-*", "@timestamp", ""),
    "system-logs": ("system-logs-*", "@timestamp", ""),
    "maintenance-windows": ("maintenance-windows*", None, " (upcoming and past)"),
}
