"""The three dashboards ispmon ships, and the data views and visualizations they show.

Service Availability holds the seed's eight visualizations; Network Performance and Customer
Usage the network and usage families'. Pure functions of the id scheme (`kibana_vis.Ids`);
`kibana_objects` groups them into files.
"""

from __future__ import annotations

from typing import Any

from ispmon.search import kibana_vis as v
from ispmon.search.kibana_fields import DATA_VIEWS, LOGS, MAINTENANCE, NETWORK, OUTAGE, STATUS, USAGE
from ispmon.search.kibana_vis import Ids, dashboard
from ispmon.search.templates import DEFAULT_PREFIX, index_pattern


def data_view(ids: Ids, key: str) -> dict[str, Any]:
    family, timed, suffix = DATA_VIEWS[key]
    title = index_pattern(ids.prefix, family)
    attributes: dict[str, Any] = {
        "title": title,
        "name": title + suffix,
        "fieldAttrs": "{}",
        "fieldFormatMap": "{}",
        "fields": "[]",
        "runtimeFieldMap": "{}",
        "typeMeta": "{}",
    }
    if timed:
        attributes["timeFieldName"] = "@timestamp"
    return v.saved_object("index-pattern", ids.data_view(key), attributes, [])


def _title(base: str, prefix: str) -> str:
    return base if prefix == DEFAULT_PREFIX else f"{base} ({prefix})"


def service_availability(ids: Ids) -> list[dict[str, Any]]:
    s, o, m = STATUS, OUTAGE, MAINTENANCE
    status_dv, outage_dv = ids.data_view("service-status"), ids.data_view("service-outage")
    overview = v.visualization(
        ids("service-status-overview"),
        v.pie_state(
            "Service Status Overview",
            [v.count("1", "Checks"), v.terms("2", "segment", s["status"], "Status")],
        ),
        status_dv,
        description="Checks in the time range by status (up, degraded, down, maintenance).",
    )
    active = v.visualization(
        ids("active-outages"),
        v.metric_state("Active Outages", [v.count("1", "Active outages")]),
        ids.data_view("service-outage-current"),
        query=f"{o['active']}:true",
        description="Outages not resolved yet, whenever they started.",
    )
    response = v.visualization(
        ids("service-response-time"),
        v.xy_state(
            "Service Response Time",
            "line",
            [
                v.metric("1", "avg", s["response_ms"], "Average response time (ms)"),
                v.date_histogram("2", s["time"]),
                v.terms("3", "group", s["service"], "Service", size=10),
            ],
            "ms",
        ),
        status_dv,
    )
    history = v.visualization(
        ids("service-status-history"),
        v.xy_state(
            "Service Status History",
            "area",
            [
                v.count("1", "Checks"),
                v.date_histogram("2", s["time"]),
                v.terms("3", "group", s["status"], "Status"),
            ],
            "checks",
        ),
        status_dv,
    )
    recent = v.visualization(
        ids("recent-outages"),
        v.table_state(
            "Recent Outages",
            [
                v.metric("1", "max", o["started"], "Started"),
                v.top_hit("2", o["service"], "Service"),
                v.top_hit("3", o["severity"], "Severity"),
                v.top_hit("4", o["status"], "Status"),
                v.metric("5", "max", o["duration_s"], "Duration (s)"),
                v.metric("6", "max", o["resolved"], "Resolved"),
                v.terms("7", "bucket", o["id"], "Outage", size=50, order_by="1"),
            ],
            per_page=10,
        ),
        outage_dv,
        description="The newest outages first; Resolved is empty while one is open.",
    )
    by_service = v.visualization(
        ids("outages-by-service"),
        v.pie_state(
            "Outages by Service", [v.count("1", "Outages"), v.terms("2", "segment", o["service"], "Service")]
        ),
        outage_dv,
    )
    by_severity = v.visualization(
        ids("outages-by-severity"),
        v.xy_state(
            "Outages by Severity",
            "histogram",
            [
                v.count("1", "Outages"),
                v.date_histogram("2", o["time"]),
                v.terms("3", "group", o["severity"], "Severity"),
            ],
            "outages",
        ),
        outage_dv,
    )
    windows = v.visualization(
        ids("maintenance-windows"),
        v.table_state(
            "Maintenance Windows",
            [
                v.metric("1", "min", m["start"], "Starts"),
                v.metric("2", "max", m["end"], "Ends"),
                v.metric("3", "max", m["last_start"], "Last began"),
                v.top_hit("4", m["rrule"], "Recurrence", sort_field=m["updated"]),
                v.filters(
                    "5",
                    "bucket",
                    [
                        ("Active", f"{m['start']} <= now and {m['end']} > now"),
                        ("Upcoming", f"{m['start']} > now"),
                        ("Past", f"{m['end']} <= now"),
                    ],
                ),
                v.terms("6", "bucket", m["name"], "Window", size=100, order_by="1", order="asc"),
            ],
            per_page=20,
        ),
        ids.data_view("maintenance-windows"),
        description="Every window: active now, then upcoming (by next start), then past. A recurring "
        "window shows its current or next occurrence and when it last began.",
    )
    visualizations = [overview, active, response, history, recent, by_service, by_severity, windows]
    board = dashboard(
        ids,
        "service-availability",
        _title("Service Availability", ids.prefix),
        "Service checks and outages from ispmon.",
        [
            (active, 0, 0, 8, 10),
            (overview, 8, 0, 20, 10),
            (by_service, 28, 0, 20, 10),
            (response, 0, 10, 24, 12),
            (history, 24, 10, 24, 12),
            (by_severity, 0, 22, 24, 12),
            (recent, 24, 22, 24, 12),
            (windows, 0, 34, 48, 12),
        ],
    )
    keys = ("service-status", "service-outage", "service-outage-current", "maintenance-windows")
    return [data_view(ids, k) for k in keys] + [*visualizations, board]


