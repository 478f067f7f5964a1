"""The singleton lease's decisions, without I/O: when to renew, when this agent holds the lease, and
when it must stop its singleton work although the database has not said it lost it.

The lease row (`agent_leases`) is taken and renewed with the database's clock: it is valid until
`expires_at`, which each renewal sets to the database's now() plus the TTL (AGENT_DEAD_AFTER).
Another agent takes it only once `expires_at` is past. So the holder can bound its own tenure from
its side: a renewal's now() is read after the holder *sent* the statement, so the row cannot
expire before `sent + TTL` on the holder's monotonic clock (clock rates agree far better than the
margin). The holder stops its work at `sent + TTL - margin`, the margin leaving time to cancel what
is in flight, unless a later renewal succeeded first. A renewal that fails (database away, the
statement times out) or never runs (the loop stalled) therefore ends the tenure by time alone, and
two agents never do the work at once: fencing by time, no coordination needed to give up.

Every function takes `now` (monotonic seconds) and returns the new state and the change, if any.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

LEADER_LEASE = "leader"
# Renewals per TTL: a holder survives missing a few of them before its margin is reached.
RENEWALS_PER_TTL = 5
# Of the TTL, kept back to stop the work before another agent may take the lease.
STOP_MARGIN_SHARE = 0.25
MIN_STOP_MARGIN = 1.0


class Change(Enum):
    GAINED = "gained"
    LOST = "lost"
    # The row shows a new epoch of ours: someone (or an expiry) came in between, so the work
    # restarts from the database's state (stop, then start).
    RETAKEN = "retaken"


@dataclass(frozen=True, slots=True)
class LeaseTimes:
    ttl: float
    renew_every: float
    stop_margin: float

    @classmethod
    def from_dead_after(cls, dead_after: float) -> LeaseTimes:
        margin = max(MIN_STOP_MARGIN, dead_after * STOP_MARGIN_SHARE)
        return cls(ttl=dead_after, renew_every=dead_after / RENEWALS_PER_TTL, stop_margin=margin)

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.ttl - self.stop_margin:
            raise ValueError(
                f"renewals every {self.renew_every} s do not fit a {self.ttl} s TTL less its margin"
            )


@dataclass(frozen=True, slots=True)
class Tenure:
    """This agent holds the lease: since which epoch, and until when it may act (monotonic)."""

    epoch: int
    deadline: float


@dataclass(frozen=True, slots=True)
class Granted:
    """What a take-or-renew statement answered: the row now names this agent, with this epoch."""

    epoch: int


def renewed(
    tenure: Tenure | None, granted: Granted | None, sent_at: float, times: LeaseTimes
) -> tuple[Tenure | None, Change | None]:
    """A take-or-renew statement sent at `sent_at` answered: `granted` when the row is ours now,
    None when another agent holds a valid lease."""
    if granted is None:
        return None, (Change.LOST if tenure is not None else None)
    new = Tenure(granted.epoch, sent_at + times.ttl - times.stop_margin)
    if tenure is None:
        return new, Change.GAINED
    if tenure.epoch != granted.epoch:
        return new, Change.RETAKEN
    # A reply can arrive after a later one was sent in another order only if calls overlap; they
    # do not (one loop), but never move a deadline backwards all the same.
    return Tenure(new.epoch, max(new.deadline, tenure.deadline)), None


def expired(tenure: Tenure | None, now: float) -> tuple[Tenure | None, Change | None]:
    """The clock alone: past its deadline, the tenure is over (a renewal failed or never ran)."""
    if tenure is not None and now >= tenure.deadline:
        return None, Change.LOST
    return tenure, None


def holds(tenure: Tenure | None, now: float) -> bool:
    """May this agent do singleton work at `now`?"""
    return tenure is not None and now < tenure.deadline


def next_attempt(tenure: Tenure | None, last_sent: float | None, now: float, times: LeaseTimes) -> float:
    """Seconds to wait before the next take-or-renew (0: now). A holder renews every renew_every
    and also wakes at its deadline; a contender tries every renew_every, so a released lease is
    taken within one period and an expired one within one period of its expiry."""
    due = now if last_sent is None else last_sent + times.renew_every
    if tenure is not None:
        due = min(due, tenure.deadline)
    return max(0.0, due - now)


def attempt_timeout(tenure: Tenure | None, now: float, times: LeaseTimes) -> float:
    """How long a take-or-renew may take: a holder's must answer before its deadline (else it
    could not stop in time and would be renewing a lease it already gave up); a contender's, one
    period (its result is stale after that)."""
    if tenure is None:
        return times.renew_every
    return max(0.05, min(times.renew_every, tenure.deadline - now))
