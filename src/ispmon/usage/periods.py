"""Quota periods and the summary's arithmetic: pure functions, no I/O.

A period starts at local midnight in the customer's time zone: `daily` every day, `weekly` on
Mondays (ISO weeks), `monthly` on `reset_day` (1-28, so every month has it). Because a period
starts at a local midnight, the daily rollups sum to it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _month_start(year: int, month: int, reset_day: int) -> date:
    year += (month - 1) // 12
    month = (month - 1) % 12 + 1
    return date(year, month, reset_day)


def period_at(kind: str, reset_day: int, timezone: str, now: datetime) -> Period:
    """The period that holds `now`."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    if kind == "daily":
        first, nxt = today, today + timedelta(days=1)
    elif kind == "weekly":
        first = today - timedelta(days=today.weekday())
        nxt = first + timedelta(days=7)
    else:
        month = today.year * 12 + today.month - 1
        if today.day < reset_day:
            month -= 1
        first = _month_start(month // 12, month % 12 + 1, reset_day)
        nxt = _month_start(month // 12, month % 12 + 2, reset_day)
    return Period(_midnight(first, zone), _midnight(nxt, zone))


def previous(kind: str, reset_day: int, timezone: str, period: Period) -> Period:
    return period_at(kind, reset_day, timezone, period.start - timedelta(seconds=1))


def counted(counts: str, bytes_in: int, bytes_out: int) -> int:
    """What counts against the quota: everything, or only the download (Acct-Output-Octets)."""
    return bytes_out if counts == "download" else bytes_in + bytes_out


def projection(used: int, quota: int | None, period: Period, now: datetime) -> tuple[int, datetime | None]:
    """The period's total at the pace so far, and when the quota is (or would be) reached at that
    pace: None when there is no quota, no use yet, or the pace does not reach it this period."""
    elapsed = (now - period.start).total_seconds()
    length = (period.end - period.start).total_seconds()
    if elapsed <= 0 or used <= 0:
        return used, None
    projected = int(used * length / elapsed)
    if quota is None:
        return projected, None
    if used >= quota:
        return projected, None  # reached already: the crossing's time is in quota_crossings
    seconds = elapsed * quota / used
    if seconds >= length:
        return projected, None  # not this period (and, for a tiny pace, past any date there is)
    return projected, period.start + timedelta(seconds=seconds)
