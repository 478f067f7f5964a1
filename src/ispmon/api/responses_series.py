"""JSON schemas of the time-series answers: interface metrics and percentiles, customer usage and
its summary.

The third of the response modules (beside `api.responses` and `api.responses_views`): each schema
names the function whose answer it describes and takes its field lists from the constants that
function uses (`METRIC_FIELDS` through `SAMPLE`, `ROLLUP_FIELDS`, the rollup `STEPS`, the usage
`STEPS`, the customer's `Period` and `counts`), so a field added there is declared here too;
tests/integration/api/test_api_devices.py, tests/integration/network/test_rollups.py and
tests/integration/api/test_api_usage.py validate real answers against the document.
"""

from __future__ import annotations

from typing import Any, get_args

from ispmon.api.responses import DATE_TIME, nullable, obj
from ispmon.api.responses_views import SAMPLE
from ispmon.services.usage_sources import SOURCES
from ispmon.store import rollups
from ispmon.store.usage_sessions import STEPS as USAGE_STEPS
from ispmon.usage.customers import CustomerSpec, Period

_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_ID: dict[str, Any] = {"type": "integer", "minimum": 1}
_RATE = nullable({"type": "number"})
_OCTETS = nullable(_COUNT)

# -- /interfaces/{id}/metrics: `NetworkService.interface_metrics` -----------------------------------
# `rollups.rollup_dict`: each rate's average under its own name, its min, max and p95 beside it.
ROLLUP_BUCKET = obj(
    {
        "at": DATE_TIME,
        "samples": {"type": "integer", "minimum": 1, "description": "Raw samples in the bucket"},
        "seconds": {"type": "number", "minimum": 0, "description": "Seconds the samples cover"},
        "in_octets": _OCTETS,
        "out_octets": _OCTETS,
        **{
            name: _RATE
            for f in rollups.ROLLUP_FIELDS
            for name in (f, *(f"{f}_{s}" for s in rollups.STATS if s != "avg"))
        },
    },
    title="InterfaceRollupBucket",
    additionalProperties=False,
)


def _metrics(steps: list[str], item: dict[str, Any]) -> dict[str, Any]:
    return obj(
        {
            "interface_id": _ID,
            "since": DATE_TIME,
            "until": DATE_TIME,
            "step": {"type": "string", "enum": steps},
            "items": {"type": "array", "items": item},
            "count": _COUNT,
        },
        additionalProperties=False,
    )


# Raw samples (`step=raw`, the shape of `store.interfaces.sample_dict`) or rollup buckets.
INTERFACE_METRICS = {
    "title": "InterfaceMetrics",
    "oneOf": [_metrics(["raw"], SAMPLE), _metrics(list(rollups.STEPS), ROLLUP_BUCKET)],
}

# -- /interfaces/{id}/percentile: `NetworkService.interface_percentile`, `rollups.percentile_finest`
INTERFACE_PERCENTILE = obj(
    {
        "interface_id": _ID,
        "since": DATE_TIME,
        "until": DATE_TIME,
        "percentile": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "bucket_s": {"type": "integer", "minimum": 1},
        "buckets": _COUNT,
        "sources": {
            "type": "object",
            "description": "How many buckets each source gave (the finest kept for each part of the range)",
            "propertyNames": {"enum": ["raw", *rollups.STEPS]},
            "additionalProperties": {"type": "integer", "minimum": 1},
        },
        "in_bps": _RATE,
        "out_bps": _RATE,
        "billable_bps": {**_RATE, "description": "max(in_bps, out_bps)"},
        "in_max_bps": _RATE,
        "out_max_bps": _RATE,
    },
    title="InterfacePercentile",
    additionalProperties=False,
)

# -- /customers/{id}/usage: `UsageService.customer_usage` (usage_rollups, flow_aggregates) ----------
# `usage_sources.figures`: one source's download and upload, labelled; always both, in SOURCES order.
_SOURCE_FIELDS: dict[str, Any] = {
    "source": {"type": "string", "enum": list(SOURCES)},
    "download_bytes": _COUNT,
    "upload_bytes": _COUNT,
    "total_bytes": _COUNT,
}
_SOURCES = {
    "type": "array",
    "description": "RADIUS accounting and flow figures side by side (radius first)",
    "items": obj(_SOURCE_FIELDS, title="UsageBySource", additionalProperties=False),
    "minItems": len(SOURCES),
    "maxItems": len(SOURCES),
}
CUSTOMER_USAGE = obj(
    {
        "customer_id": {"type": "string"},
        "since": DATE_TIME,
        "until": DATE_TIME,
        "step": {"type": "string", "enum": list(USAGE_STEPS)},
        "timezone": {"type": "string", "description": "The customer's (IANA name); steps start in it"},
        "items": {
            "type": "array",
            "items": obj(
                {
                    "start": DATE_TIME,
                    "bytes_in": _COUNT,
                    "bytes_out": _COUNT,
                    "bytes_total": _COUNT,
                    "sources": _SOURCES,
                },
                additionalProperties=False,
            ),
        },
        "bytes_in": {**_COUNT, "description": "RADIUS Acct-Input-Octets (the customer's upload)"},
        "bytes_out": {**_COUNT, "description": "RADIUS Acct-Output-Octets (the customer's download)"},
        "bytes_total": _COUNT,
        "sources": _SOURCES,
    },
    title="CustomerUsage",
    additionalProperties=False,
)

# -- /customers/{id}/usage/summary: `UsageService.usage_summary` -------------------------------------
_BYTES: dict[str, Any] = {"type": "integer"}  # a change may be negative
_SPAN = {"start": DATE_TIME, "end": DATE_TIME}
USAGE_SUMMARY = obj(
    {
        "customer_id": {"type": "string"},
        "period": obj(
            {"kind": {"type": "string", "enum": list(get_args(Period))}, **_SPAN}, additionalProperties=False
        ),
        "counts": {"type": "string", "enum": list(get_args(CustomerSpec.model_fields["counts"].annotation))},
        "quota_source": {
            "type": "string",
            "enum": list(get_args(CustomerSpec.model_fields["quota_source"].annotation)),
            "description": "What used_bytes, percent and the projection count (the customer's quota_source)",
        },
        "used_bytes": _COUNT,
        "bytes_in": _COUNT,
        "bytes_out": _COUNT,
        "quota_bytes": nullable(_COUNT),
        "percent": nullable({"type": "number", "minimum": 0}),
        "previous_period": obj({**_SPAN, "used_bytes": _COUNT}, additionalProperties=False),
        "change_bytes": {**_BYTES, "description": "The projected total minus the previous period's"},
        "change_percent": nullable({"type": "number"}),
        "projected_bytes": _COUNT,
        "quota_reached_at": nullable(DATE_TIME),
        "sources": {
            **_SOURCES,
            "description": "This period per source; used_bytes is what the quota would count from it",
            "items": obj(
                {**_SOURCE_FIELDS, "used_bytes": _COUNT}, title="PeriodUsageBySource", additionalProperties=False
            ),
        },
    },
    title="CustomerUsageSummary",
    additionalProperties=False,
)
