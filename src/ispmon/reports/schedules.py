"""``[[report_schedules]]``: which report goes where, and when. Pure: `due` takes `now`.

A schedule fires at each time of its cron expression (``cron``), or of ``monthly`` (a day of the
month) or ``weekly`` (a day of the week) at ``at`` — both turned into cron expressions, read by
croniter in the schedule's ``timezone``. Each firing reports the last whole ``period`` (day, week
from Monday, month) before the firing, in that time zone. A firing missed while the daemon was
down is made up within CATCH_UP of its time; older ones are skipped (a report of last month, sent
on the 20th, helps nobody). "Once" is the store's job: a (schedule, period start) row.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ispmon.availability.endpoints import SLUG_SCHEMA
from ispmon.reports.kinds import KINDS

CATCH_UP = timedelta(days=1)
Period = Literal["day", "week", "month"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")


class ReportSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(json_schema_extra=SLUG_SCHEMA, description="Slug; the key of the schedule's sent periods")
    kind: str = Field(description=f"Report kind: {', '.join(KINDS)}")
    format: Literal["json", "csv", "pdf"] = "pdf"
    period: Period | None = Field(default=None, description="What each firing reports; default from monthly/weekly")
    cron: str | None = Field(default=None, max_length=200, description="Cron expression, e.g. '0 6 1 * *'")
    monthly: int | None = Field(default=None, ge=1, le=28, description="Day of the month (1-28)")
    weekly: Weekday | None = None
    at: str = Field(default="06:00", description="HH:MM for monthly and weekly")
    timezone: str = "UTC"
    channels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1, max_length=20)
    tag: str | None = Field(default=None, max_length=64)
    endpoint: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=200)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _SLUG.fullmatch(value):
            raise ValueError("must be a slug (1-64 of a-z, 0-9, '-', '_')")
        return value

    @field_validator("kind")
    @classmethod
    def _check_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"no report kind {value!r} (kinds: {', '.join(KINDS)})")
        return value

    @field_validator("at")
    @classmethod
    def _check_at(cls, value: str) -> str:
        if not _AT.fullmatch(value):
            raise ValueError("must be HH:MM (24-hour), e.g. 06:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Berlin)") from None
        return value

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
            raise ValueError(f"{value!r} is not a cron expression of 5 fields (minute hour day month weekday)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_period(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("period") is None:
            if data.get("monthly") is not None:
                data = {**data, "period": "month"}
            elif data.get("weekly") is not None:
                data = {**data, "period": "week"}
        return data

    @model_validator(mode="after")
    def _check_when(self) -> ReportSchedule:
        given = [name for name in ("cron", "monthly", "weekly") if getattr(self, name) is not None]
        if len(given) != 1:
            got = f" (got {', '.join(given)})" if given else ""
            raise ValueError(f"give exactly one of cron, monthly or weekly{got}")
        if self.period is None:
            raise ValueError("period: required with cron (day, week or month)")
        kind = KINDS[self.kind]
        for name in ("tag", "endpoint"):
            if getattr(self, name) is not None and name not in kind.filters:
                raise ValueError(f"{name}: the {kind.name} report has no {name} filter")
        return self

    def cron_expr(self) -> str:
        if self.cron is not None:
            return self.cron
        hour, minute = (int(p) for p in self.at.split(":"))
        if self.monthly is not None:
            return f"{minute} {hour} {self.monthly} * *"
        return f"{minute} {hour} * * {self.weekly}"

    def filters(self) -> dict[str, str | None]:
        return {"tag": self.tag, "endpoint": self.endpoint}


def period_of(schedule: ReportSchedule, fired: datetime) -> tuple[datetime, datetime]:
    """The last whole period before `fired`, in the schedule's time zone, as UTC bounds."""
    tz = ZoneInfo(schedule.timezone)
    local = fired.astimezone(tz)
    midnight = datetime(local.year, local.month, local.day)  # naive local wall time
    if schedule.period == "day":
        start, end = midnight - timedelta(days=1), midnight
    elif schedule.period == "week":
        end = midnight - timedelta(days=midnight.weekday())
        start = end - timedelta(days=7)
    else:
        end = midnight.replace(day=1)
        start = (end - timedelta(days=1)).replace(day=1)
    return start.replace(tzinfo=tz).astimezone(UTC), end.replace(tzinfo=tz).astimezone(UTC)


def due(schedule: ReportSchedule, now: datetime) -> tuple[datetime, datetime, datetime] | None:
    """(fired at, period start, period end) of the latest firing at or before `now`, unless it is
    older than CATCH_UP."""
    local = now.astimezone(ZoneInfo(schedule.timezone))
    # croniter's get_prev is strictly before its start: start a second later so `now` itself counts.
    fired: datetime = croniter(schedule.cron_expr(), local + timedelta(seconds=1)).get_prev(datetime)
    if now - fired > CATCH_UP:
        return None
    start, end = period_of(schedule, fired)
    return fired.astimezone(UTC), start, end


def schedule_channel_errors(schedules: list[tuple[int, ReportSchedule]], defined: set[str], where: str) -> list[str]:
    """A schedule naming a channel the file's [channels] does not define (as alert rules are checked:
    a typo would otherwise show only when the first report is dead-lettered)."""
    known = ", ".join(sorted(defined)) or "none defined"
    return [
        f"{where}report_schedules[{index}].channels[{j}]: no channel {name!r} in [channels] ({known})"
        for index, schedule in schedules
        for j, name in enumerate(schedule.channels)
        if name not in defined
    ]
