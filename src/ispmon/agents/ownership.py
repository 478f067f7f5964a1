"""Which agent checks which endpoint: pure functions over the agent rows (no I/O, no clock).

Rendezvous (highest-random-weight) hashing over the live agents of a location: every agent that
reads the same rows computes the same owner for every endpoint, with nothing stored per endpoint
(20,000 endpoints cost no rows and no renewals), and when an agent joins or leaves only the
endpoints it gains or loses move (1/n of them), the others stay where they are.

Membership changes take effect at times every agent can compute in advance from the rows: an
agent counts from ``joined_at + settle`` (settle is longer than the time every other agent needs
to have read the new row) until ``last_heartbeat + dead_after``, or until a clean stop's
``stopped_at``. Applied at those instants together with the scheduler's wall-clock grid, a
hand-over from one agent to another never checks an endpoint twice in one interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One row of `agents`, times in seconds since the epoch on the database's clock."""

    id: str
    location: str
    joined_at: float
    last_heartbeat: float
    stopped_at: float | None = None


def live_from(row: AgentRow, settle: float) -> float:
    return row.joined_at + settle


def dead_at(row: AgentRow, dead_after: float) -> float:
    end = row.last_heartbeat + dead_after
    return end if row.stopped_at is None else min(end, row.stopped_at)


def is_member(row: AgentRow, t: float, dead_after: float, settle: float) -> bool:
    return live_from(row, settle) <= t < dead_at(row, dead_after)


def members(
    rows: Iterable[AgentRow], t: float, dead_after: float, settle: float
) -> dict[str, tuple[str, ...]]:
    """Location -> the ids of its agents that share its endpoints at time `t` (sorted)."""
    out: dict[str, list[str]] = {}
    for row in rows:
        if is_member(row, t, dead_after, settle):
            out.setdefault(row.location, []).append(row.id)
    return {loc: tuple(sorted(ids)) for loc, ids in out.items()}


def next_change(rows: Iterable[AgentRow], t: float, dead_after: float, settle: float) -> float | None:
    """The first time after `t` at which `members` would answer differently (a join taking effect,
    or a heartbeat running out), or None. Agents that keep heartbeating push their own time ahead."""
    times = [x for row in rows for x in (live_from(row, settle), dead_at(row, dead_after)) if x > t]
    return min(times) if times else None


def weight(agent_id: str, key: str) -> int:
    """The rendezvous weight of `agent_id` for `key` (stable across processes and versions)."""
    digest = hashlib.blake2b(f"{agent_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, agents: Sequence[str]) -> str | None:
    """The agent among `agents` that owns `key`; None when there is none."""
    if not agents:
        return None
    if len(agents) == 1:
        return agents[0]
    return max(agents, key=lambda a: weight(a, key))


def probed_from(locations: Sequence[str] | None, known: Iterable[str]) -> tuple[str, ...]:
    """The locations an endpoint is checked from: its own list, or every location known (all by
    default)."""
    if locations:
        return tuple(locations)
    return tuple(sorted(set(known)))
