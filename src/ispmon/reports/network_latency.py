"""The network report's second table: latency and loss per ICMP endpoint over [since, until).

Read from the raw check history (status_history: ICMP checks keep each reply's RTT in
``details.rtts_ms`` and the packets in ``details.packets_sent``), the same facts as
``GET /network/latency/{id}`` (`ispmon.network.latency`): the percentiles are taken over every
packet of the period, not over the checks' averages, with percentile_cont (linear interpolation,
as `latency.percentile`); a reply is one RTT, loss = (sent - received) / sent, never below 0. Rows
made before RTTs were stored count their average RTT once per reply received. Raw history is kept
CLEANUP_RETENTION_DAYS, so a longer period is answered for the days still kept; the query reads
only the period's daily partitions of the filtered endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ispmon.reports.base import Chart, Column, ReportQuery, Section, filters_clause


def sql(query: ReportQuery) -> tuple[str, list[Any]]:
    args: list[Any] = [query.since, query.until]
    where = filters_clause(query, args)
    text = f"""
WITH e AS (SELECT e.id, e.name, e.url FROM endpoints e WHERE e.protocol = 'icmp'{where}),
h AS (
    SELECT h.endpoint_id, floor((h.details->>'packets_sent')::numeric)::bigint AS sent, h.details AS d
    FROM status_history h
    WHERE h.checked_at >= $1 AND h.checked_at < $2 AND h.endpoint_id IN (SELECT id FROM e)
      AND jsonb_typeof(h.details->'packets_sent') = 'number'),
v AS (
    SELECT h.endpoint_id, (x #>> '{{}}')::float8 AS r
    FROM h, jsonb_array_elements(CASE WHEN jsonb_typeof(h.d->'rtts_ms') = 'array' THEN h.d->'rtts_ms'
                                      ELSE '[]'::jsonb END) AS x
    WHERE jsonb_typeof(x) = 'number'
    UNION ALL
    SELECT h.endpoint_id, (h.d->>'rtt_avg_ms')::float8
    FROM h, generate_series(1, CASE WHEN jsonb_typeof(h.d->'rtts_ms') IS DISTINCT FROM 'array'
                                         AND jsonb_typeof(h.d->'packets_received') = 'number'
                                         AND jsonb_typeof(h.d->'rtt_avg_ms') = 'number'
                                    THEN greatest(floor((h.d->>'packets_received')::numeric)::int, 0)
                                    ELSE 0 END)),
c AS (SELECT endpoint_id, count(*) AS checks, sum(sent) AS sent FROM h GROUP BY 1),
p AS (SELECT endpoint_id, count(*) AS received, min(r) AS rmin, avg(r) AS ravg,
             percentile_cont(0.5) WITHIN GROUP (ORDER BY r) AS rp50,
             percentile_cont(0.95) WITHIN GROUP (ORDER BY r) AS rp95, max(r) AS rmax
      FROM v GROUP BY 1),
j AS (
    SELECT e.id, e.name, e.url, coalesce(c.checks, 0) AS checks, coalesce(c.sent, 0) AS sent,
           coalesce(p.received, 0) AS received,
           CASE WHEN c.sent > 0 THEN 100.0 * greatest(c.sent - coalesce(p.received, 0), 0) / c.sent END AS loss,
           p.rmin, p.ravg, p.rp50, p.rp95, p.rmax
    FROM e LEFT JOIN c ON c.endpoint_id = e.id LEFT JOIN p ON p.endpoint_id = e.id)
SELECT id, name, url, checks, sent, received, loss, rmin, ravg, rp50, rp95, rmax FROM j
ORDER BY loss DESC NULLS LAST, rp95 DESC NULLS LAST, id"""
    return text, args


COLUMNS = (
    Column("endpoint_id", "string", "Endpoint id (an ICMP check)", nullable=False),
    Column("endpoint_name", "string", "Endpoint name", nullable=False),
    Column("target", "string", "The host pinged (the endpoint's url)", nullable=False),
    Column("checks", "integer", "Checks in the period (raw history still kept)", nullable=False),
    Column("packets_sent", "integer", "Echo requests sent", nullable=False),
    Column("packets_received", "integer", "Replies received", nullable=False),
    Column("loss_pct", "number", "Packets lost, % of those sent"),
    Column("rtt_min_ms", "number", "Fastest reply, ms"),
    Column("rtt_avg_ms", "number", "Mean RTT over every reply, ms"),
    Column("rtt_median_ms", "number", "Median RTT over every reply, ms"),
    Column("rtt_p95_ms", "number", "95th percentile RTT over every reply (interpolated), ms"),
    Column("rtt_max_ms", "number", "Slowest reply, ms"),
)


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    sent = sum(r["packets_sent"] for r in rows)
    received = sum(r["packets_received"] for r in rows)
    p95 = [r["rtt_p95_ms"] for r in rows if r["rtt_p95_ms"] is not None]
    return {
        "endpoints": len(rows),
        "with_data": sum(1 for r in rows if r["checks"] > 0),
        "packets_sent": sent,
        "packets_received": received,
        "loss_pct": 100.0 * max(sent - received, 0) / sent if sent else None,
        "worst_p95_ms": max(p95) if p95 else None,
    }


TOTALS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["endpoints", "with_data", "packets_sent", "packets_received", "loss_pct", "worst_p95_ms"],
    "properties": {
        "endpoints": {"type": "integer"},
        "with_data": {"type": "integer", "description": "Endpoints with checks in the period"},
        "packets_sent": {"type": "integer"},
        "packets_received": {"type": "integer"},
        "loss_pct": {"type": ["number", "null"], "description": "Loss over every packet of every endpoint, %"},
        "worst_p95_ms": {"type": ["number", "null"], "description": "The highest endpoint p95 RTT, ms"},
    },
}

SECTION = Section(
    name="latency",
    title="Latency and loss (ICMP)",
    columns=COLUMNS,
    sql=sql,
    totals=totals,
    totals_schema=TOTALS_SCHEMA,
    charts=(Chart("Most loss (%)", "endpoint_id", "loss_pct"),),
    pdf_columns=("endpoint_id", "target", "checks", "packets_sent", "packets_received", "loss_pct", "rtt_min_ms",
                 "rtt_avg_ms", "rtt_median_ms", "rtt_p95_ms", "rtt_max_ms"),
)  # fmt: skip
