"""The alerts report: alerts that started in [since, until) by rule and severity: how many, how
many were acknowledged and how fast (acknowledged_at - started_at), how long they lasted, and what
became of their notifications (sent, dead-lettered, pending, cancelled)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ispmon.reports.base import Chart, Column, ReportKind, ReportQuery


def sql(query: ReportQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.since, query.until, query.now]
    where = ""
    if query.tag is not None:
        args.append(query.tag)
        where += f" AND a.endpoint_id IN (SELECT id FROM endpoints WHERE ${len(args)} = ANY(tags))"
    if query.endpoint is not None:
        args.append(query.endpoint)
        where += f" AND a.endpoint_id = ${len(args)}"
    text = f"""
WITH a AS (
    SELECT a.* FROM alerts a WHERE a.started_at >= $1 AND a.started_at < $2{where}),
n AS (
    SELECT n.alert_id, count(*) FILTER (WHERE n.state = 'sent') AS sent,
           count(*) FILTER (WHERE n.state = 'dead') AS dead, count(*) FILTER (WHERE n.state = 'pending') AS pending,
           count(*) FILTER (WHERE n.state = 'cancelled') AS cancelled
    FROM notifications n WHERE n.alert_id IN (SELECT id FROM a) GROUP BY 1)
SELECT a.rule_id, a.severity, count(*), count(a.acknowledged_at),
       avg(extract(epoch FROM a.acknowledged_at - a.started_at))::float8,
       max(extract(epoch FROM a.acknowledged_at - a.started_at))::float8,
       avg(extract(epoch FROM coalesce(a.resolved_at, $3::timestamptz) - a.started_at))::float8,
       count(*) FILTER (WHERE a.was_suppressed), coalesce(sum(n.sent), 0), coalesce(sum(n.dead), 0),
       coalesce(sum(n.pending), 0), coalesce(sum(n.cancelled), 0)
FROM a LEFT JOIN n ON n.alert_id = a.id
GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2"""
    return text, args


COLUMNS = (
    Column("rule_id", "string", "Alert rule", nullable=False),
    Column("severity", "string", "Severity", nullable=False),
    Column("alerts", "integer", "Alerts that started in the period", nullable=False),
    Column("acknowledged", "integer", "Of those, acknowledged", nullable=False),
    Column("mean_ack_seconds", "number", "Mean time to acknowledge"),
    Column("max_ack_seconds", "number", "Longest time to acknowledge"),
    Column("mean_duration_seconds", "number", "Mean time from start to resolution (to now while open)"),
    Column("suppressed", "integer", "Alerts suppressed at some point (maintenance, dependency)", nullable=False),
    Column("notifications_sent", "integer", "Notifications delivered", nullable=False),
    Column("notifications_dead", "integer", "Notifications dead-lettered", nullable=False),
    Column("notifications_pending", "integer", "Notifications still pending", nullable=False),
    Column("notifications_cancelled", "integer", "Notifications cancelled (resolved or acknowledged first)",
           nullable=False),
)  # fmt: skip


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    alerts = sum(r["alerts"] for r in rows)
    acked = [(r["mean_ack_seconds"], r["acknowledged"]) for r in rows if r["acknowledged"]]
    weight = sum(n for _, n in acked)
    return {
        "alerts": alerts,
        "acknowledged": weight,
        "mean_ack_seconds": sum(m * n for m, n in acked) / weight if weight else None,
        "notifications_sent": sum(r["notifications_sent"] for r in rows),
        "notifications_dead": sum(r["notifications_dead"] for r in rows),
    }


TOTALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["alerts", "acknowledged", "mean_ack_seconds", "notifications_sent", "notifications_dead"],
    "properties": {
        "alerts": {"type": "integer"},
        "acknowledged": {"type": "integer"},
        "mean_ack_seconds": {"type": ["number", "null"]},
        "notifications_sent": {"type": "integer"},
        "notifications_dead": {"type": "integer"},
    },
}

KIND = ReportKind(
    name="alerts",
    title="Alerts",
    description="Alerts by rule and severity, time to acknowledge, notification outcomes",
    columns=COLUMNS,
    filters=frozenset({"tag", "endpoint"}),
    sql=sql,
    totals=totals,
    totals_schema=TOTALS_SCHEMA,
    charts=(Chart("Alerts by rule", "rule_id", "alerts"),),
)
