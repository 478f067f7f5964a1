"""The availability report: per endpoint over [since, until), from the endpoint rollups.

    period      = until - max(since, the endpoint's creation)
    maintenance = seconds inside its maintenance windows (any mode)
    downtime    = seconds inside its outages and outside maintenance
    SLA %       = 100 × (period - maintenance - downtime) / (period - maintenance)
    MTTR        = downtime / outages started in the period
    MTBF        = (period - maintenance - downtime) / outages started in the period

Whole weeks come from the 1-week rollups, the other whole days from the 1-day ones, the hours at
either end from the 1-hour ones (the report has hour resolution: since and until are taken to the
hour). Percentiles are nearest-rank over the
merged response-time histograms (`ispmon.reports.histogram`: within 4.9 % of the raw figure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from ispmon.reports.base import Chart, Column, ReportKind, ReportQuery, filters_clause
from ispmon.reports.histogram import LOW_MS, RATIO

DAY = timedelta(days=1)


def _day_floor(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def day_range(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The whole UTC days inside [since, until) (an empty range when there is none)."""
    d0 = _day_floor(since)
    if d0 < since:
        d0 += DAY
    d1 = max(d0, _day_floor(until))
    return d0, d1


# Only what the report reads: src is materialised once and read twice (sums, histograms).
_SRC = (
    "r.endpoint_id, r.checks, r.up, r.degraded, r.down, r.maintenance, r.unknown, r.downtime_s,"
    " r.maintenance_s, r.outages, r.rt_count, r.rt_sum_ms, r.rt_bins, r.rt_counts"
)


def _pct(name: str) -> str:
    return f"{LOW_MS} * power({RATIO}::float8, f.{name} + 0.5)"