def network_performance(ids: Ids) -> list[dict[str, Any]]:
    n = NETWORK
    dv = ids.data_view("network-metrics")
    utilisation = v.visualization(
        ids("interface-utilisation"),
        v.xy_state(
            "Interface Utilisation",
            "line",
            [
                v.metric("1", "max", n["util"], "Utilisation (%)"),
                v.date_histogram("2", n["time"]),
                v.terms("3", "group", n["interface"], "Interface", size=5),
            ],
            "% of speed",
        ),
        dv,
        description="Peak utilisation (the busier direction) per interval of the five busiest interfaces.",
    )
    top = v.visualization(
        ids("top-interfaces"),
        v.table_state(
            "Top Interfaces",
            [
                v.metric("1", "max", n["util"], "Peak utilisation (%)"),
                v.metric("2", "avg", n["in_bps"], "Average in (bit/s)"),
                v.metric("3", "avg", n["out_bps"], "Average out (bit/s)"),
                v.metric("4", "sum", n["in_errors"], "In errors/s (sum of polls)"),
                v.terms("5", "bucket", n["device"], "Device", size=10, order_by="1"),
                v.terms("6", "bucket", n["interface"], "Interface", size=10, order_by="1"),
            ],
        ),
        dv,
        description="Interfaces by peak utilisation in the time range.",
    )
    errors = v.visualization(
        ids("interface-errors"),
        v.xy_state(
            "Interface Errors and Discards",
            "histogram",
            [
                v.metric("1", "sum", n["in_errors"], "In errors/s"),
                v.metric("2", "sum", n["out_errors"], "Out errors/s"),
                v.metric("3", "sum", n["in_discards"], "In discards/s"),
                v.metric("4", "sum", n["out_discards"], "Out discards/s"),
                v.date_histogram("5", n["time"]),
            ],
            "per second, all interfaces",
        ),
        dv,
    )
    latency = v.visualization(
        ids("network-latency"),
        v.xy_state(
            "Latency",
            "line",
            [
                v.metric("1", "avg", n["latency"], "Latency (ms)"),
                v.date_histogram("2", n["time"]),
                v.terms("3", "group", n["interface"], "Path", size=10),
            ],
            "ms",
        ),
        dv,
        query=f"{n['latency']}:*",
    )
    loss = v.visualization(
        ids("network-packet-loss"),
        v.xy_state(
            "Packet Loss",
            "line",
            [
                v.metric("1", "max", n["loss"], "Packet loss (%)"),
                v.date_histogram("2", n["time"]),
                v.terms("3", "group", n["interface"], "Path", size=10),
            ],
            "%",
        ),
        dv,
        query=f"{n['loss']}:*",
    )
    visualizations = [utilisation, top, errors, latency, loss]
    board = dashboard(
        ids,
        "network-performance",
        _title("Network Performance", ids.prefix),
        "Interface utilisation and errors from ispmon's SNMP polls; latency and loss as reported to ispmon.",
        [
            (utilisation, 0, 0, 28, 14),
            (top, 28, 0, 20, 14),
            (errors, 0, 14, 48, 12),
            (latency, 0, 26, 24, 12),
            (loss, 24, 26, 24, 12),
        ],
    )
    return [data_view(ids, "network-metrics"), *visualizations, board]


