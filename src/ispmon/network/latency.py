"""Latency views, Smokeping-style: per step, the median RTT, the loss and the spread ("smoke").

Input is one `Sample` per check (from status_history): the packets it sent, the replies it got and
every reply's RTT (ICMP checks store them in ``details.rtts_ms``). Other checks count as one packet
each: their response time when they got an answer, a lost packet when they did not. The percentiles
are taken over all packets of a step, not over the checks' averages: averaging averages hides
exactly the spread the view is for.

Pure: no database, no clock; tested with tables in tests/unit/network/test_latency.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

MAX_STEPS = 2000
# The smoke: these percentiles of the packets' RTTs, besides the median (p50).
SMOKE_PERCENTILES = (10, 25, 75, 90)


@dataclass(frozen=True, slots=True)
class Sample:
    checked_at: datetime
    sent: int
    rtts_ms: Sequence[float]  # one per reply received


def sample_from_row(row: Mapping[str, Any]) -> Sample:
    """A status_history row (checked_at, response_time_ms, details) as a Sample.

    Rows of ICMP checks made before per-packet RTTs were stored have no ``rtts_ms``: their loss
    still counts, and their average RTT stands for each reply (the best that is known)."""
    details = row["details"] if isinstance(row["details"], dict) else {}
    sent = details.get("packets_sent")
    if isinstance(sent, int) and not isinstance(sent, bool):
        rtts = details.get("rtts_ms")
        if not isinstance(rtts, list):
            received = details.get("packets_received")
            avg = details.get("rtt_avg_ms")
            count = received if isinstance(received, int) and isinstance(avg, int | float) else 0
            rtts = [float(avg)] * count if count else []
        clean = [float(r) for r in rtts if isinstance(r, int | float) and math.isfinite(r)]
        return Sample(row["checked_at"], sent, clean)
    rtt = row["response_time_ms"]
    return Sample(row["checked_at"], 1, [] if rtt is None else [float(rtt)])


def step_count(since: datetime, until: datetime, step: float) -> int:
    return math.ceil((until - since).total_seconds() / step)


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont) of a sorted list."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * p / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_steps(samples: Iterable[Sample], since: datetime, until: datetime, step: float) -> list[dict[str, Any]]:
    """Every step of [since, until), oldest first, empty steps included (a graph's gap is a fact)."""
    if step <= 0:
        raise ValueError("step must be positive")
    count = step_count(since, until, step)
    if count > MAX_STEPS:
        raise ValueError(f"{count} steps is more than {MAX_STEPS}")
    sent = [0] * count
    rtts: list[list[float]] = [[] for _ in range(count)]
    checks = [0] * count
    for sample in samples:
        offset = (sample.checked_at - since).total_seconds()
        index = int(offset // step)
        if offset < 0 or index >= count or sample.checked_at >= until:
            continue
        checks[index] += 1
        sent[index] += sample.sent
        rtts[index].extend(sample.rtts_ms)
    return [_step(since + timedelta(seconds=i * step), step, checks[i], sent[i], rtts[i]) for i in range(count)]


def _step(start: datetime, step: float, checks: int, sent: int, rtts: list[float]) -> dict[str, Any]:
    rtts.sort()
    received = len(rtts)
    out: dict[str, Any] = {
        "start": start,
        "end": start + timedelta(seconds=step),
        "checks": checks,
        "packets_sent": sent,
        "packets_received": received,
        # max() guards rows whose replies outnumber their sends (a damaged row): loss is never < 0.
        "loss_percent": round(100.0 * max(sent - received, 0) / sent, 2) if sent else None,
        "median_ms": _r(percentile(rtts, 50)) if rtts else None,
        "min_ms": _r(rtts[0]) if rtts else None,
        "max_ms": _r(rtts[-1]) if rtts else None,
    }
    out["smoke_ms"] = {f"p{p}": _r(percentile(rtts, p)) for p in SMOKE_PERCENTILES} if rtts else None
    return out


def _r(value: float) -> float:
    return round(value, 3)