def week_range(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The whole weeks (Monday 00:00 UTC) inside [since, until) (an empty range when there is none)."""
    w0 = _day_floor(since) - timedelta(days=since.weekday())
    if w0 < since:
        w0 += 7 * DAY
    w1 = max(w0, _day_floor(until) - timedelta(days=until.weekday()))
    return w0, w1


def sql(query: ReportQuery) -> tuple[str, list[Any]]:
    d0, d1 = day_range(query.since, query.until)
    w0, w1 = week_range(query.since, query.until)
    args: list[Any] = [query.since, query.until, d0, d1, w0, w1]
    where = filters_clause(query, args)
    # Weeks [w0, w1) from week rows, days [d0, w0) and [w1, d1) from day rows, the hours before d0
    # and from d1 from hour rows, each as far as that step is rolled up.
    text = f"""
WITH l0 AS (
    SELECT $3::timestamptz AS d0,
           greatest($3::timestamptz, least($4::timestamptz, coalesce(
               (SELECT done_until FROM endpoint_rollup_progress WHERE step_s = 86400), $3::timestamptz))) AS d1,
           $5::timestamptz AS w0,
           least($6::timestamptz, coalesce(
               (SELECT done_until FROM endpoint_rollup_progress WHERE step_s = 604800), $5::timestamptz)) AS w1),
lim AS (
    SELECT d0, d1, CASE WHEN w1 > w0 AND w1 <= d1 THEN w0 ELSE d0 END AS w0,
           CASE WHEN w1 > w0 AND w1 <= d1 THEN w1 ELSE d0 END AS w1
    FROM l0),
e AS (
    SELECT e.id, e.name, e.protocol, e.criticality, array_to_string(e.tags, ';') AS tags,
           greatest(0, extract(epoch FROM $2::timestamptz - greatest($1::timestamptz, e.created_at)))::float8
               AS period_s
    FROM endpoints e WHERE true{where}),
src AS (
    SELECT {_SRC} FROM endpoint_rollups r, lim
    WHERE r.step_s = 604800 AND r.bucket >= lim.w0 AND r.bucket < lim.w1 AND r.endpoint_id IN (SELECT id FROM e)
    UNION ALL
    SELECT {_SRC} FROM endpoint_rollups r, lim
    WHERE r.step_s = 86400 AND r.bucket >= lim.d0 AND r.bucket < lim.d1 AND (r.bucket < lim.w0 OR r.bucket >= lim.w1)
      AND r.endpoint_id IN (SELECT id FROM e)
    UNION ALL
    SELECT {_SRC} FROM endpoint_rollups r, lim
    WHERE r.step_s = 3600 AND r.bucket >= $1 AND r.bucket < $2 AND (r.bucket < lim.d0 OR r.bucket >= lim.d1)
      AND r.endpoint_id IN (SELECT id FROM e)),
a AS (
    SELECT endpoint_id, sum(checks) AS checks, sum(up) AS up, sum(degraded) AS degraded, sum(down) AS down,
           sum(maintenance) AS maintenance, sum(unknown) AS unknown, sum(downtime_s) AS downtime_s,
           sum(maintenance_s) AS maintenance_s, sum(outages) AS outages, sum(rt_count) AS rt_count,
           sum(rt_sum_ms) AS rt_sum_ms
    FROM src GROUP BY 1),
h AS (
    SELECT endpoint_id, bin, sum(n) AS n
    FROM (SELECT endpoint_id, unnest(rt_bins) AS bin, unnest(rt_counts) AS n FROM src) AS u GROUP BY 1, 2),
c AS (
    SELECT endpoint_id, bin, sum(n) OVER (PARTITION BY endpoint_id ORDER BY bin) AS c,
           sum(n) OVER (PARTITION BY endpoint_id) AS t
    FROM h),
p AS (
    SELECT endpoint_id, min(bin) FILTER (WHERE c >= ceil(0.50 * t)) AS p50,
           min(bin) FILTER (WHERE c >= ceil(0.95 * t)) AS p95, min(bin) FILTER (WHERE c >= ceil(0.99 * t)) AS p99
    FROM c GROUP BY 1),
f AS (
    SELECT e.*, least(e.period_s, coalesce(a.maintenance_s, 0)) AS m, coalesce(a.downtime_s, 0) AS d,
           coalesce(a.outages, 0) AS n, a.*, p.p50, p.p95, p.p99
    FROM e LEFT JOIN a ON a.endpoint_id = e.id LEFT JOIN p ON p.endpoint_id = e.id)
SELECT f.id, f.name, f.protocol, f.criticality, f.tags, f.period_s, f.m,
       least(f.d, f.period_s - f.m),
       CASE WHEN f.period_s - f.m > 0 THEN 100 * greatest(0, f.period_s - f.m - f.d) / (f.period_s - f.m) END,
       f.n, CASE WHEN f.n > 0 THEN f.d / f.n END,
       CASE WHEN f.n > 0 THEN greatest(0, f.period_s - f.m - f.d) / f.n END,
       coalesce(f.checks, 0), coalesce(f.up, 0), coalesce(f.degraded, 0), coalesce(f.down, 0),
       coalesce(f.maintenance, 0), coalesce(f.unknown, 0),
       {_pct("p50")}, {_pct("p95")}, {_pct("p99")},
       CASE WHEN f.rt_count > 0 THEN f.rt_sum_ms / f.rt_count END
FROM f
ORDER BY 9 ASC NULLS LAST, 1"""
    return text, args


COLUMNS = (
    Column("endpoint_id", "string", "Endpoint id", nullable=False),
    Column("name", "string", "Endpoint name", nullable=False),
    Column("protocol", "string", "Protocol", nullable=False),
    Column("criticality", "string", "Criticality", nullable=False),
    Column("tags", "string", "Tags, separated by ';'", nullable=False),
    Column("period_seconds", "number", "Seconds of the period the endpoint existed", nullable=False),
    Column("maintenance_seconds", "number", "Seconds inside its maintenance windows", nullable=False),
    Column("downtime_seconds", "number", "Seconds inside its outages, outside maintenance", nullable=False),
    Column("sla_percent", "number", "100 × (period - maintenance - downtime) / (period - maintenance)"),
    Column("outages", "integer", "Outages that started in the period", nullable=False),
    Column("mttr_seconds", "number", "Mean time to restore: downtime / outages"),
    Column("mtbf_seconds", "number", "Mean time between failures: uptime / outages"),
    Column("checks", "integer", "Checks", nullable=False),
    Column("up", "integer", "UP checks", nullable=False),
    Column("degraded", "integer", "DEGRADED checks", nullable=False),
    Column("down", "integer", "DOWN checks", nullable=False),
    Column("maintenance_checks", "integer", "Checks during maintenance (mute)", nullable=False),
    Column("unknown", "integer", "UNKNOWN checks (the monitor's own trouble)", nullable=False),
    Column("response_p50_ms", "number", "Median response time of UP/DEGRADED checks (±4.9 %)"),
    Column("response_p95_ms", "number", "95th percentile response time (±4.9 %)"),
    Column("response_p99_ms", "number", "99th percentile response time (±4.9 %)"),
    Column("response_avg_ms", "number", "Mean response time (exact)"),
)


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    period = sum(r["period_seconds"] for r in rows)
    maintenance = sum(r["maintenance_seconds"] for r in rows)
    downtime = sum(r["downtime_seconds"] for r in rows)
    judged = period - maintenance
    return {
        "endpoints": len(rows),
        "period_seconds": period,
        "maintenance_seconds": maintenance,
        "downtime_seconds": downtime,
        "sla_percent": 100 * max(0.0, judged - downtime) / judged if judged > 0 else None,
        "outages": sum(r["outages"] for r in rows),
        "below_99_9": sum(1 for r in rows if r["sla_percent"] is not None and r["sla_percent"] < 99.9),
    }


TOTALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["endpoints", "period_seconds", "maintenance_seconds", "downtime_seconds", "sla_percent", "outages",
                 "below_99_9"],
    "properties": {
        "endpoints": {"type": "integer"},
        "period_seconds": {"type": "number"},
        "maintenance_seconds": {"type": "number"},
        "downtime_seconds": {"type": "number"},
        "sla_percent": {"type": ["number", "null"], "description": "Over all endpoints, maintenance excluded"},
        "outages": {"type": "integer"},
        "below_99_9": {"type": "integer", "description": "Endpoints under 99.9 %"},
    },
}  # fmt: skip

KIND = ReportKind(
    name="availability",
    title="Availability",
    description="SLA % per endpoint with maintenance excluded, downtime, outages, MTTR, MTBF, p50/p95/p99",
    columns=COLUMNS,
    filters=frozenset({"tag", "endpoint"}),
    sql=sql,
    totals=totals,
    totals_schema=TOTALS_SCHEMA,
    charts=(
        Chart("Lowest SLA %", "endpoint_id", "sla_percent"),
        Chart("Most downtime (s)", "endpoint_id", "downtime_seconds"),
    ),
    pdf_columns=("endpoint_id", "sla_percent", "downtime_seconds", "maintenance_seconds", "outages", "mttr_seconds",
                 "response_p50_ms", "response_p95_ms", "response_p99_ms"),
)  # fmt: skip
