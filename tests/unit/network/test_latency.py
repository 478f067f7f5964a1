"""The latency view's maths: steps, loss over all packets, percentiles over all RTTs of a step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.network.latency import MAX_STEPS, Sample, latency_steps, percentile, sample_from_row

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([5.0], 50, 5.0),
        ([1.0, 2.0], 50, 1.5),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),  # percentile_cont(0.25) of 1..4
        ([1.0, 2.0, 3.0, 4.0], 90, 3.7),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
    ],
)
def test_percentile_interpolates_like_percentile_cont(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_percentiles_are_over_all_packets_not_check_averages() -> None:
    # Two checks in one step: averages 10 and 30 would give a median of 20; the packets give 11.
    samples = [
        Sample(T0 + timedelta(seconds=1), 3, [10.0, 10.0, 11.0]),
        Sample(T0 + timedelta(seconds=30), 2, [30.0, 30.0]),
    ]
    [step] = latency_steps(samples, T0, T0 + timedelta(seconds=60), 60)
    assert step["median_ms"] == 11.0
    assert (step["min_ms"], step["max_ms"]) == (10.0, 30.0)
    assert step["smoke_ms"] == {"p10": 10.0, "p25": 10.0, "p75": 30.0, "p90": 30.0}
    assert (step["checks"], step["packets_sent"], step["packets_received"], step["loss_percent"]) == (2, 5, 5, 0)


def test_loss_is_over_packets_and_steps_are_aligned_to_since() -> None:
    samples = [
        Sample(T0, 20, [1.0] * 15),  # first instant of step 0
        Sample(T0 + timedelta(seconds=59.999), 20, [1.0] * 20),
        Sample(T0 + timedelta(seconds=60), 20, []),  # first instant of step 1: all lost
        Sample(T0 + timedelta(seconds=180), 20, [2.0] * 20),  # at `until`: outside
        Sample(T0 - timedelta(seconds=1), 20, [2.0] * 20),  # before `since`: outside
    ]
    steps = latency_steps(samples, T0, T0 + timedelta(seconds=180), 60)
    assert [s["start"] for s in steps] == [T0, T0 + timedelta(seconds=60), T0 + timedelta(seconds=120)]
    assert steps[0]["loss_percent"] == 12.5  # 5 of 40
    assert (steps[1]["loss_percent"], steps[1]["median_ms"], steps[1]["smoke_ms"]) == (100.0, None, None)
    # An empty step is a gap, not zero loss.
    assert (steps[2]["checks"], steps[2]["loss_percent"], steps[2]["median_ms"]) == (0, None, None)


def test_the_last_step_may_be_partial() -> None:
    steps = latency_steps([], T0, T0 + timedelta(seconds=150), 60)
    assert len(steps) == 3 and steps[-1]["end"] == T0 + timedelta(seconds=180)


def test_too_many_steps_is_refused() -> None:
    latency_steps([], T0, T0 + timedelta(seconds=MAX_STEPS), 1)
    with pytest.raises(ValueError, match="more than 2000"):
        latency_steps([], T0, T0 + timedelta(seconds=MAX_STEPS + 1), 1)


ROWS: list[tuple[dict[str, Any], Sample]] = [
    (
        {"response_time_ms": 2.0, "details": {"packets_sent": 4, "packets_received": 3, "rtts_ms": [1, 2, 3]}},
        Sample(T0, 4, [1.0, 2.0, 3.0]),
    ),
    # An ICMP row from before per-packet RTTs: the average stands for each reply.
    (
        {"response_time_ms": 2.0, "details": {"packets_sent": 3, "packets_received": 2, "rtt_avg_ms": 2.5}},
        Sample(T0, 3, [2.5, 2.5]),
    ),
    # ICMP, nothing sent (the name did not resolve).
    ({"response_time_ms": None, "details": {"packets_sent": 0, "packets_received": 0}}, Sample(T0, 0, [])),
    # Other protocols: one packet per check.
    ({"response_time_ms": 12.5, "details": {"status_code": 200}}, Sample(T0, 1, [12.5])),
    ({"response_time_ms": None, "details": None}, Sample(T0, 1, [])),
    # Damaged details never raise.
    ({"response_time_ms": None, "details": {"packets_sent": 2, "rtts_ms": ["x", None, 1]}}, Sample(T0, 2, [1.0])),
]


@pytest.mark.parametrize(("row", "sample"), ROWS)
def test_rows_become_samples(row: dict[str, Any], sample: Sample) -> None:
    assert sample_from_row({"checked_at": T0, **row}) == sample
