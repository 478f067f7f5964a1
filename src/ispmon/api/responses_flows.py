"""JSON schemas of the flow answers: declared exporters, top talkers, series and a customer's traffic.

Beside `api.responses`, `api.responses_views` and `api.responses_series`: each schema names the
function whose answer it describes and takes its field lists from that code's constants where they
exist (`ExporterSpec`'s fields, `TOP_KEYS`), so a field added there is declared here too;
tests/integration/flows/test_softflowd.py validates real answers (softflowd's exports) against the
document.
"""

from __future__ import annotations

import copy
from typing import Any

from ispmon.api.responses import DATE_TIME, REF, nullable, obj
from ispmon.flows.exporters import ExporterSpec
from ispmon.services.flows import TOP_KEYS
from ispmon.store.flow_records import FIELDS as RECORD_FIELDS

_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_WINDOW = {"since": DATE_TIME, "until": DATE_TIME}

# -- /flows/exporters: `FlowService.list_exporters` ------------------------------------------------
# `ExporterState.counters`: what the running decoder has seen of the exporter since it started.
EXPORTER_STATS = obj(
    {
        "packets": _COUNT,
        "flows": _COUNT,
        "templates": _COUNT,
        "sequence_gaps": _COUNT,
        "malformed": _COUNT,
        "pending": {**_COUNT, "description": "Data sets held until their template comes"},
        "pending_dropped": _COUNT,
        "implausible_time": _COUNT,
        "sampling_rate": {"type": "integer", "minimum": 1},
        "last_seen": nullable({"type": "number", "description": "Unix seconds of its last packet"}),
    },
    title="FlowExporterStats",
    additionalProperties=False,
)


def _spec(title: str) -> dict[str, Any]:
    """`ExporterSpec`'s dump: every field present (defaults filled in), nothing else."""
    schema = copy.deepcopy(ExporterSpec.model_json_schema(mode="serialization", ref_template=REF))
    schema["required"] = list(schema["properties"])
    schema["title"] = title
    schema["additionalProperties"] = False
    return schema


# POST /flows/exporters: `FlowService.add_exporter` answers the validated spec.
DECLARED_EXPORTER = _spec("DeclaredFlowExporter")


def _exporter() -> dict[str, Any]:
    """A `flow_exporters` row (`FlowStore.exporters`: `ExporterSpec`'s fields and its source) with
    the decoder's counters (null when the API runs without the collector's decoder)."""
    schema = _spec("FlowExporter")
    props = schema["properties"]
    props["source"] = {"type": "string", "enum": ["api", "config"]}
    props["stats"] = nullable(EXPORTER_STATS)
    schema["required"] = list(props)
    return schema


# `Collector.counters`: the listener's socket and flushes since the daemon started.
COLLECTOR_STATS = obj(
    {
        "datagrams": {**_COUNT, "description": "Datagrams read from the socket (any source)"},
        "kernel_drops": {
            **_COUNT,
            "description": "Datagrams the kernel dropped because the receive buffer was full (SO_RXQ_OVFL; "
            "seen when the next datagram arrives)",
        },
        "receive_buffer": {
            **_COUNT,
            "description": "Bytes of receive buffer the kernel granted (FLOW_RCVBUF)",
        },
        "batches": {**_COUNT, "description": "Aggregate batches written"},
        "write_failures": {**_COUNT, "description": "Failed writes since the last one that succeeded"},
        "raw": nullable(
            obj(
                {
                    "queued": {**_COUNT, "description": "Records waiting to be written"},
                    "written": _COUNT,
                    "dropped": {
                        **_COUNT,
                        "description": "Records not kept: the queue was full (FLOW_RAW_MAX_QUEUED)",
                    },
                },
                description="Raw record keeping (`RawKeeper.counters`); null when FLOW_RAW_HOURS is 0",
                additionalProperties=False,
            )
        ),
        "shared": nullable(
            obj(
                {
                    "published": {
                        **_COUNT,
                        "description": "Exporter domains whose templates or options were "
                        "written for the other agents",
                    },
                    "installed": {
                        **_COUNT,
                        "description": "Exporter domains read from another agent that "
                        "decoded data held for want of a template",
                    },
                    "failures": {**_COUNT, "description": "Syncs that failed (the database was away)"},
                    "heard_by_other_agents": {
                        "type": "array",
                        "description": "Exporters another agent hears too, without a break (sent to both: "
                        "counted twice)",
                        "items": obj(
                            {"exporter": {"type": "string"}, "agent": {"type": "string"}},
                            additionalProperties=False,
                        ),
                    },
                },
                description="What the collector shares with the other agents (`DomainShare.counters`)",
                additionalProperties=False,
            )
        ),
    },
    title="FlowCollectorStats",
    additionalProperties=False,
)

