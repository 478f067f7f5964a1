"""Checking what a report is asked for, the same way for the API, the CLI and the schedules:
every problem is a (field, message) pair, so the API can answer 400 naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ispmon.reports.base import FILTERS, ReportKind, ReportQuery, floor_hour
from ispmon.reports.kinds import KINDS

MAX_RANGE = timedelta(days=3660)
DEFAULT_RANGE = timedelta(days=30)


class QueryError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def kind_named(name: str) -> ReportKind:
    kind = KINDS.get(name)
    if kind is None:
        raise QueryError("kind", f"no report kind {name[:40]!r} (kinds: {', '.join(KINDS)})")
    return kind


def build(
    kind: ReportKind,
    since: datetime | None,
    until: datetime | None,
    filters: dict[str, str | None],
    *,
    top: int = 100,
    table: str | None = None,
    now: datetime | None = None,
) -> ReportQuery:
    """The query, with [since, until) taken to whole hours (UTC; rollups have hour resolution).
    Defaults: until the start of this hour, since 30 days before until."""
    now = now or datetime.now(UTC)
    for name, val in filters.items():
        if name not in FILTERS:
            raise QueryError(name, f"not a report filter (filters: {', '.join(FILTERS)})")
        if val is not None and name not in kind.filters:
            accepted = ", ".join(sorted(kind.filters)) or "none"
            raise QueryError(name, f"the {kind.name} report has no {name} filter (it takes: {accepted})")
    end = floor_hour(until.astimezone(UTC)) if until is not None else floor_hour(now)
    start = floor_hour(since.astimezone(UTC)) if since is not None else end - DEFAULT_RANGE
    if end <= start:
        raise QueryError("until", "must be at least one whole hour after since (reports have hour resolution)")
    if end - start > MAX_RANGE:
        raise QueryError("since", f"the period must be at most {MAX_RANGE.days} days")
    if not 1 <= top <= 10000:
        raise QueryError("top", "must be between 1 and 10000")
    names = [s.name for s in kind.sections]
    if table is not None and table not in names:
        tables = ", ".join(names) or "none"
        raise QueryError("table", f"the {kind.name} report has no table {table[:40]!r} (tables: {tables})")
    given = {k: v for k, v in filters.items() if v is not None}
    return ReportQuery(start, end, top=top, table=table, now=now, **given)
