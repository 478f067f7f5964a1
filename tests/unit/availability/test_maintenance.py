"""Maintenance windows: validation, occurrences across DST, scope and the calendar's cache."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ispmon.availability.maintenance import (
    MaintenanceCalendar,
    MaintenanceWindowSpec,
    applies_to,
    next_occurrence,
    occurrence_at,
    validate_config_windows,
)
from ispmon.errors import ConfigError

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def window(**fields: Any) -> MaintenanceWindowSpec:
    data: dict[str, Any] = {"name": "Patching", "all_endpoints": True, **fields}
    return MaintenanceWindowSpec.model_validate(data)


def one_off(**fields: Any) -> MaintenanceWindowSpec:
    return window(starts_at="2024-06-01T10:00:00Z", ends_at="2024-06-01T12:00:00Z", **fields)


def occurrences(
    w: MaintenanceWindowSpec, after: datetime, limit: int = 50
) -> list[tuple[datetime, datetime]]:
    out = []
    while len(out) < limit and (occ := next_occurrence(w, after)) is not None:
        out.append(occ)
        after = occ[0]
    return out


@pytest.mark.parametrize(
    ("now", "active"),
    [
        (utc(2024, 6, 1, 9, 59, 59), False),
        (utc(2024, 6, 1, 10, 0, 0), True),  # start inclusive
        (utc(2024, 6, 1, 11, 59, 59), True),
        (utc(2024, 6, 1, 12, 0, 0), False),  # end exclusive
    ],
)
def test_one_off_boundaries(now: datetime, active: bool) -> None:
    occ = occurrence_at(one_off(), now)
    assert occ == ((utc(2024, 6, 1, 10), utc(2024, 6, 1, 12)) if active else None)


def test_one_off_next_occurrence() -> None:
    w = one_off()
    assert next_occurrence(w, utc(2024, 6, 1, 9)) == (utc(2024, 6, 1, 10), utc(2024, 6, 1, 12))
    assert next_occurrence(w, utc(2024, 6, 1, 10)) is None  # strictly after


def test_naive_times_are_read_in_the_timezone() -> None:
    w = window(starts_at="2024-06-01T10:00", ends_at="2024-06-01T11:00", timezone="Europe/Berlin")
    assert w.starts_at == utc(2024, 6, 1, 8)
    assert occurrence_at(w, utc(2024, 6, 1, 8, 30)) == (utc(2024, 6, 1, 8), utc(2024, 6, 1, 9))
    # An explicit offset wins over the timezone.
    w = window(starts_at="2024-06-01T10:00+00:00", ends_at="2024-06-01T11:00+00:00", timezone="Europe/Berlin")
    assert w.starts_at == utc(2024, 6, 1, 10)


WEEKLY_BERLIN = {
    "starts_at": "2024-03-01T00:00",
    "timezone": "Europe/Berlin",
    "rrule": "FREQ=WEEKLY;BYDAY=TU;BYHOUR=2;BYMINUTE=0",
    "duration_minutes": 60,
}


@pytest.mark.parametrize(
    ("after", "expected_utc"),
    [
        (utc(2024, 3, 20), utc(2024, 3, 26, 1)),  # CET (+01:00), the last Tuesday before the change
        (utc(2024, 3, 27), utc(2024, 4, 2, 0)),  # CEST (+02:00) after 31 March
        (utc(2024, 10, 16), utc(2024, 10, 22, 0)),  # CEST, the last Tuesday before 27 October
        (utc(2024, 10, 23), utc(2024, 10, 29, 1)),  # CET again
    ],
)
def test_weekly_window_keeps_local_time_across_dst(after: datetime, expected_utc: datetime) -> None:
    w = window(**WEEKLY_BERLIN)
    start, end = next_occurrence(w, after) or (None, None)
    assert start == expected_utc and end == expected_utc + timedelta(hours=1)
    local = start.astimezone(BERLIN)
    assert (local.weekday(), local.hour, local.minute) == (1, 2, 0)
    assert occurrence_at(w, start) == (start, end)
    assert occurrence_at(w, start - timedelta(seconds=1)) is None
    assert occurrence_at(w, end) is None


def test_weekly_occurrences_shift_by_one_hour_in_utc() -> None:
    w = window(**WEEKLY_BERLIN)
    starts = [s for s, _ in occurrences(w, utc(2024, 3, 18), limit=3)]
    assert starts == [utc(2024, 3, 19, 1), utc(2024, 3, 26, 1), utc(2024, 4, 2, 0)]
    starts = [s for s, _ in occurrences(w, utc(2024, 10, 14), limit=3)]
    assert starts == [utc(2024, 10, 15, 0), utc(2024, 10, 22, 0), utc(2024, 10, 29, 1)]


@pytest.mark.parametrize(
    ("day", "expected_utc"),
    [
        (datetime(2024, 3, 30), utc(2024, 3, 30, 1, 30)),  # 02:30 CET
        (datetime(2024, 3, 31), utc(2024, 3, 31, 1, 30)),  # 02:30 does not exist: 03:30 CEST
        (datetime(2024, 4, 1), utc(2024, 4, 1, 0, 30)),  # 02:30 CEST
        (datetime(2024, 10, 27), utc(2024, 10, 27, 0, 30)),  # 02:30 happens twice: the first (CEST)
        (datetime(2024, 10, 28), utc(2024, 10, 28, 1, 30)),  # 02:30 CET
    ],
)
def test_daily_window_in_dst_gap_and_fold(day: datetime, expected_utc: datetime) -> None:
    w = window(
        starts_at="2024-03-01T02:30", timezone="Europe/Berlin", rrule="FREQ=DAILY", duration_minutes=30
    )
    after = day.replace(tzinfo=BERLIN) - timedelta(seconds=1)
    assert next_occurrence(w, after) == (expected_utc, expected_utc + timedelta(minutes=30))
    assert occurrence_at(w, expected_utc + timedelta(minutes=29)) is not None


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;COUNT=5",
        "FREQ=DAILY;UNTIL=20240105T020000",  # local time, inclusive
        "FREQ=DAILY;UNTIL=20240105T010000Z",  # UTC, converted to 02:00 Berlin
        "RRULE:freq=daily;count=5",
    ],
)
def test_count_and_until(rule: str) -> None:
    w = window(starts_at="2024-01-01T02:00", timezone="Europe/Berlin", rrule=rule, duration_minutes=60)
    starts = [s for s, _ in occurrences(w, utc(2023, 12, 31))]
    assert starts == [utc(2024, 1, day, 1) for day in range(1, 6)]
    assert occurrence_at(w, utc(2024, 1, 5, 1, 30)) is not None
    assert occurrence_at(w, utc(2024, 1, 6, 1, 30)) is None


def test_overlapping_occurrences_return_latest() -> None:
    w = window(starts_at="2024-01-01T00:00Z", rrule="FREQ=HOURLY", duration_minutes=90)
    assert occurrence_at(w, utc(2024, 1, 1, 5, 10)) == (utc(2024, 1, 1, 5), utc(2024, 1, 1, 6, 30))


@pytest.mark.parametrize(
    ("scope", "endpoint_id", "tags", "expected"),
    [
        ({"endpoint_ids": ["web"]}, "web", [], True),
        ({"endpoint_ids": ["web"]}, "db", ["web"], False),
        ({"tags": ["core", "dc1"]}, "db", ["dc1"], True),
        ({"tags": ["core"]}, "db", ["edge"], False),
        ({"all_endpoints": True}, "anything", [], True),
        ({"endpoint_ids": ["web"], "tags": ["core"]}, "db", ["core"], True),
    ],
)
def test_applies_to(scope: dict[str, Any], endpoint_id: str, tags: list[str], expected: bool) -> None:
    w = MaintenanceWindowSpec(name="w", starts_at=utc(2024, 1, 1), ends_at=utc(2024, 1, 2), **scope)
    assert applies_to(w, endpoint_id, tags) is expected


NOW = utc(2024, 6, 1, 11)


@pytest.mark.parametrize(
    ("windows", "endpoint_id", "tags", "expected"),
    [
        ([], "web", ["core"], None),
        ([{"all_endpoints": True}], "web", [], "mute"),
        ([{"all_endpoints": True}, {"tags": ["core"], "mode": "skip"}], "web", ["core"], "skip"),
        ([{"all_endpoints": True, "mode": "skip"}, {"tags": ["core"]}], "web", ["core"], "skip"),
        ([{"endpoint_ids": ["web"]}, {"endpoint_ids": ["web"], "mode": "skip"}], "web", [], "skip"),
        ([{"endpoint_ids": ["web"], "mode": "skip"}, {"tags": ["core"]}], "web", ["core"], "skip"),
        ([{"tags": ["core"]}, {"tags": ["edge"], "mode": "skip"}], "web", ["core", "edge"], "skip"),
        ([{"tags": ["edge"], "mode": "skip"}], "web", ["core"], None),
        ([{"endpoint_ids": ["db"], "mode": "skip"}, {"tags": ["core"]}], "web", ["core"], "mute"),
    ],
)
def test_mode_for_skip_beats_mute(
    windows: list[dict[str, Any]], endpoint_id: str, tags: list[str], expected: str | None
) -> None:
    specs = [one_off(**{"all_endpoints": False, **scope}) for scope in windows]
    calendar = MaintenanceCalendar(specs)
    assert calendar.mode_for(endpoint_id, tags, NOW) == expected
    assert len(calendar.active(NOW)) == len(specs)


def test_calendar_recomputes_only_at_boundaries() -> None:
    calendar = MaintenanceCalendar([one_off(mode="skip"), window(**WEEKLY_BERLIN, id="weekly")])
    assert calendar.mode_for("web", [], utc(2024, 6, 1, 9)) is None
    assert calendar.recomputes == 1 and calendar.next_change(utc(2024, 6, 1, 9)) == utc(2024, 6, 1, 10)
    assert calendar.mode_for("web", [], utc(2024, 6, 1, 9, 59, 59)) is None
    assert calendar.recomputes == 1
    assert calendar.mode_for("web", [], utc(2024, 6, 1, 10)) == "skip"
    assert calendar.recomputes == 2 and calendar.next_change(utc(2024, 6, 1, 10)) == utc(2024, 6, 1, 12)
    assert calendar.mode_for("web", [], utc(2024, 6, 1, 12)) is None
    # The next boundary is the weekly window's next Tuesday, 02:00 CEST.
    assert calendar.recomputes == 3 and calendar.next_change(utc(2024, 6, 1, 12)) == utc(2024, 6, 4, 0)
    assert calendar.mode_for("web", [], utc(2024, 6, 4, 0, 30)) == "mute"
    assert [w.id for w in calendar.active(utc(2024, 6, 4, 0, 30))] == ["weekly"]
    # A clock that goes backwards is answered correctly too.
    assert calendar.mode_for("web", [], utc(2024, 6, 1, 11)) == "skip"
    assert calendar.recomputes == 5


def test_calendar_without_future_windows_never_recomputes() -> None:
    calendar = MaintenanceCalendar([one_off()])
    assert calendar.mode_for("web", [], utc(2025, 1, 1)) is None
    assert calendar.next_change(utc(2030, 1, 1)) is None and calendar.recomputes == 1


def test_generated_and_config_ids() -> None:
    generated = one_off()
    assert re.fullmatch(r"mw-[0-9a-f]{8}", generated.id)
    assert MaintenanceWindowSpec.model_validate(generated.public_dict()) == generated
    recurring = window(**WEEKLY_BERLIN)
    again = MaintenanceWindowSpec.model_validate(recurring.public_dict())
    assert again == recurring and again.id == recurring.id and recurring != generated
    assert next_occurrence(again, utc(2024, 3, 27)) == next_occurrence(recurring, utc(2024, 3, 27))
    items = [
        {
            "name": "Tuesday patching!",
            "starts_at": "2024-01-01T00:00Z",
            "ends_at": "2024-01-02",
            "tags": ["x"],
        }
    ]
    first = validate_config_windows(items, "ispmon.toml: ", set())
    again = validate_config_windows(items, "ispmon.toml: ", set())
    assert first[0].id == again[0].id == "tuesday-patching"
    assert first[0].ends_at == utc(2024, 1, 2)
    # Endpoint ids unknown to the file are accepted: they may come from the API.
    items = [
        {
            "id": "mw1",
            "name": "x",
            "starts_at": "2024-01-01",
            "ends_at": "2024-01-02",
            "endpoint_ids": ["api"],
        }
    ]
    assert validate_config_windows(items, "", {"web"})[0].endpoint_ids == ["api"]


BASE: dict[str, Any] = {"name": "Patching", "starts_at": "2024-01-01T02:00", "all_endpoints": True}
RECURRING = {**BASE, "rrule": "FREQ=WEEKLY", "duration_minutes": 60}
ONE_OFF = {**BASE, "ends_at": "2024-01-01T04:00"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({**BASE, "rrule": "FREQ=WEEKLY"}, "maintenance[0].duration_minutes: required with rrule"),
        ({**ONE_OFF, "ends_at": "2024-01-01T01:00"}, "maintenance[0].ends_at: must be after starts_at"),
        ({**ONE_OFF, "ends_at": "2024-01-01T02:00"}, "maintenance[0].ends_at: must be after starts_at"),
        (
            {**ONE_OFF, "timezone": "Mars/Base"},
            "maintenance[0].timezone: unknown time zone 'Mars/Base'"
            " (use an IANA name such as 'Europe/Berlin')",
        ),
        (
            {**RECURRING, "rrule": "FREQ=WEEKLY;BYDAY=XX"},
            "maintenance[0].rrule: not a valid RRULE: invalid 'BYDAY': XX",
        ),
        ({**RECURRING, "rrule": "every tuesday"}, "maintenance[0].rrule: 'every tuesday' is not NAME=VALUE"),
        ({**RECURRING, "rrule": "FREQ=WEEKLY;FOO=1"}, "maintenance[0].rrule: unknown rule part 'FOO'"),
        (
            {**RECURRING, "rrule": "BYDAY=TU"},
            "maintenance[0].rrule: FREQ is required, e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=2;BYMINUTE=0",
        ),
        (
            {**RECURRING, "rrule": "FREQ=SECONDLY"},
            "maintenance[0].rrule: FREQ=SECONDLY is not allowed: the shortest recurrence is HOURLY",
        ),
        (
            {**RECURRING, "rrule": "FREQ=MINUTELY;INTERVAL=30"},
            "maintenance[0].rrule: FREQ=MINUTELY is not allowed: the shortest recurrence is HOURLY",
        ),
        (
            {**RECURRING, "rrule": "DTSTART:20240101T000000\nRRULE:FREQ=DAILY"},
            "maintenance[0].rrule: must not contain DTSTART (starts_at is the first occurrence)",
        ),
        (
            {**RECURRING, "rrule": "FREQ=DAILY;COUNT=3;UNTIL=20250101"},
            "maintenance[0].rrule: give COUNT or UNTIL, not both (RFC 5545)",
        ),
        (
            {**RECURRING, "rrule": "FREQ=DAILY;UNTIL=20231231"},
            "maintenance[0].rrule: has no occurrence at or after starts_at",
        ),
        (
            {"name": "x", "starts_at": "2024-01-01", "ends_at": "2024-01-02"},
            "maintenance[0].endpoint_ids: a window needs a scope: endpoint_ids, tags or all_endpoints = true",
        ),
        (
            {**RECURRING, "ends_at": "2024-01-02"},
            "maintenance[0].ends_at: not allowed with rrule (a recurring window lasts duration_minutes)",
        ),
        (
            {**ONE_OFF, "duration_minutes": 30},
            "maintenance[0].duration_minutes: not allowed with ends_at"
            " (a one-off window has starts_at and ends_at)",
        ),
        (
            BASE,
            "maintenance[0].ends_at: required for a one-off window (or give rrule and duration_minutes)",
        ),
        (
            {**RECURRING, "duration_minutes": 0},
            "maintenance[0].duration_minutes: Input should be greater than or equal to 1",
        ),
        (
            {"name": "x", "all_endpoints": True, "ends_at": "2024-01-02"},
            "maintenance[0].starts_at: Field required",
        ),
        ({**ONE_OFF, "mode": "silence"}, "maintenance[0].mode: Input should be 'skip' or 'mute'"),
        ({**ONE_OFF, "scope": "all"}, "maintenance[0].scope: unknown field"),
        (
            {**ONE_OFF, "endpoint_ids": ["Web Server"]},
            "maintenance[0].endpoint_ids: 'Web Server' is not an endpoint id (a slug)",
        ),
    ],
)
def test_invalid_windows(item: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config_windows([item], "ispmon.toml: ", set())
    assert str(info.value) == f"ispmon.toml: {message}"


def test_invalid_window_index_and_duplicate_ids() -> None:
    good = {**ONE_OFF, "id": "a"}
    with pytest.raises(ConfigError) as info:
        validate_config_windows([good, {**good, "id": "b", "timezone": "Nowhere"}], "f.toml: ", set())
    assert str(info.value).startswith("f.toml: maintenance[1].timezone: unknown time zone 'Nowhere'")
    with pytest.raises(ConfigError) as info:
        validate_config_windows([ONE_OFF, {**RECURRING, "tags": ["core"]}], "f.toml: ", set())
    assert str(info.value) == "f.toml: maintenance[1].id: duplicate id 'patching' (also maintenance[0])"
