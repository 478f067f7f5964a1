"""The document fields the Kibana objects read, per index family, and the data views over them.

Names as the search sync's index templates map them: changing a document's field name is a change
here, and tests/unit/kibana/test_kibana_files.py checks every field a visualization uses against
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
    "status": "status",  # ispmon's own: up, degraded, down, maintenance (monitor.status is up/down only)
    "service": "service_name",
    "response_ms": "response_time",
}
OUTAGE = {
    "time": "@timestamp",  # the outage's start
    "id": "outage_id",
    "service": "service_name",
    "severity": "severity",
    "status": "status",
    "started": "started_at",
    "resolved": "resolved_at",
    "duration_s": "duration_seconds",
    "active": "active",
}
MAINTENANCE = {
    "name": "name",
    # The next (or current) occurrence, or a one-off window's own start and end.
    "start": "event.start",
    "end": "event.end",
    "last_start": "last_start",
    "rrule": "rrule",
    "updated": "updated_at",
}
NETWORK = {
    "time": "@timestamp",
    "device": "host",
    "interface": "interface",
    # Percent of the interface's speed, the larger direction (SNMP), or as reported (MetricsService).
    "util": "bandwidth_usage",
    "in_bps": "in_bps",
    "out_bps": "out_bps",
    "in_errors": "in_errors_ps",
    "out_errors": "out_errors_ps",
    "in_discards": "in_discards_ps",
    "out_discards": "out_discards_ps",
    "latency": "latency",
    "loss": "packet_loss",
}
USAGE = {
    "time": "@timestamp",  # the hour's start: one document per customer and hour
    "customer": "customer_name",
    "bytes_in": "bytes_in",
    "bytes_out": "bytes_out",
    "bytes_total": "bytes_total",
    "quota_bytes": "quota.bytes",
    "quota_pct": "quota.used_pct",  # the hour's share of the monthly quota: sums over a month
}
LOGS = {
    "time": "@timestamp",
    "columns": ["level", "logger", "event.action", "message"],
}

# Data view key -> (index family in ispmon.search.templates, has a time field, name suffix).
DATA_VIEWS: dict[str, tuple[str, bool, str]] = {
    "service-status": ("service_status", True, ""),
    "service-outage": ("service_outage", True, ""),
    "service-outage-current": ("service_outage", False, " (current state, any time)"),
    "network-metrics": ("network_metrics", True, ""),
    "customer-usage": ("customer_usage", True, ""),
    "system-logs": ("system_logs", True, ""),
    "maintenance-windows": ("maintenance_windows", False, ""),
}
