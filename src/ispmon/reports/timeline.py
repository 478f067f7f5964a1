"""Time intervals for the rollups: maintenance occurrences in a span, unions, differences, and
seconds per bucket. Pure: no clock, no I/O.

Downtime is time, not a count of DOWN checks: the seconds an endpoint spends inside one of its
outages (``started_at`` to ``resolved_at``, or to now while open) that are not inside one of its
maintenance windows. Maintenance time is the union of the occurrences of every window that
applies to the endpoint (by id, tag or all), whatever their mode (mute or skip).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ispmon.availability.maintenance import MaintenanceWindowSpec, next_occurrence, occurrence_at

Interval = tuple[datetime, datetime]


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, non-overlapping, non-empty intervals covering the same time."""
    out: list[Interval] = []
    for lo, hi in sorted(i for i in intervals if i[0] < i[1]):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def subtract(base: list[Interval], cut: list[Interval]) -> list[Interval]:
    """`base` minus `cut` (both as `union` returns them)."""
    out: list[Interval] = []
    j = 0
    for lo, hi in base:
        while j < len(cut) and cut[j][1] <= lo:
            j += 1
        k = j
        start = lo
        while k < len(cut) and cut[k][0] < hi:
            if cut[k][0] > start:
                out.append((start, cut[k][0]))
            start = max(start, cut[k][1])
            k += 1
        if start < hi:
            out.append((start, hi))
    return out


def per_bucket(intervals: list[Interval], lo: datetime, hi: datetime, step: int) -> dict[datetime, float]:
    """Seconds of `intervals` (non-overlapping) inside each `step`-second bucket of [lo, hi);
    `lo` is a bucket start. Buckets with none are left out."""
    out: dict[datetime, float] = {}
    width = timedelta(seconds=step)
    for a, b in intervals:
        a, b = max(a, lo), min(b, hi)
        if a >= b:
            continue
        bucket = lo + width * ((a - lo) // width)
        while bucket < b:
            end = bucket + width
            seconds = (min(b, end) - max(a, bucket)).total_seconds()
            if seconds > 0:
                out[bucket] = out.get(bucket, 0.0) + seconds
            bucket = end
    return out


def occurrences(window: MaintenanceWindowSpec, lo: datetime, hi: datetime, limit: int = 100_000) -> list[Interval]:
    """The window's occurrences that overlap [lo, hi), clipped to it."""
    out: list[Interval] = []
    current = occurrence_at(window, lo)
    if current is not None:
        out.append(current)
    after = lo
    for _ in range(limit):
        nxt = next_occurrence(window, after)
        if nxt is None or nxt[0] >= hi:
            break
        out.append(nxt)
        after = nxt[0]
    return [(max(a, lo), min(b, hi)) for a, b in out if a < hi and b > lo]
