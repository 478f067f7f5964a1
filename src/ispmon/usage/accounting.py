"""Sessions and usage deltas from accounting records: pure functions, no I/O, no clock.

`apply_record(state, record, at)` -> (new state, delta in, delta out). Counters never go
backwards: an interim that arrives after a later one (UDP reorders, a NAS retransmits an old
one with a new Identifier) is stored but adds nothing, and the session keeps the later figures.
A Stop without a Start makes a closed session holding all its octets; Accounting-On/Off close
every open session of the NAS (`close_for_nas` is the store's job, by NAS id).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ispmon.usage.radius import INTERIM, START, STOP, AcctRecord


@dataclass(frozen=True, slots=True)
class SessionState:
    """What one session's row holds between records."""

    started_at: datetime
    last_at: datetime
    in_octets: int
    out_octets: int
    session_time: int
    closed_at: datetime | None = None
    terminate_cause: str | None = None
    interim_interval: int | None = None
    username: str | None = None
    framed_ip: str | None = None
    calling_station: str | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One verified request: who sent it, its duplicate key, and its record."""

    nas_id: str
    source_port: int
    identifier: int
    authenticator: bytes
    record: AcctRecord
    received_at: datetime

    @property
    def key(self) -> tuple[str, int, int, bytes]:
        return (self.nas_id, self.source_port, self.identifier, self.authenticator)


LOST = "lost"  # the terminate cause of a session closed for want of interims


def lost_after(interim_interval: int | None, default_interval: int) -> timedelta:
    """A session with no record for twice its interim interval is closed as lost (issue 12 §4)."""
    return timedelta(seconds=2 * (interim_interval or default_interval))


def event_time(record: AcctRecord, received_at: datetime) -> datetime:
    """When the NAS saw the event: Acct-Delay-Time seconds before we received it (RFC 2866 5.2)."""
    # A delay beyond a day is a broken NAS clock or counter, not a real backlog: ignore it.
    delay = record.delay_time if record.delay_time <= 86400 else 0
    return received_at - timedelta(seconds=delay)


def apply_record(
    state: SessionState | None, record: AcctRecord, at: datetime
) -> tuple[SessionState, int, int]:
    """The session after `record` (received at `at`), and the octets it adds in and out."""
    when = event_time(record, at)
    session_time = record.session_time or 0
    if state is None:
        started = when - timedelta(seconds=session_time)
        closed = when if record.status == STOP else None
        new = SessionState(
            started_at=started,
            last_at=when,
            in_octets=record.in_octets,
            out_octets=record.out_octets,
            session_time=session_time,
            closed_at=closed,
            terminate_cause=record.terminate_cause if closed else None,
            interim_interval=record.interim_interval,
            username=record.username,
            framed_ip=record.framed_ip,
            calling_station=record.calling_station,
        )
        # The first record seen carries everything the session used so far (a lost Start, or a
        # Stop without a Start, still counts its octets once).
        return new, record.in_octets, record.out_octets
    if record.status not in (START, INTERIM, STOP):
        return state, 0, 0
    older = (
        record.in_octets < state.in_octets
        or record.out_octets < state.out_octets
        or (record.session_time is not None and session_time < state.session_time)
    )
    if state.terminate_cause == LOST and record.status == INTERIM and not older:
        # Declared lost for want of interims, but the NAS still had it: it was never over.
        state = replace(state, closed_at=None, terminate_cause=None)
    if older:
        # Out of order: stored as a record, but the session keeps the later counters. A late
        # Stop still closes the session (its counters are not newer, but the session did end).
        if record.status == STOP and state.closed_at is None:
            return replace(state, closed_at=when, terminate_cause=record.terminate_cause), 0, 0
        return state, 0, 0
    delta_in = record.in_octets - state.in_octets
    delta_out = record.out_octets - state.out_octets
    # Built whole rather than with dataclasses.replace, which costs several times as much, and
    # this runs for every interim.
    new = SessionState(
        started_at=state.started_at,
        last_at=max(when, state.last_at),
        in_octets=record.in_octets,
        out_octets=record.out_octets,
        session_time=max(session_time, state.session_time),
        closed_at=state.closed_at,
        terminate_cause=state.terminate_cause,
        interim_interval=record.interim_interval or state.interim_interval,
        username=record.username or state.username,
        framed_ip=record.framed_ip or state.framed_ip,
        calling_station=record.calling_station or state.calling_station,
    )
    if record.status == STOP and state.closed_at is None:
        new = replace(new, closed_at=when, terminate_cause=record.terminate_cause)
    elif record.status == START and state.closed_at is None:
        new = replace(new, started_at=min(state.started_at, when - timedelta(seconds=session_time)))
    return new, delta_in, delta_out
