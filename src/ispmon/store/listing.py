"""One declaration per list route: the filters, the order and the paging of a list query.

Every list route filters a table by optional values, orders it by a unique key and pages it. A
`ListSpec` says that once, and everything else is derived from it:

* `ListSpec.query` -> ``(sql, args)``: a WHERE made of the filters that are present only (no
  ``$1 IS NULL OR ...`` chains: each statement says just what it filters, and its prepared plan is
  made for exactly that), ORDER BY the keyset, LIMIT, OFFSET, and the keyset condition of `after`.
  Values are always bind parameters; only the spec's own SQL fragments, written in this code base,
  are put into the text.
* `ListSpec.cursor` / `ListSpec.parse_cursor`: the opaque ``next_after`` token of a row (base64url
  of ``[list name, key values...]``), and the check of one sent back: a token of another list, or
  a damaged one, is refused.
* `ispmon.api.listing` turns the same spec into the route's query parameters, so the query string's
  validation and the OpenAPI document cannot disagree with the SQL.

Keyset paging (``after``) starts a page strictly after the last row seen, in the index's order: rows
inserted meanwhile neither repeat on the next page nor push rows off it, and the database reads only
the page's rows (an OFFSET reads and throws away every row it skips, which on a table of millions
of rows is the whole cost; see bench/listing.py). OFFSET stays beside it.

Pure: no database, no I/O; tested in tests/unit/store/test_listing.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

FilterType = Literal["text", "enum", "boolean", "integer", "date-time", "inet"]
KeyType = Literal["text", "integer", "date-time"]
# "any": the value is one element of an array column (tags); "is null": true -> IS NULL, false -> IS
# NOT NULL (e.g. active outages are the unresolved ones); "<<=": an inet column within an address
# or prefix.
Operator = Literal["=", ">=", "<", "any", "is null", "<<="]

_CAST: dict[str, str] = {
    "text": "text",
    "enum": "text",
    "boolean": "boolean",
    "integer": "bigint",
    "date-time": "timestamptz",
    "inet": "inet",
}
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
MAX_CURSOR_CHARS = 1024
MAX_TEXT_KEY = 1000
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")
CURSOR_PROBLEM = "must be the next_after value of a previous page of this list"


@dataclass(frozen=True)
class Filter:
    """One optional condition: query parameter `param` compared, by `op`, with the SQL `sql`."""

    param: str
    type: FilterType
    sql: str  # a column or an expression of the listed table, e.g. "coalesce(resolved_at, 'infinity')"
    op: Operator = "="
    description: str = ""
    key: str = ""  # the keyword in services and repositories; defaults to `param`
    choices: tuple[str, ...] = ()  # the values of an "enum" filter
    minimum: int | None = None  # for "integer" filters
    # Bound from the route's path (an endpoint's history), not the query string: always required.
    path: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.param)
        if (self.type == "enum") != bool(self.choices):
            raise ValueError(f"filter {self.param}: choices go with type 'enum', and only with it")
        if self.op == "is null" and self.type != "boolean":
            raise ValueError(f"filter {self.param}: 'is null' takes a boolean")
        if (self.op == "<<=") != (self.type == "inet"):
            raise ValueError(f"filter {self.param}: '<<=' goes with type 'inet', and only with it")

    def condition(self, value: Any, bind: _Binder) -> str:
        if self.op == "is null":
            if not isinstance(value, bool):
                raise TypeError(f"{self.key} must be a bool, not {type(value).__name__}")
            # Two fixed texts, chosen by the value: nothing of the value goes into the SQL.
            return f"{self.sql} IS NULL" if value else f"{self.sql} IS NOT NULL"
        placeholder = bind(value, _CAST[self.type])
        if self.op == "any":
            return f"{placeholder} = ANY({self.sql})"
        return f"{self.sql} {self.op} {placeholder}"


@dataclass(frozen=True)
class Key:
    """One column of the keyset order. The last key of a spec must be unique (the primary key)."""

    column: str
    type: KeyType
    field: str = ""  # its name in the listed items (the service's dicts); defaults to `column`

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", self.column)


class _Binder:
    """Collects bind parameters and hands out their placeholders ($1, $2, ...)."""

    def __init__(self) -> None:
        self.args: list[Any] = []

    def __call__(self, value: Any, cast: str) -> str:
        self.args.append(value)
        # The cast names the type for asyncpg: no guessing from context, same plan for every value.
        return f"${len(self.args)}::{cast}"


@dataclass(frozen=True)
class ListSpec:
    """A list route's query: `select` (``SELECT cols FROM table``), its filters, and its order."""

    name: str  # tags the cursors, so a cursor of one list is refused by another
    select: str
    filters: tuple[Filter, ...]
    keyset: tuple[Key, ...]
    descending: bool = False
    default_limit: int = 100
    max_limit: int = 1000
    _by_key: dict[str, Filter] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keyset:
            raise ValueError(f"list {self.name}: a keyset is required (its last key unique)")
        by_key = {f.key: f for f in self.filters}
        if len(by_key) != len(self.filters) or len({f.param for f in self.filters}) != len(self.filters):
            raise ValueError(f"list {self.name}: filter names and keys must be unique")
        object.__setattr__(self, "_by_key", by_key)

    @property
    def keys(self) -> frozenset[str]:
        """The keywords `query` accepts as filters."""
        return frozenset(self._by_key)

    def order_by(self) -> str:
        direction = " DESC" if self.descending else ""
        return ", ".join(f"{k.column}{direction}" for k in self.keyset)

    def query(
        self,
        filters: Mapping[str, Any],
        *,
        limit: int | None,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> tuple[str, list[Any]]:
        """The statement and its arguments. A filter given as None is absent; `limit` None is all rows."""
        unknown = set(filters) - self.keys
        if unknown:
            raise TypeError(f"list {self.name}: unknown filter(s) {', '.join(sorted(unknown))}")
        bind = _Binder()
        where: list[str] = []
        for spec in self.filters:
            value = filters.get(spec.key)
            if value is None:
                if spec.path:
                    raise TypeError(f"list {self.name}: {spec.key} is required")
                continue
            where.append(spec.condition(value, bind))
        if after is not None:
            if offset:
                raise ValueError("after and offset cannot be combined")
            where.append(self._after_condition(after, bind))
        sql = self.select
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {self.order_by()}"
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be at least 1, got {limit}")
            sql += f" LIMIT {bind(limit, 'bigint')}"
        if offset:
            if offset < 0:
                raise ValueError(f"offset must be at least 0, got {offset}")
            sql += f" OFFSET {bind(offset, 'bigint')}"
        return sql, bind.args

    def _after_condition(self, after: Sequence[Any], bind: _Binder) -> str:
        if len(after) != len(self.keyset):
            names = ", ".join(k.column for k in self.keyset)
            raise ValueError(f"after must have {len(self.keyset)} values ({names})")
        columns = ", ".join(k.column for k in self.keyset)
        values = ", ".join(
            bind(_key_value(k, v), _CAST[k.type]) for k, v in zip(self.keyset, after, strict=True)
        )
        # A row comparison is the keyset order itself: (a, b) < (x, y) means a < x or (a = x and b < y),
        # and a btree index on (a, b) answers it as a range scan.
        op = "<" if self.descending else ">"
        if len(self.keyset) == 1:
            return f"{columns} {op} {values}"
        return f"({columns}) {op} ({values})"

    # -- cursors ------------------------------------------------------------------------------------
    def cursor(self, item: Mapping[str, Any]) -> str:
        """The opaque token of `item`'s position: the next page starts after it."""
        values = [_key_json(k, item[k.field]) for k in self.keyset]
        raw = json.dumps([self.name, *values], separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def parse_cursor(self, token: str) -> tuple[Any, ...]:
        """The keyset values of a token made by `cursor`; ValueError (CURSOR_PROBLEM) otherwise."""
        token = token.strip()
        if not 0 < len(token) <= MAX_CURSOR_CHARS or not _TOKEN_RE.fullmatch(token):
            raise ValueError(CURSOR_PROBLEM)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            decoded = json.loads(raw.decode("utf-8"))
        except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
            raise ValueError(CURSOR_PROBLEM) from None
        if not isinstance(decoded, list) or len(decoded) != len(self.keyset) + 1 or decoded[0] != self.name:
            raise ValueError(CURSOR_PROBLEM)
        try:
            return tuple(_key_from_json(k, v) for k, v in zip(self.keyset, decoded[1:], strict=True))
        except (TypeError, ValueError):
            raise ValueError(CURSOR_PROBLEM) from None

    def page(self, rows: Sequence[Any], limit: int) -> tuple[list[Any], str | None]:
        """`rows` fetched with ``limit + 1``: the page, and the cursor after it when more rows follow.

        Rows are the service's dicts or asyncpg records: anything with the keys' fields by name."""
        items = list(rows[:limit])
        return items, (self.cursor(items[-1]) if len(rows) > limit else None)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("a keyset date-time must carry its offset")
    return value.astimezone(UTC)


def _key_value(key: Key, value: Any) -> Any:
    """A keyset value as the database takes it (a Python caller may pass an ISO string)."""
    if key.type == "date-time":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"after: {key.column} must be a datetime, not {type(value).__name__}")
        return _aware(value)
    if key.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"after: {key.column} must be an int, not {type(value).__name__}")
        return value
    if not isinstance(value, str):
        raise TypeError(f"after: {key.column} must be a str, not {type(value).__name__}")
    return value


def _key_json(key: Key, value: Any) -> Any:
    value = _key_value(key, value)
    # isoformat keeps the microseconds: PostgreSQL's timestamptz precision, so the round trip is exact.
    return value.isoformat() if isinstance(value, datetime) else value


def _key_from_json(key: Key, value: Any) -> Any:
    if key.type == "date-time":
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError(CURSOR_PROBLEM)
        return _aware(datetime.fromisoformat(value))
    if key.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int) or not BIGINT_MIN <= value <= BIGINT_MAX:
            raise ValueError(CURSOR_PROBLEM)
        return value
    if not isinstance(value, str) or len(value) > MAX_TEXT_KEY or "\x00" in value:
        raise ValueError(CURSOR_PROBLEM)
    value.encode("utf-8")  # a lone surrogate from a \ud800 escape: UnicodeEncodeError, a ValueError
    return value
