"""The network report: per interface over [since, until), from the interface rollups.

Rates are the 5-minute rollups' averages where they are kept (INTERFACE_ROLLUP_5M_RETENTION_DAYS),
else the 1-hour ones: the mean (weighted by the seconds covered), the 95th percentile (nearest rank
of those averages, as carriers bill), ``max_p95_bps`` = the larger of in and out p95 (the
billing figure), the largest average, utilisation, and errors and discards counted (rate × seconds).
Latency and loss per ICMP endpoint are its second table (`network_latency`). The `device` filter
narrows the interfaces; `tag` and `endpoint` narrow the latency table (interfaces carry no tags).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ispmon.reports import network_latency
from ispmon.reports.base import Chart, Column, ReportKind, ReportQuery


def sql(query: ReportQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.since, query.until]
    where = ""
    if query.device is not None:
        args.append(query.device)
        where = f" AND i.device_id = ${len(args)}"
    text = f"""
WITH i AS (
    SELECT i.id, i.device_id, coalesce(d.name, i.device_id) AS device_name, i.name, i.speed_bps
    FROM interfaces i LEFT JOIN devices d ON d.id = i.device_id WHERE true{where}),
s AS (
    SELECT interface_id, min(step_s) AS step FROM interface_rollups
    WHERE step_s IN (300, 3600) AND bucket >= $1 AND bucket < $2 AND interface_id IN (SELECT id FROM i)
    GROUP BY 1),
r AS (
    SELECT r.* FROM interface_rollups r JOIN s ON s.interface_id = r.interface_id AND s.step = r.step_s
    WHERE r.bucket >= $1 AND r.bucket < $2),
a AS (
    SELECT interface_id, min(step_s) AS step, sum(seconds) AS seconds,
           sum(in_bps_avg * seconds) / nullif(sum(seconds) FILTER (WHERE in_bps_avg IS NOT NULL), 0) AS in_avg,
           sum(out_bps_avg * seconds) / nullif(sum(seconds) FILTER (WHERE out_bps_avg IS NOT NULL), 0) AS out_avg,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY in_bps_avg) AS in_p95,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY out_bps_avg) AS out_p95,
           max(in_bps_avg) AS in_max, max(out_bps_avg) AS out_max,
           sum(in_util_pct_avg * seconds) / nullif(sum(seconds) FILTER (WHERE in_util_pct_avg IS NOT NULL), 0)
               AS in_util,
           sum(out_util_pct_avg * seconds) / nullif(sum(seconds) FILTER (WHERE out_util_pct_avg IS NOT NULL), 0)
               AS out_util,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY in_util_pct_avg) AS in_util_p95,
           percentile_disc(0.95) WITHIN GROUP (ORDER BY out_util_pct_avg) AS out_util_p95,
           sum(in_errors_ps_avg * seconds) AS in_errors, sum(out_errors_ps_avg * seconds) AS out_errors,
           sum(in_discards_ps_avg * seconds) AS in_discards, sum(out_discards_ps_avg * seconds) AS out_discards
    FROM r GROUP BY 1)
SELECT i.device_id, i.device_name, i.name, i.speed_bps, a.step, coalesce(a.seconds, 0), a.in_avg, a.out_avg,
       a.in_p95, a.out_p95, greatest(a.in_p95, a.out_p95), a.in_max, a.out_max, a.in_util, a.out_util,
       a.in_util_p95, a.out_util_p95, a.in_errors, a.out_errors, a.in_discards, a.out_discards
FROM i LEFT JOIN a ON a.interface_id = i.id
ORDER BY greatest(a.in_util_p95, a.out_util_p95) DESC NULLS LAST, i.device_id, i.name"""
    return text, args


COLUMNS = (
    Column("device_id", "string", "Device id", nullable=False),
    Column("device_name", "string", "Device name", nullable=False),
    Column("interface", "string", "Interface name (ifName)", nullable=False),
    Column("speed_bps", "integer", "Interface speed, bit/s"),
    Column("step_seconds", "integer", "Rollup step the figures come from (300 or 3600)"),
    Column("seconds", "number", "Seconds covered by samples", nullable=False),
    Column("in_avg_bps", "number", "Mean inbound rate, bit/s"),
    Column("out_avg_bps", "number", "Mean outbound rate, bit/s"),
    Column("in_p95_bps", "number", "95th percentile inbound, bit/s"),
    Column("out_p95_bps", "number", "95th percentile outbound, bit/s"),
    Column("max_p95_bps", "number", "The larger of in and out p95, bit/s"),
    Column("in_max_bps", "number", "Largest inbound step average, bit/s"),
    Column("out_max_bps", "number", "Largest outbound step average, bit/s"),
    Column("in_util_avg_pct", "number", "Mean inbound utilisation, %"),
    Column("out_util_avg_pct", "number", "Mean outbound utilisation, %"),
    Column("in_util_p95_pct", "number", "95th percentile inbound utilisation, %"),
    Column("out_util_p95_pct", "number", "95th percentile outbound utilisation, %"),
    Column("in_errors", "number", "Inbound errors counted"),
    Column("out_errors", "number", "Outbound errors counted"),
    Column("in_discards", "number", "Inbound discards counted"),
    Column("out_discards", "number", "Outbound discards counted"),
)


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    util = [max(r["in_util_p95_pct"] or 0.0, r["out_util_p95_pct"] or 0.0) for r in rows]
    return {
        "interfaces": len(rows),
        "with_data": sum(1 for r in rows if r["seconds"] > 0),
        "above_80_pct_p95": sum(1 for u in util if u > 80),
        "errors": sum((r["in_errors"] or 0.0) + (r["out_errors"] or 0.0) for r in rows),
        "discards": sum((r["in_discards"] or 0.0) + (r["out_discards"] or 0.0) for r in rows),
    }


TOTALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["interfaces", "with_data", "above_80_pct_p95", "errors", "discards"],
    "properties": {
        "interfaces": {"type": "integer"},
        "with_data": {"type": "integer"},
        "above_80_pct_p95": {"type": "integer", "description": "Interfaces whose p95 utilisation is above 80 %"},
        "errors": {"type": "number"},
        "discards": {"type": "number"},
    },
}

KIND = ReportKind(
    name="network",
    title="Network",
    description="Utilisation per interface, 95th percentile in/out/max, errors and discards; latency and loss"
    " per ICMP endpoint (sections.latency; CSV with table=latency). device filters interfaces, tag and"
    " endpoint the latency table",
    columns=COLUMNS,
    filters=frozenset({"device", "tag", "endpoint"}),
    sql=sql,
    totals=totals,
    totals_schema=TOTALS_SCHEMA,
    charts=(Chart("Busiest interfaces: p95 in (bit/s)", "interface", "in_p95_bps"),),
    pdf_columns=("device_id", "interface", "in_p95_bps", "out_p95_bps", "max_p95_bps", "in_util_p95_pct",
                 "out_util_p95_pct", "in_errors", "out_errors"),
    sections=(network_latency.SECTION,),
)  # fmt: skip
