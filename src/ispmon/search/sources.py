"""What the feed reads: one `Source` per table (its query, its order key, its scan floor) and the
document function that turns its rows into documents.

Every query selects the rows whose writing transaction lies in the cursor's window
(`cursor.window_condition` on the row's ``xmin``), past the keyset position ``after`` within that
window, ordered by the source's key, at most ``limit``. Parameters: $1 watermark, $2 window end,
$3 scan floor, $4 limit, then the ``after`` key's parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ispmon.search import documents as d
from ispmon.search.bulk import Item
from ispmon.search.cursor import window_condition
from ispmon.search.status_lines import status_items

RowToDoc = Callable[[Mapping[str, Any], d.Observer], d.Doc]
# A whole batch straight to `Item`s (rows, observer, index prefix, the batch's ingest time).
RowsToItems = Callable[[Sequence[Mapping[str, Any]], d.Observer, str, datetime], list[Item]]


@dataclass(frozen=True)
class Source:
    key: str  # the cursor's name
    family: str  # the index family (templates.FAMILIES)
    select: str  # SELECT ... FROM ... (alias t is the table whose xmin counts)
    order: tuple[str, ...]  # keyset columns, as selected (and their SQL expressions)
    order_sql: tuple[str, ...]
    floor: str | None  # "id" (a sequence), "time" (a clock minus margin) or None (small table)
    floor_sql: str | None  # the column compared with the floor
    sequence: str | None = None
    margin: timedelta = timedelta(0)  # time floors: how far a row's time may trail its commit
    to_doc: RowToDoc | None = None
    extra_where: str = ""
    to_items: RowsToItems | None = None  # when set, used instead of to_doc (the hot path)

    def query(self, after: list[Any] | None) -> str:
        where = [window_condition("t.xmin", "$1", "$2"), self._floor_condition()]
        if self.extra_where:
            where.append(self.extra_where)
        if after is not None:
            cols = ", ".join(self.order_sql)
            params = ", ".join(f"${5 + i}" for i in range(len(self.order_sql)))
            where.append(f"({cols}) > ({params})")
        return f"{self.select} WHERE {' AND '.join(where)} ORDER BY {', '.join(self.order_sql)} LIMIT $4"

    def _floor_condition(self) -> str:
        if self.floor_sql is None:
            return "$3::bigint IS NOT DISTINCT FROM $3::bigint"  # no floor: small table, parameter unused
        return f"{self.floor_sql} > $3::{'bigint' if self.floor == 'id' else 'timestamptz'}"

    def key_of(self, row: Mapping[str, Any]) -> list[Any]:
        return [row[c] for c in self.order]

    def floor_param(self, value: int | datetime | None) -> Any:
        if self.floor == "id":
            return value if isinstance(value, int) else 0
        if self.floor == "time":
            return value if isinstance(value, datetime) else datetime(1970, 1, 1, tzinfo=UTC)
        return 0

    def count_query(self) -> str:
        """Rows in the window [$1, $2) past the floor $3, at most $4 counted (the backlog)."""
        where = [window_condition("t.xmin", "$1", "$2"), self._floor_condition()]
        if self.extra_where:
            where.append(self.extra_where)
        base = self.select.split(" FROM ", 1)[1]
        return f"SELECT count(*) FROM (SELECT 1 FROM {base} WHERE {' AND '.join(where)} LIMIT $4) s"


STATUS = Source(
    key="service_status",
    family="service_status",
    # Only what the document needs: of `details`, the HTTP status code as text when it is a JSON
    # number or boolean (what the dict builder kept), so no row's jsonb is decoded in Python.
    select=(
        "SELECT t.id, t.endpoint_id, t.checked_at, t.status, t.response_time_ms, t.error_kind, t.error,"
        " t.attempts, CASE WHEN jsonb_typeof(t.details->'status_code') IN ('number', 'boolean')"
        " THEN t.details->>'status_code' END AS status_code,"
        " e.name, e.protocol, e.url, e.criticality, e.tags"
        " FROM status_history t LEFT JOIN endpoints e ON e.id = t.endpoint_id"
    ),
    order=("id",),
    order_sql=("t.id",),
    floor="id",
    floor_sql="t.id",
    sequence="status_history_id_seq",
    to_items=status_items,
)

OUTAGES = Source(
    key="service_outage",
    family="service_outage",
    select=(
        "SELECT t.*, e.name, e.protocol, e.url, e.criticality, e.tags"
        " FROM outages t LEFT JOIN endpoints e ON e.id = t.endpoint_id"
    ),
    order=("id",),
    order_sql=("t.id",),
    floor=None,
    floor_sql=None,
    to_doc=d.outage_doc,
)

INTERFACES = Source(
    key="network_metrics.snmp",
    family="network_metrics",
    select=(
        "SELECT t.*, i.device_id, i.key, i.if_index, i.name AS if_name, i.alias, i.descr, i.speed_bps,"
        " dv.name AS device_name, dv.address, dv.tags"
        " FROM interface_metrics t JOIN interfaces i ON i.id = t.interface_id"
        " JOIN devices dv ON dv.id = i.device_id"
    ),
    order=("at", "interface_id"),
    order_sql=("t.at", "t.interface_id"),
    floor="time",
    floor_sql="t.at",
    # A poll's row is written within seconds of its time; an hour covers a database outage the
    # poller's writer rides out.
    margin=timedelta(hours=1),
    to_doc=d.interface_doc,
)

REPORTED = Source(
    key="network_metrics.reported",
    family="network_metrics",
    select="SELECT t.* FROM network_metrics t",
    order=("id",),
    order_sql=("t.id",),
    floor="id",
    floor_sql="t.id",
    sequence="network_metrics_id_seq",
    to_doc=d.reported_doc,
)

USAGE = Source(
    key="customer_usage",
    family="customer_usage",
    select=(
        "SELECT t.customer_id, t.start, t.bytes_in, t.bytes_out, c.name AS customer_name,"
        " (c.spec->>'quota_bytes')::bigint AS quota_bytes"
        " FROM usage_rollups t LEFT JOIN customers c ON c.id = t.customer_id"
    ),
    order=("start", "customer_id"),
    order_sql=("t.start", "t.customer_id"),
    floor="time",
    floor_sql="t.start",
    # An hour's row is updated by the records of that hour, which arrive within the NAS's interim
    # interval (plus Acct-Delay-Time); a day is generous.
    margin=timedelta(days=1),
    to_doc=d.usage_doc,
    extra_where="t.step = 'hour'",
)

LOGS = Source(
    key="system_logs",
    family="system_logs",
    select="SELECT t.* FROM system_logs t",
    order=("id",),
    order_sql=("t.id",),
    floor="id",
    floor_sql="t.id",
    sequence="system_logs_id_seq",
    to_doc=d.log_doc,
)

WINDOWS = Source(
    key="maintenance_windows",
    family="maintenance_windows",
    select="SELECT t.id, t.name, t.spec, t.source, t.updated_at FROM maintenance_windows t",
    order=("id",),
    order_sql=("t.id",),
    floor=None,
    floor_sql=None,
)

SOURCES: tuple[Source, ...] = (STATUS, OUTAGES, INTERFACES, REPORTED, USAGE, LOGS, WINDOWS)