def customer_usage(ids: Ids) -> list[dict[str, Any]]:
    u = USAGE
    dv = ids.data_view("customer-usage")
    top = v.visualization(
        ids("top-customers"),
        v.table_state(
            "Top Customers",
            [
                v.metric("1", "sum", u["bytes_total"], "Bytes"),
                v.metric("2", "sum", u["bytes_in"], "Bytes in"),
                v.metric("3", "sum", u["bytes_out"], "Bytes out"),
                v.terms("4", "bucket", u["customer"], "Customer", size=20, order_by="1"),
            ],
        ),
        dv,
        description="Customers by bytes accounted in the time range.",
    )
    over_time = v.visualization(
        ids("usage-over-time"),
        v.xy_state(
            "Usage Over Time",
            "area",
            [
                v.metric("1", "sum", u["bytes_in"], "Bytes in"),
                v.metric("2", "sum", u["bytes_out"], "Bytes out"),
                v.date_histogram("3", u["time"]),
            ],
            "bytes",
        ),
        dv,
    )
    quota = v.visualization(
        ids("quota-status"),
        v.table_state(
            "Quota Status",
            [
                v.metric("1", "sum", u["quota_pct"], "Quota used in the range (%)"),
                v.metric("2", "sum", u["bytes_total"], "Bytes"),
                v.metric("3", "max", u["quota_bytes"], "Monthly quota (bytes)"),
                v.terms("4", "bucket", u["customer"], "Customer", size=50, order_by="1"),
            ],
        ),
        dv,
        query=f"{u['quota_bytes']}:*",
        description="Customers with a quota, most used first. Each hour counts its share of the monthly "
        "quota: set the time range to the billing month to read the month's total.",
    )
    sessions = v.visualization(
        ids("active-sessions"),
        v.metric_state(
            "Active Sessions",
            [v.agg("1", "cardinality", "metric", field=u["customer"], customLabel="Customers with traffic")],
        ),
        dv,
        query=f"{u['bytes_total']} > 0",
        description="Customers whose accounting added bytes in the time range (from the hourly rollups: "
        "the feed has no per-session documents). Set a short range (last hour) for who is online now.",
    )
    visualizations = [top, over_time, quota, sessions]
    board = dashboard(
        ids,
        "customer-usage",
        _title("Customer Usage", ids.prefix),
        "Subscriber usage and quotas from ispmon's RADIUS accounting (hourly rollups).",
        [
            (sessions, 0, 0, 12, 10),
            (over_time, 12, 0, 36, 10),
            (top, 0, 10, 24, 16),
            (quota, 24, 10, 24, 16),
        ],
    )
    return [data_view(ids, "customer-usage"), *visualizations, board]


def system_logs_search(ids: Ids) -> dict[str, Any]:
    return v.saved_search(
        ids("system-logs"),
        _title("ispmon System Logs", ids.prefix),
        ids.data_view("system-logs"),
        LOGS["columns"],
        LOGS["time"],
        description="LoggingService lines and the daemon's state changes, outages, alerts and errors, newest first.",
    )