FLOW_EXPORTERS = obj(
    {
        "items": {"type": "array", "items": _exporter()},
        "unknown_exporters": obj(
            {"packets": _COUNT, "sources": {**_COUNT, "description": "Distinct addresses (at most 1000)"}},
            description="Packets from addresses no exporter is declared with (dropped)",
            additionalProperties=False,
        ),
        "collector": nullable({**COLLECTOR_STATS, "description": "Null when no listener runs (FLOW_PORT=0)"}),
    },
    title="FlowExporters",
    additionalProperties=False,
)

# -- /flows/top: `FlowService.top`, `FlowStore.top` --------------------------------------------------
FLOW_TOP = obj(
    {
        "by": {"type": "string", "enum": list(TOP_KEYS)},
        **_WINDOW,
        "items": {
            "type": "array",
            "items": obj(
                {
                    "key": {
                        "type": "string",
                        "description": "The prefix, protocol number, port, customer id or "
                        "exporter:in_if>out_if (as text, whatever `by`)",
                    },
                    "bytes": _COUNT,
                    "packets": _COUNT,
                    "flows": _COUNT,
                },
                additionalProperties=False,
            ),
        },
    },
    title="FlowTop",
    additionalProperties=False,
)

# -- /flows/series: `FlowService.series`, `FlowStore.series` -----------------------------------------
FLOW_SERIES = obj(
    {
        **_WINDOW,
        "step": {"type": "integer", "minimum": 60},
        "items": {
            "type": "array",
            "items": obj({"at": DATE_TIME, "bytes": _COUNT, "packets": _COUNT}, additionalProperties=False),
        },
    },
    title="FlowSeries",
    additionalProperties=False,
)

# -- /customers/{id}/traffic: `FlowService.customer_traffic`, `FlowStore.customer_traffic` -----------
CUSTOMER_TRAFFIC = obj(
    {
        "customer_id": {"type": "string"},
        **_WINDOW,
        "download_bytes": _COUNT,
        "upload_bytes": _COUNT,
        "download_packets": _COUNT,
        "upload_packets": _COUNT,
        "source": {"type": "string", "enum": ["flow"]},
        "protocols": {
            "type": "array",
            "description": "The top 10 IP protocols by bytes",
            "items": obj(
                {"proto": {"type": "integer", "minimum": 0, "maximum": 255}, "bytes": _COUNT},
                additionalProperties=False,
            ),
        },
        "peers": {
            "type": "array",
            "description": "The top 10 far-side prefixes by bytes",
            "items": obj({"peer": {"type": "string"}, "bytes": _COUNT}, additionalProperties=False),
        },
    },
    title="CustomerTraffic",
    additionalProperties=False,
)


# -- /flows/records: `FlowService.list_records` (flow_records rows, `RECORD_LIST`'s columns) -------
_RECORD_TYPES: dict[str, dict[str, Any]] = {
    "id": {"type": "integer", "minimum": 1},
    "at": {**DATE_TIME, "description": "When the flow ended (its bucket time)"},
    "exporter_id": {"type": "string"},
    "in_if": _COUNT,
    "out_if": _COUNT,
    "src_addr": {"type": "string", "description": "An IPv4 or IPv6 address"},
    "dst_addr": {"type": "string", "description": "An IPv4 or IPv6 address"},
    "proto": {"type": "integer", "minimum": 0, "maximum": 255},
    "src_port": {"type": "integer", "minimum": 0, "maximum": 65535},
    "dst_port": {"type": "integer", "minimum": 0, "maximum": 65535},
    "bytes": {**_COUNT, "description": "Sampling applied"},
    "packets": {**_COUNT, "description": "Sampling applied"},
}
if tuple(_RECORD_TYPES) != RECORD_FIELDS:
    raise RuntimeError("flow_records' columns and their schema disagree")
FLOW_RECORD = obj(_RECORD_TYPES, title="FlowRecord", additionalProperties=False)
