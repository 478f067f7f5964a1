"""Session maths: deltas never negative, an out-of-order interim adds nothing, a Stop without a Start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ispmon.usage.accounting import apply_record
from ispmon.usage.radius import INTERIM, START, STOP, AcctRecord

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(status: int, i: int = 0, o: int = 0, t: int | None = None, **kw: object) -> AcctRecord:
    fields = dict(
        status=status,
        session_id="s",
        unique_id=None,
        username="u",
        framed_ip=None,
        nas_ip=None,
        nas_identifier=None,
        calling_station=None,
        terminate_cause=None,
        interim_interval=None,
        session_time=t,
        in_octets=i,
        out_octets=o,
        delay_time=0,
    )
    fields.update(kw)
    return AcctRecord(**fields)  # type: ignore[arg-type]


def run(records: list[AcctRecord]) -> tuple[object, list[tuple[int, int]]]:
    state = None
    deltas = []
    for n, record in enumerate(records):
        state, d_in, d_out = apply_record(state, record, T0 + timedelta(seconds=n))
        deltas.append((d_in, d_out))
    return state, deltas


def test_start_interims_stop() -> None:
    state, deltas = run(
        [
            rec(START),
            rec(INTERIM, 10, 20, 60),
            rec(INTERIM, 15, 50, 120),
            rec(STOP, 15, 70, 130, terminate_cause="User-Request"),
        ]
    )
    assert deltas == [(0, 0), (10, 20), (5, 30), (0, 20)]
    assert state.closed_at is not None and state.terminate_cause == "User-Request"  # type: ignore[attr-defined]


def test_an_interim_older_than_the_last_adds_nothing_and_keeps_the_later_counters() -> None:
    state, deltas = run([rec(INTERIM, 100, 100, 120), rec(INTERIM, 50, 60, 60), rec(INTERIM, 130, 110, 180)])
    assert deltas == [(100, 100), (0, 0), (30, 10)]
    assert (state.in_octets, state.out_octets) == (130, 110)  # type: ignore[attr-defined]


def test_counters_going_back_on_one_direction_only_count_as_out_of_order() -> None:
    _, deltas = run([rec(INTERIM, 100, 100, 60), rec(INTERIM, 200, 90, 120)])
    assert deltas == [(100, 100), (0, 0)]


def test_a_stop_without_a_start_is_a_closed_session_with_all_its_octets() -> None:
    state, deltas = run([rec(STOP, 500, 700, 300)])
    assert deltas == [(500, 700)]
    assert state.closed_at is not None and state.started_at == T0 - timedelta(seconds=300)  # type: ignore[attr-defined]


def test_a_late_stop_closes_without_adding() -> None:
    state, deltas = run([rec(INTERIM, 100, 100, 120), rec(STOP, 90, 90, 100)])
    assert deltas == [(100, 100), (0, 0)] and state.closed_at is not None  # type: ignore[attr-defined]


def test_acct_delay_time_moves_the_event_back() -> None:
    state, _ = run([rec(INTERIM, 1, 1, 10, delay_time=30)])
    assert state.last_at == T0 - timedelta(seconds=30)  # type: ignore[attr-defined]
