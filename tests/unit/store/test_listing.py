"""The list query builder (`ispmon.store.listing`): SQL from present filters only, values always
bound, keyset conditions and cursors that round-trip and refuse anything else."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ispmon.store.listing import CURSOR_PROBLEM, Filter, Key, ListSpec

SPEC = ListSpec(
    "things",
    "SELECT id, started_at FROM things",
    filters=(
        Filter("service", "text", "endpoint_id", key="endpoint_id"),
        Filter("severity", "enum", "severity", choices=("minor", "major")),
        Filter("tag", "text", "tags", op="any"),
        Filter("active", "boolean", "resolved_at", op="is null"),
        Filter("alert", "integer", "alert_id", key="alert_id", minimum=1),
        Filter("since", "date-time", "coalesce(resolved_at, 'infinity')", op=">="),
        Filter("until", "date-time", "started_at", op="<"),
    ),
    keyset=(Key("started_at", "date-time", field="when"), Key("id", "integer")),
    descending=True,
)
BY_ID = ListSpec("ids", "SELECT id FROM eps", filters=(), keyset=(Key("id", "text"),))
T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_no_filters_is_order_and_limit_only() -> None:
    sql, args = SPEC.query({}, limit=100)
    assert sql == "SELECT id, started_at FROM things ORDER BY started_at DESC, id DESC LIMIT $1::bigint"
    assert args == [100]


def test_only_present_filters_reach_the_sql_and_values_are_bound() -> None:
    sql, args = SPEC.query({"endpoint_id": "web", "severity": None, "until": T0}, limit=10, offset=20)
    assert sql == (
        "SELECT id, started_at FROM things WHERE endpoint_id = $1::text AND started_at < $2::timestamptz"
        " ORDER BY started_at DESC, id DESC LIMIT $3::bigint OFFSET $4::bigint"
    )
    assert args == ["web", T0, 10, 20]
    assert "IS NULL OR" not in sql


@pytest.mark.parametrize(
    ("filters", "where", "args"),
    [
        ({"tag": "core"}, "$1::text = ANY(tags)", ["core"]),
        ({"active": True}, "resolved_at IS NULL", []),
        ({"active": False}, "resolved_at IS NOT NULL", []),
        ({"alert_id": 7}, "alert_id = $1::bigint", [7]),
        ({"since": T0}, "coalesce(resolved_at, 'infinity') >= $1::timestamptz", [T0]),
        ({"severity": "major"}, "severity = $1::text", ["major"]),
    ],
)
def test_each_operator(filters: dict[str, object], where: str, args: list[object]) -> None:
    sql, bound = SPEC.query(filters, limit=5)
    assert f" WHERE {where} ORDER BY " in sql
    assert bound == [*args, 5]


def test_a_hostile_value_is_a_bind_parameter_never_sql_text() -> None:
    evil = "x'; DROP TABLE things; --"
    sql, args = SPEC.query({"endpoint_id": evil}, limit=1)
    assert evil not in sql and args[0] == evil


def test_unknown_filter_missing_path_filter_and_bad_paging_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown filter"):
        SPEC.query({"colour": "red"}, limit=1)
    scoped = ListSpec(
        "h",
        "SELECT id FROM h",
        (Filter("endpoint_id", "text", "endpoint_id", path=True),),
        (Key("id", "integer"),),
    )
    with pytest.raises(TypeError, match="required"):
        scoped.query({}, limit=1)
    with pytest.raises(ValueError, match="combined"):
        SPEC.query({}, limit=1, offset=1, after=(T0, 1))
    with pytest.raises(ValueError, match="limit"):
        SPEC.query({}, limit=0)
    with pytest.raises(TypeError, match="bool"):
        SPEC.query({"active": "false"}, limit=1)  # a truthy string must not mean "true"


def test_limit_none_is_every_row() -> None:
    sql, args = BY_ID.query({}, limit=None)
    assert sql == "SELECT id FROM eps ORDER BY id" and args == []


def test_keyset_condition_follows_the_order() -> None:
    sql, args = SPEC.query({"endpoint_id": "web"}, limit=2, after=(T0, 42))
    assert "WHERE endpoint_id = $1::text AND (started_at, id) < ($2::timestamptz, $3::bigint)" in sql
    assert args == ["web", T0, 42, 2]
    sql, args = BY_ID.query({}, limit=2, after=("smtp",))
    assert sql == "SELECT id FROM eps WHERE id > $1::text ORDER BY id LIMIT $2::bigint"
    with pytest.raises(ValueError, match="2 values"):
        SPEC.query({}, limit=1, after=(T0,))
    with pytest.raises(TypeError, match="int"):
        SPEC.query({}, limit=1, after=(T0, "42"))


def test_cursor_round_trips_exactly_from_dicts_and_records() -> None:
    plus2 = timezone(timedelta(hours=2))
    token = SPEC.cursor({"when": T0.astimezone(plus2).isoformat(), "id": 42})  # an ISO string, as in dicts
    assert SPEC.parse_cursor(token) == (T0, 42)  # microseconds kept, normalised to UTC
    assert SPEC.cursor({"when": T0, "id": 42}) == token  # and a datetime, as in records
    assert "=" not in token and "/" not in token and "+" not in token  # safe in a query string
    assert BY_ID.parse_cursor(BY_ID.cursor({"id": "smtp-relay"})) == ("smtp-relay",)


def _token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "nonsense!",
        "a" * 2000,
        "@@@@",
        "bm90IGpzb24",  # "not json"
        _token({"things": 1}),
        _token(["things", T0.isoformat()]),  # too few values
        _token(["ids", T0.isoformat(), 1]),  # another list's cursor
        _token(["things", "2024-05-01T12:00:00", 1]),  # no offset
        _token(["things", "yesterday", 1]),
        _token(["things", T0.isoformat(), "1"]),
        _token(["things", T0.isoformat(), True]),
        _token(["things", T0.isoformat(), 2**63]),
        _token(["things", T0.isoformat(), 1.5]),
        _token(["things", None, 1]),
    ],
)
def test_a_damaged_or_foreign_cursor_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match=CURSOR_PROBLEM):
        SPEC.parse_cursor(token)


@pytest.mark.parametrize("value", ["nul\x00", "\ud800", "x" * 1001, 7])
def test_text_cursor_values_postgres_cannot_take_are_refused(value: object) -> None:
    token = base64.urlsafe_b64encode(json.dumps(["ids", value]).encode()).decode()
    with pytest.raises(ValueError, match=CURSOR_PROBLEM):
        BY_ID.parse_cursor(token)


def test_page_trims_the_extra_row_and_points_after_the_last_kept() -> None:
    rows = [{"when": T0 - timedelta(minutes=i), "id": 10 - i} for i in range(3)]
    items, after = SPEC.page(rows, 2)
    assert items == rows[:2] and SPEC.parse_cursor(after or "") == (T0 - timedelta(minutes=1), 9)
    assert SPEC.page(rows, 3) == (rows, None)
    assert SPEC.page([], 3) == ([], None)


def test_bad_declarations_fail_at_import_time() -> None:
    with pytest.raises(ValueError, match="choices"):
        Filter("severity", "enum", "severity")
    with pytest.raises(ValueError, match="boolean"):
        Filter("active", "text", "resolved_at", op="is null")
    with pytest.raises(ValueError, match="keyset"):
        ListSpec("x", "SELECT 1", (), ())
    with pytest.raises(ValueError, match="unique"):
        ListSpec(
            "x", "SELECT 1", (Filter("a", "text", "a"), Filter("a", "text", "b")), (Key("id", "integer"),)
        )
