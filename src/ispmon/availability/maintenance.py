"""Maintenance windows: when an endpoint's failures are expected, and whether to probe it at all.

A window is one-off (``starts_at`` .. ``ends_at``) or recurring (``rrule`` + ``duration_minutes``,
with ``starts_at`` as DTSTART). It applies to endpoint ids, tags or all endpoints, in one of two
modes: "mute" (probe, show MAINTENANCE, open no outage) or "skip" (do not probe at all).

Time rules:

* Recurrences are evaluated in the local wall time of ``timezone``: a weekly 02:00 Europe/Berlin
  window stays at 02:00 local across DST changes, so its UTC instant moves by an hour.
* A window lasts ``duration_minutes`` of elapsed time, even across a DST change.
* A local start time that does not exist (the spring-forward gap, e.g. 02:30 on the last Sunday
  of March in Berlin) is moved forward by the length of the gap (03:30 CEST). A local time that
  happens twice (the autumn fall-back hour) means the first, earlier one. Both are what Python's
  zoneinfo does with fold=0 (PEP 495), and what most cron implementations do.
* Naive ``starts_at`` / ``ends_at`` values are read in ``timezone``; aware ones keep their offset.
* FREQ=SECONDLY and MINUTELY are rejected; an UNTIL in UTC (``...Z``) is converted to local time.
* Every `now` passed in must be timezone-aware; results are UTC datetimes.

`MaintenanceCalendar.mode_for` is called for every check, so the calendar caches the active set
and the instant it next changes, and recomputes only when `now` leaves that interval.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ispmon.availability.endpoints import SLUG_RE, SLUG_SCHEMA, slugify
from ispmon.errors import ConfigError
from ispmon.validation import error_list, unstorable_text

Mode = Literal["skip", "mute"]
MAX_DURATION_MINUTES = 31 * 24 * 60
# Wall-clock time and UTC never differ by more than a day, so searching this far either side of
# the wall time of `now` finds every occurrence whose UTC instant is near `now`.
_SLACK = timedelta(days=1)
_FAR_PAST = datetime.min.replace(tzinfo=UTC)
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)
_BY_PARTS = ("SECOND", "MINUTE", "HOUR", "DAY", "MONTHDAY", "YEARDAY", "WEEKNO", "MONTH", "SETPOS")
_RULE_PARTS = frozenset({"FREQ", "UNTIL", "COUNT", "INTERVAL", "WKST"} | {f"BY{p}" for p in _BY_PARTS})
_UNTIL_UTC = re.compile(r"^(\d{8}T\d{6})Z$")

Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
# GET /maintenance/active lists the windows in effect, so a window called "active" could never be
# fetched by id: the id is refused, and the document's id pattern excludes it.
RESERVED_WINDOW_IDS = frozenset({"active"})
WINDOW_ID_PATTERN = r"^(?!active$)[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$"


def _parse_rule_parts(text: str) -> dict[str, str]:
    """Split RRULE text into upper-case NAME -> VALUE, with errors in our words, not dateutil's."""
    if "DTSTART" in text.upper():
        raise ValueError("must not contain DTSTART (starts_at is the first occurrence)")
    if text.upper().startswith("RRULE:"):
        text = text[len("RRULE:") :]
    parts: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, value = item.partition("=")
        name, value = name.strip().upper(), value.strip().upper()
        if not sep or not name or not value:
            raise ValueError(f"{item!r} is not NAME=VALUE")
        if name not in _RULE_PARTS:
            raise ValueError(f"unknown rule part {name!r}")
        if name in parts:
            raise ValueError(f"rule part {name} is given twice")
        parts[name] = value
    freq = parts.get("FREQ")
    if freq is None:
        raise ValueError("FREQ is required, e.g. FREQ=WEEKLY;BYDAY=TU;BYHOUR=2;BYMINUTE=0")
    if freq in ("SECONDLY", "MINUTELY"):
        raise ValueError(f"FREQ={freq} is not allowed: the shortest recurrence is HOURLY")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("give COUNT or UNTIL, not both (RFC 5545)")
    return parts


