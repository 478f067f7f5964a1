"""The usage report: the top-N customers by octets over [since, until) (hourly usage rollups),
with their sessions started in the period, their quota and the highest quota threshold they
crossed in the period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ispmon.reports.base import Chart, Column, ReportKind, ReportQuery


def sql(query: ReportQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.since, query.until, query.top]
    where = ""
    if query.customer is not None:
        args.append(query.customer)
        where = f" AND c.id = ${len(args)}"
    text = f"""
WITH u AS (
    SELECT customer_id, sum(bytes_in) AS bytes_in, sum(bytes_out) AS bytes_out FROM usage_rollups
    WHERE step = 'hour' AND start >= $1 AND start < $2 GROUP BY 1),
s AS (
    SELECT customer_id, count(*) AS sessions, sum(session_time) AS session_seconds FROM radius_sessions
    WHERE started_at >= $1 AND started_at < $2 AND customer_id IS NOT NULL GROUP BY 1),
q AS (
    SELECT customer_id, max(threshold) AS threshold FROM quota_crossings
    WHERE crossed_at >= $1 AND crossed_at < $2 GROUP BY 1)
SELECT c.id, c.name, coalesce(u.bytes_in, 0), coalesce(u.bytes_out, 0),
       coalesce(u.bytes_in, 0) + coalesce(u.bytes_out, 0), coalesce(s.sessions, 0), coalesce(s.session_seconds, 0),
       (c.spec ->> 'quota_bytes')::numeric, q.threshold
FROM customers c LEFT JOIN u ON u.customer_id = c.id LEFT JOIN s ON s.customer_id = c.id
     LEFT JOIN q ON q.customer_id = c.id
WHERE true{where}
ORDER BY 5 DESC, c.id LIMIT $3"""
    return text, args


COLUMNS = (
    Column("customer_id", "string", "Customer id", nullable=False),
    Column("name", "string", "Customer name", nullable=False),
    Column("bytes_in", "integer", "Octets downloaded in the period", nullable=False),
    Column("bytes_out", "integer", "Octets uploaded in the period", nullable=False),
    Column("bytes_total", "integer", "Octets in and out", nullable=False),
    Column("sessions", "integer", "RADIUS sessions started in the period", nullable=False),
    Column("session_seconds", "integer", "Their Acct-Session-Time", nullable=False),
    Column("quota_bytes", "integer", "The customer's quota per quota period (empty: unlimited)"),
    Column("quota_threshold_pct", "integer", "Highest quota threshold crossed in the period"),
)


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "customers": len(rows),
        "bytes_total": sum(r["bytes_total"] for r in rows),
        "sessions": sum(r["sessions"] for r in rows),
        "over_quota": sum(1 for r in rows if (r["quota_threshold_pct"] or 0) >= 100),
    }


TOTALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customers", "bytes_total", "sessions", "over_quota"],
    "properties": {
        "customers": {"type": "integer", "description": "Rows (the top N)"},
        "bytes_total": {"type": "integer"},
        "sessions": {"type": "integer"},
        "over_quota": {"type": "integer", "description": "Customers who crossed 100 % in the period"},
    },
}

KIND = ReportKind(
    name="usage",
    title="Customer usage",
    description="Customer usage top-N, sessions, quota status",
    columns=COLUMNS,
    filters=frozenset({"customer"}),
    sql=sql,
    totals=totals,
    totals_schema=TOTALS_SCHEMA,
    charts=(Chart("Top customers (octets)", "customer_id", "bytes_total"),),
)
