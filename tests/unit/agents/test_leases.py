"""The singleton lease's decisions (pure): gaining, keeping, losing by answer and by time alone."""

from __future__ import annotations

import pytest

from ispmon.agents.leases import (
    Change,
    Granted,
    LeaseTimes,
    Tenure,
    attempt_timeout,
    expired,
    holds,
    next_attempt,
    renewed,
)

TIMES = LeaseTimes.from_dead_after(30.0)


def test_times_from_dead_after() -> None:
    assert LeaseTimes(ttl=30.0, renew_every=6.0, stop_margin=7.5) == TIMES
    # The smallest AGENT_DEAD_AFTER (5 s): one renewal a second, a second kept back to stop in.
    assert LeaseTimes.from_dead_after(5.0) == LeaseTimes(ttl=5.0, renew_every=1.0, stop_margin=1.25)


@pytest.mark.parametrize(("ttl", "renew", "margin"), [(5, 5, 1), (5, 4.5, 1), (5, 0, 1), (5, 1, 5)])
def test_times_that_leave_no_room_are_refused(ttl: float, renew: float, margin: float) -> None:
    with pytest.raises(ValueError, match="do not fit"):
        LeaseTimes(ttl, renew, margin)


def test_gained_deadline_counts_from_the_send_not_the_reply() -> None:
    tenure, change = renewed(None, Granted(4), sent_at=100.0, times=TIMES)
    assert change is Change.GAINED
    assert tenure == Tenure(4, 100.0 + 30.0 - 7.5)


def test_renewal_of_the_same_epoch_extends_without_a_change() -> None:
    tenure, _ = renewed(None, Granted(4), 100.0, TIMES)
    tenure, change = renewed(tenure, Granted(4), 106.0, TIMES)
    assert change is None and tenure == Tenure(4, 128.5)


def test_a_deadline_never_moves_back() -> None:
    tenure = Tenure(4, 200.0)
    tenure2, change = renewed(tenure, Granted(4), 100.0, TIMES)
    assert change is None and tenure2 == tenure


def test_another_holder_answers_lost() -> None:
    tenure, change = renewed(Tenure(4, 122.5), None, 106.0, TIMES)
    assert tenure is None and change is Change.LOST


def test_a_contender_that_is_refused_changes_nothing() -> None:
    assert renewed(None, None, 106.0, TIMES) == (None, None)


def test_a_new_epoch_of_ours_restarts_the_work() -> None:
    tenure, change = renewed(Tenure(4, 122.5), Granted(6), 106.0, TIMES)
    assert change is Change.RETAKEN and tenure == Tenure(6, 128.5)


@pytest.mark.parametrize(
    ("now", "held"),
    [(100.0, True), (122.49, True), (122.5, False), (1_000.0, False)],
)
def test_the_clock_alone_ends_a_tenure_at_its_deadline(now: float, held: bool) -> None:
    tenure = Tenure(4, 122.5)
    assert holds(tenure, now) is held
    after, change = expired(tenure, now)
    assert (after is tenure, change) == ((True, None) if held else (False, Change.LOST))


def test_nobody_holds_nothing() -> None:
    assert holds(None, 0.0) is False
    assert expired(None, 10.0) == (None, None)


def test_the_holder_stops_before_any_other_agent_may_take_over() -> None:
    """Fencing by time: sent at t, the row (database clock, read after t) lasts until at least
    t + TTL; the holder's deadline is a stop margin before that."""
    for dead_after in (5.0, 12.0, 30.0, 3600.0):
        times = LeaseTimes.from_dead_after(dead_after)
        tenure, _ = renewed(None, Granted(1), 50.0, times)
        assert tenure is not None
        assert tenure.deadline <= 50.0 + dead_after - 1.0
        # ... and it has time for several renewals before that.
        assert (tenure.deadline - 50.0) / times.renew_every >= 3


def test_next_attempt() -> None:
    assert next_attempt(None, None, 10.0, TIMES) == 0.0  # first attempt: now
    assert next_attempt(None, 10.0, 11.0, TIMES) == pytest.approx(5.0)
    assert next_attempt(None, 10.0, 30.0, TIMES) == 0.0  # late (the loop stalled): at once
    # A holder wakes at its deadline even if a renewal would come later.
    assert next_attempt(Tenure(1, 12.0), 10.0, 11.0, TIMES) == pytest.approx(1.0)


def test_attempt_timeout_is_bounded_by_the_deadline() -> None:
    assert attempt_timeout(None, 0.0, TIMES) == 6.0
    assert attempt_timeout(Tenure(1, 100.0), 10.0, TIMES) == 6.0
    assert attempt_timeout(Tenure(1, 100.0), 98.0, TIMES) == pytest.approx(2.0)
    assert attempt_timeout(Tenure(1, 100.0), 100.0, TIMES) == 0.05
