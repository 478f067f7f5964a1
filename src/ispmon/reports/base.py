"""The one small interface every report kind implements, and the query it is asked.

A kind is a `ReportKind`: its columns (typed, so JSON, CSV and PDF agree and the API's schema is
derived), the filters it accepts, the SQL that yields its rows (read through a server-side cursor,
so CSV streams), totals over its rows, and what its PDF charts. A new kind is one module with one
`KIND` and a line in `ispmon.reports.kinds.KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

ColumnType = Literal["string", "integer", "number", "date-time"]
FILTERS = ("tag", "endpoint", "device", "customer")
FORMATS = ("json", "csv", "pdf")
MEDIA_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    description: str
    nullable: bool = True


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What to report on: [since, until) and the filters (None: not given)."""

    since: datetime
    until: datetime
    tag: str | None = None
    endpoint: str | None = None
    device: str | None = None
    customer: str | None = None
    top: int = 100
    table: str | None = None  # the CSV's table: None for the rows, else a section's name
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def filters(self) -> dict[str, str]:
        return {k: v for k in FILTERS if (v := getattr(self, k)) is not None}


@dataclass(frozen=True, slots=True)
class Chart:
    """A bar chart of `value` per `label` over the first `limit` rows (or the totals' `group`)."""

    title: str
    label: str
    value: str
    limit: int = 20
    group: str | None = None  # a key of the totals holding {label: {value: ...}} instead of rows


@dataclass(frozen=True, slots=True)
class Section:
    """A second table of a kind (the network report's latency and loss beside its interfaces): its
    own columns, SQL and totals; in JSON under ``sections.<name>``, in CSV with ``table=<name>``."""

    name: str
    title: str
    columns: tuple[Column, ...]
    sql: Callable[[ReportQuery], tuple[str, list[Any]]]
    totals: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]
    totals_schema: dict[str, Any]
    charts: tuple[Chart, ...] = ()
    pdf_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ReportKind:
    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    filters: frozenset[str]
    # (query) -> (SQL, args); the SQL selects exactly `columns`, in order.
    sql: Callable[[ReportQuery], tuple[str, list[Any]]]
    # (rows as JSON dicts) -> totals (JSON); its schema is `totals_schema`.
    totals: Callable[[Sequence[Mapping[str, Any]]], dict[str, Any]]
    totals_schema: dict[str, Any]
    charts: tuple[Chart, ...] = ()
    # Columns the PDF's table shows (all when empty): a page is narrower than a spreadsheet.
    pdf_columns: tuple[str, ...] = ()
    sections: tuple[Section, ...] = ()


def value(column: Column, raw: Any) -> Any:
    """A database value as JSON: date-times in ISO 8601 UTC, numerics as numbers."""
    if raw is None:
        return None
    if column.type == "date-time":
        return raw.astimezone(UTC).isoformat()
    if column.type == "integer":
        return int(raw)
    if column.type == "number":
        return float(raw)
    if isinstance(raw, list):
        return ";".join(map(str, raw))
    return str(raw) if isinstance(raw, Decimal) else raw


def as_dict(kind: ReportKind | Section, record: Sequence[Any]) -> dict[str, Any]:
    return {c.name: value(c, r) for c, r in zip(kind.columns, record, strict=True)}


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + timedelta(hours=1)


def file_name(kind: str, since: datetime, until: datetime, fmt: str, table: str | None = None) -> str:
    """``ispmon-<kind>-<since>-<until>.<fmt>``: the kind and the period, UTC, no characters a file
    system or a Content-Disposition header dislikes; a CSV of a section is ``<kind>-<table>``
    (JSON and PDF hold every table)."""
    if table is not None and fmt == "csv":
        kind = f"{kind}-{table}"

    def stamp(at: datetime) -> str:
        at = at.astimezone(UTC)
        return at.strftime("%Y%m%d") if at.time() == datetime.min.time() else at.strftime("%Y%m%dT%H%MZ")

    return f"ispmon-{kind}-{stamp(since)}-{stamp(until)}.{fmt}"


def filters_clause(query: ReportQuery, args: list[Any], alias: str = "e") -> str:
    """`AND ...` for the endpoint filters (tag, endpoint id) on the endpoints table `alias`."""
    out = ""
    if query.tag is not None:
        args.append(query.tag)
        out += f" AND ${len(args)} = ANY({alias}.tags)"
    if query.endpoint is not None:
        args.append(query.endpoint)
        out += f" AND {alias}.id = ${len(args)}"
    return out
