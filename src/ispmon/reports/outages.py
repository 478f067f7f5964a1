"""The outages report: every outage that overlapped [since, until), with its duration (to now
while open), severity, endpoint and resolution notes; totals by severity and by endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ispmon.reports.base import Chart, Column, ReportKind, ReportQuery, filters_clause


def sql(query: ReportQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.since, query.until, query.now]
    where = filters_clause(query, args)
    text = f"""
SELECT o.id, o.endpoint_id, coalesce(e.name, o.endpoint_id), o.severity, o.status, o.started_at, o.resolved_at,
       extract(epoch FROM coalesce(o.resolved_at, $3::timestamptz) - o.started_at)::float8,
       o.error_kind, o.error, o.resolution, o.resolution_notes, o.resolved_by, o.suppressed_by
FROM outages o LEFT JOIN endpoints e ON e.id = o.endpoint_id
WHERE o.started_at < $2 AND (o.resolved_at IS NULL OR o.resolved_at > $1){where.replace("e.id", "o.endpoint_id")}
ORDER BY o.started_at, o.id"""
    return text, args


COLUMNS = (
    Column("id", "integer", "Outage id", nullable=False),
    Column("endpoint_id", "string", "Endpoint id", nullable=False),
    Column("endpoint_name", "string", "Endpoint name", nullable=False),
    Column("severity", "string", "Severity", nullable=False),
    Column("status", "string", "Worst status seen (down, degraded)", nullable=False),
    Column("started_at", "date-time", "First failed check", nullable=False),
    Column("resolved_at", "date-time", "Resolved at (empty while open)"),
    Column("duration_seconds", "number", "Seconds from start to resolution (to now while open)", nullable=False),
    Column("error_kind", "string", "Why (timeout, refused, ...)"),
    Column("error", "string", "Error text"),
    Column("resolution", "string", "auto or manual"),
    Column("resolution_notes", "string", "Notes given when resolved by hand"),
    Column("resolved_by", "string", "Who resolved it by hand"),
    Column("suppressed_by", "string", "dependency:<parent> or self_connectivity when nobody was paged"),
)


def _group(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        g = out.setdefault(r[key], {"count": 0, "total_seconds": 0.0, "longest_seconds": 0.0})
        g["count"] += 1
        g["total_seconds"] += r["duration_seconds"]
        g["longest_seconds"] = max(g["longest_seconds"], r["duration_seconds"])
    return out


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    durations = [r["duration_seconds"] for r in rows]
    return {
        "outages": len(rows),
        "open": sum(1 for r in rows if r["resolved_at"] is None),
        "total_seconds": sum(durations),
        "mean_seconds": sum(durations) / len(durations) if durations else None,
        "by_severity": _group(rows, "severity"),
        "by_endpoint": _group(rows, "endpoint_id"),
    }


_GROUP = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "additionalProperties": False,
        "required": ["count", "total_seconds", "longest_seconds"],
        "properties": {
            "count": {"type": "integer"},
            "total_seconds": {"type": "number"},
            "longest_seconds": {"type": "number"},
        },
    },
}
TOTALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["outages", "open", "total_seconds", "mean_seconds", "by_severity", "by_endpoint"],
    "properties": {
        "outages": {"type": "integer"},
        "open": {"type": "integer"},
        "total_seconds": {"type": "number"},
        "mean_seconds": {"type": ["number", "null"]},
        "by_severity": _GROUP,
        "by_endpoint": _GROUP,
    },
}

KIND = ReportKind(
    name="outages",
    title="Outages",
    description="Outages by severity and by service, durations, resolution notes",
    columns=COLUMNS,
    filters=frozenset({"tag", "endpoint"}),
    sql=sql,
    totals=totals,
    totals_schema=TOTALS_SCHEMA,
    charts=(
        Chart("Outages by severity", "severity", "count", group="by_severity"),
        Chart("Outage time by service (s)", "endpoint", "total_seconds", group="by_endpoint"),
    ),
    pdf_columns=("id", "endpoint_id", "severity", "started_at", "duration_seconds", "resolution", "resolution_notes"),
)