def _build_rule(parts: dict[str, str], dtstart: datetime, tz: ZoneInfo) -> RRule:
    """A dateutil rrule over naive local wall times; `dtstart` is naive local time."""
    parts = dict(parts)
    until = _UNTIL_UTC.match(parts.get("UNTIL", ""))
    if until:
        # RFC 5545 allows UNTIL in UTC; the rule runs on naive local times, so convert it.
        instant = datetime.strptime(until[1], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        parts["UNTIL"] = instant.astimezone(tz).strftime("%Y%m%dT%H%M%S")
    text = ";".join(f"{k}={v}" for k, v in parts.items())
    try:
        # cache=True: the occurrences already walked are kept, so later look-ups are list scans.
        rule = rrulestr(text, dtstart=dtstart, cache=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid RRULE: {exc}") from None
    assert isinstance(rule, RRule)
    return rule


class MaintenanceWindowSpec(BaseModel):
    """A maintenance window, as created through the API or the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(
        description="Slug id; generated (mw-xxxxxxxx) when omitted; 'active' is reserved",
        json_schema_extra={"pattern": WINDOW_ID_PATTERN},
    )
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    # Declared before the datetimes: their validator reads it to place naive values.
    timezone: str = Field(default="UTC", description="IANA time zone of naive times and of the rrule")
    starts_at: datetime = Field(description="Start of a one-off window; DTSTART of a recurring one")
    ends_at: datetime | None = Field(default=None, description="End of a one-off window (exclusive)")
    rrule: str | None = Field(default=None, max_length=1000, description="RFC 5545 RRULE without DTSTART")
    duration_minutes: int | None = Field(default=None, ge=1, le=MAX_DURATION_MINUTES)
    endpoint_ids: list[Annotated[str, Field(json_schema_extra=SLUG_SCHEMA)]] = Field(
        default_factory=list, max_length=10000
    )
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    all_endpoints: bool = False
    mode: Mode = "mute"
    # Whether nobody is paged for the endpoints in scope while the window is active (their alerts
    # are still recorded, marked suppressed_by "maintenance:<id>").
    suppress_alerts: bool = True

    _tz: ZoneInfo = PrivateAttr()
    _rule: RRule | None = PrivateAttr(default=None)
    _start: datetime = PrivateAttr()  # UTC
    _end: datetime | None = PrivateAttr(default=None)  # UTC, one-off only
    _duration: timedelta = PrivateAttr(default=timedelta(0))
    _ids: frozenset[str] = PrivateAttr(default=frozenset())
    _tags: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="before")
    @classmethod
    def _generate_id(cls, data: Any) -> Any:
        bad = unstorable_text(data) if isinstance(data, dict) else None
        if bad:
            raise ValueError(f"{bad}: must not contain NUL characters or invalid UTF-8")
        if isinstance(data, dict) and data.get("id") is None:
            data = {**data, "id": f"mw-{secrets.token_hex(4)}"}
        return data

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not SLUG_RE.match(value):
            raise ValueError(
                "must be a slug: 1-64 lowercase letters, digits, '-' or '_',"
                " starting and ending with a letter or digit"
            )
        if value in RESERVED_WINDOW_IDS:
            raise ValueError(f"{value!r} is reserved (GET /maintenance/{value} lists the windows in effect)")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        # ZoneInfoNotFoundError is a KeyError; malformed keys raise ValueError, directories OSError.
        except (KeyError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _place_naive(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None or value.utcoffset() is not None:
            return value
        tz = info.data.get("timezone")
        # Without a valid timezone its own error is reported; the value stays naive meanwhile.
        return value.replace(tzinfo=ZoneInfo(tz)) if tz else value

    @field_validator("endpoint_ids")
    @classmethod
    def _check_endpoint_ids(cls, value: list[str]) -> list[str]:
        for endpoint_id in value:
            if not SLUG_RE.match(endpoint_id):
                raise ValueError(f"{endpoint_id!r} is not an endpoint id (a slug)")
        return value

    @field_validator("rrule")
    @classmethod
    def _check_rrule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = _parse_rule_parts(value)
        _build_rule(parts, datetime(2000, 1, 1), ZoneInfo("UTC"))  # syntax and value ranges
        return ";".join(f"{k}={v}" for k, v in parts.items())

    @model_validator(mode="after")
    def _check_window(self) -> MaintenanceWindowSpec:
        tz = ZoneInfo(self.timezone)
        self._tz = tz
        self._start = self.starts_at.astimezone(UTC)
        if self.rrule is not None:
            if self.ends_at is not None:
                raise ValueError(
                    "ends_at: not allowed with rrule (a recurring window lasts duration_minutes)"
                )
            if self.duration_minutes is None:
                raise ValueError("duration_minutes: required with rrule")
            dtstart = self.starts_at.astimezone(tz).replace(tzinfo=None)
            try:
                rule = _build_rule(_parse_rule_parts(self.rrule), dtstart, tz)
            except ValueError as exc:
                raise ValueError(f"rrule: {exc}") from None
            if rule.after(dtstart, inc=True) is None:
                raise ValueError("rrule: has no occurrence at or after starts_at")
            self._rule = rule
            self._duration = timedelta(minutes=self.duration_minutes)
        else:
            if self.duration_minutes is not None:
                where = "not allowed with ends_at" if self.ends_at is not None else "only applies with rrule"
                raise ValueError(f"duration_minutes: {where} (a one-off window has starts_at and ends_at)")
            if self.ends_at is None:
                raise ValueError(
                    "ends_at: required for a one-off window (or give rrule and duration_minutes)"
                )
            if self.ends_at <= self.starts_at:
                raise ValueError("ends_at: must be after starts_at")
            self._end = self.ends_at.astimezone(UTC)
            self._duration = self._end - self._start
        if not (self.endpoint_ids or self.tags or self.all_endpoints):
            raise ValueError(
                "endpoint_ids: a window needs a scope: endpoint_ids, tags or all_endpoints = true"
            )
        self._ids = frozenset(self.endpoint_ids)
        self._tags = frozenset(self.tags)
        return self

    def __eq__(self, other: object) -> bool:
        # The definition only: the compiled rrule (a private attribute) compares by identity.
        if not isinstance(other, MaintenanceWindowSpec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    @property
    def recurring(self) -> bool:
        return self._rule is not None

    def public_dict(self) -> dict[str, Any]:
        """The definition as stored and returned by the API (JSON-safe)."""
        return self.model_dump(mode="json")

    def _instant(self, wall: datetime) -> datetime:
        # fold=0: a nonexistent wall time moves forward by the gap, an ambiguous one is the first.
        return wall.replace(tzinfo=self._tz).astimezone(UTC)

    def _wall(self, instant: datetime) -> datetime:
        return instant.astimezone(self._tz).replace(tzinfo=None)


def occurrence_at(window: MaintenanceWindowSpec, now: datetime) -> tuple[datetime, datetime] | None:
    """The occurrence (start inclusive, end exclusive, both UTC) that contains `now`, or None."""
    rule = window._rule
    if rule is None:
        assert window._end is not None
        return (window._start, window._end) if window._start <= now < window._end else None
    wall = window._wall(now)
    best: datetime | None = None
    # An occurrence containing `now` started at most `duration` before it.
    for cand in rule.between(wall - window._duration - _SLACK, wall + _SLACK, inc=True):
        start = window._instant(cand)
        if start <= now < start + window._duration and (best is None or start > best):
            best = start
    return None if best is None else (best, best + window._duration)


def next_occurrence(window: MaintenanceWindowSpec, after: datetime) -> tuple[datetime, datetime] | None:
    """The first occurrence that starts strictly after `after` (UTC bounds), or None."""
    rule = window._rule
    if rule is None:
        assert window._end is not None
        return (window._start, window._end) if window._start > after else None
    best: datetime | None = None
    best_wall: datetime | None = None
    # Wall time is not monotonic in UTC around a DST gap, so keep looking a day past the first hit.
    for cand in rule.xafter(window._wall(after) - _SLACK, inc=True):
        if best_wall is not None and cand > best_wall + _SLACK:
            break
        start = window._instant(cand)
        if start > after and (best is None or start < best):
            best, best_wall = start, cand
    return None if best is None else (best, best + window._duration)


def applies_to(window: MaintenanceWindowSpec, endpoint_id: str, tags: Iterable[str]) -> bool:
    return window.all_endpoints or endpoint_id in window._ids or not window._tags.isdisjoint(tags)


def _merge(current: Mode | None, mode: Mode) -> Mode:
    return "skip" if current == "skip" or mode == "skip" else "mute"


class MaintenanceCalendar:
    """All windows, answering "is this endpoint in maintenance now, and how?" cheaply.

    The active set is constant between two boundaries (an active occurrence ending, the next one
    starting), so it is computed once per boundary and then looked up in dicts.
    """

    def __init__(self, windows: Iterable[MaintenanceWindowSpec] = ()) -> None:
        self._windows = tuple(windows)
        self._valid_from = _FAR_FUTURE  # an empty interval: the first call computes
        self._valid_until = _FAR_PAST
        self._active: tuple[MaintenanceWindowSpec, ...] = ()
        self._all: Mode | None = None
        self._by_id: dict[str, Mode] = {}
        self._by_tag: dict[str, Mode] = {}
        self.recomputes = 0  # for tests and metrics

    @property
    def windows(self) -> tuple[MaintenanceWindowSpec, ...]:
        return self._windows

    def _refresh(self, now: datetime) -> None:
        active: list[MaintenanceWindowSpec] = []
        until = _FAR_FUTURE
        for window in self._windows:
            current = occurrence_at(window, now)
            if current is not None:
                active.append(window)
                until = min(until, current[1])
            upcoming = next_occurrence(window, now)
            if upcoming is not None:
                until = min(until, upcoming[0])
        self._active = tuple(active)
        self._all = None
        self._by_id, self._by_tag = {}, {}
        for window in active:
            if window.all_endpoints:
                self._all = _merge(self._all, window.mode)
            for endpoint_id in window.endpoint_ids:
                self._by_id[endpoint_id] = _merge(self._by_id.get(endpoint_id), window.mode)
            for tag in window.tags:
                self._by_tag[tag] = _merge(self._by_tag.get(tag), window.mode)
        self._valid_from, self._valid_until = now, until
        self.recomputes += 1

    def next_change(self, now: datetime) -> datetime | None:
        """When the set of active windows next changes after `now` (None: never)."""
        if not self._valid_from <= now < self._valid_until:
            self._refresh(now)
        return None if self._valid_until == _FAR_FUTURE else self._valid_until

    def active(self, now: datetime) -> list[MaintenanceWindowSpec]:
        if not self._valid_from <= now < self._valid_until:
            self._refresh(now)
        return list(self._active)

    def suppressing(self, endpoint_id: str, tags: Iterable[str], now: datetime) -> str | None:
        """The id of an active window that silences alerts for this endpoint, or None."""
        tags = tuple(tags)
        for window in self.active(now):
            if window.suppress_alerts and applies_to(window, endpoint_id, tags):
                return window.id
        return None

    def mode_for(self, endpoint_id: str, tags: Iterable[str], now: datetime) -> Mode | None:
        """The maintenance mode for this endpoint at `now` ("skip" beats "mute"), or None."""
        if not self._valid_from <= now < self._valid_until:
            self._refresh(now)
        if not self._active:
            return None
        mode = self._all
        if mode == "skip":
            return mode
        found = self._by_id.get(endpoint_id)
        if found is not None:
            if found == "skip":
                return found
            mode = found
        if self._by_tag:
            for tag in tags:
                found = self._by_tag.get(tag)
                if found == "skip":
                    return found
                if found is not None:
                    mode = found
        return mode


def _config_id(name: str) -> str:
    """A stable id from the name, so reloading the config file keeps the same window (a name with
    nothing readable left, such as "東京", gives "mw-<hash>", the id earlier versions gave it)."""
    return slugify(name, fallback="mw")


def validate_config_windows(
    items: list[dict[str, Any]], where: str, endpoint_ids: set[str]
) -> list[MaintenanceWindowSpec]:
    """Validate the config file's ``[[maintenance]]`` tables; raises one ConfigError listing every
    problem (one per key of each window), each naming its key.

    `endpoint_ids` (the file's endpoints) is not used to reject unknown ids: windows may name
    endpoints that are created through the API.
    """

    windows: list[MaintenanceWindowSpec] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        data = dict(item)
        if data.get("id") is None and isinstance(data.get("name"), str):
            data["id"] = _config_id(data["name"].strip())
        try:
            window = MaintenanceWindowSpec.model_validate(data)
        except ValidationError as exc:
            fields: set[str] = set()
            for err in error_list(exc, prefix=f"maintenance[{index}]"):
                if err["field"] not in fields:  # a union field fails once per member: say it once
                    fields.add(err["field"])
                    errors.append(f"{where}{err['field']}: {err['message']}")
            continue
        if window.id in seen:
            first = seen[window.id]
            errors.append(
                f"{where}maintenance[{index}].id: duplicate id {window.id!r} (also maintenance[{first}])"
            )
            continue
        seen[window.id] = index
        windows.append(window)
    if errors:
        raise ConfigError(errors)
    return windows
