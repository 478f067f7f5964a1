"""Two accounting listeners (two agents) on one PostgreSQL never double-count (issue 16 §6).

A NAS fails over from one agent to another: it resends the same Accounting-Request there (same
source port, Identifier and authenticator), or sends the next interim there. Each agent has its
own listener and its own pool; what the database holds must be the usage of one agent: each
record stored once, each session's counters and record count as one listener would leave them,
the customer's rollups exact, and every request answered by each agent it was sent to, with no
failed commit (a failed commit leaves every record of its batch unanswered).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from ispmon.store.db import create_pool
from ispmon.usage.listener import AccountingProtocol
from tests.integration.usage.radclient import SECRET, listener

STEP = 1000  # octets in each interim adds (twice that out)


def _attr(code: int, value: bytes) -> bytes:
    return bytes([code, len(value) + 2]) + value


def request(ident: int, status: int, session: str, octets: int) -> bytes:
    body = _attr(40, status.to_bytes(4, "big")) + _attr(44, session.encode())
    body += _attr(1, f"user-{session}".encode())
    body += _attr(42, octets.to_bytes(4, "big")) + _attr(43, (2 * octets).to_bytes(4, "big"))
    header = struct.pack("!BBH", 4, ident, 20 + len(body))
    auth = hashlib.md5(header + bytes(16) + body + SECRET.encode(), usedforsecurity=False).digest()
    return header + auth + body


class Nas(asyncio.DatagramProtocol):
    """One NAS socket (one source port) talking to both agents: answers per (agent port, Identifier)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[int, int], int] = {}
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        key = (addr[1], data[1])
        self.answers[key] = self.answers.get(key, 0) + 1


async def _answered(nas: Nas, count: int, seconds: float = 30.0) -> None:
    """Until `count` (agent, Identifier) pairs are answered; a generous bound, the CPU is shared."""
    deadline = asyncio.get_running_loop().time() + seconds
    while len(nas.answers) < count:
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def two_agents(
    pool: asyncpg.Pool, db_dsn: str
) -> AsyncIterator[tuple[tuple[AccountingProtocol, int], tuple[AccountingProtocol, int], Nas]]:
    other = await create_pool(db_dsn, min_size=1, max_size=4)  # the second agent's own pool
    loop = asyncio.get_running_loop()
    try:
        async with listener(pool) as a, listener(other) as b:
            transport, nas = await loop.create_datagram_endpoint(Nas, local_addr=("127.0.0.1", 0))
            try:
                yield a, b, nas
            finally:
                transport.close()
    finally:
        await other.close()


@pytest.fixture
async def customers(pool: asyncpg.Pool) -> None:
    """Customer c-N owns the sessions of user-S-N, so every commit also rolls usage up."""
    await pool.execute(
        """INSERT INTO customers (id, name, spec)
           SELECT 'c-' || n, 'c-' || n, '{}'::jsonb FROM generate_series(0, 29) AS n"""
    )
    await pool.execute(
        """INSERT INTO customer_usernames (username, customer_id)
           SELECT 'user-S-' || n, 'c-' || n FROM generate_series(0, 29) AS n"""
    )


async def _assert_usage_of_one(pool: asyncpg.Pool, sessions: int, interims: int) -> None:
    records = await pool.fetch("SELECT session_key, delta_in, delta_out FROM acct_records")
    assert len(records) == sessions * (interims + 1)  # a Start and the interims, each once
    assert sum(int(r["delta_in"]) for r in records) == sessions * interims * STEP
    rows = await pool.fetch("SELECT session_key, in_octets, out_octets, records FROM radius_sessions")
    assert len(rows) == sessions
    assert {(int(r["in_octets"]), int(r["out_octets"]), r["records"]) for r in rows} == {
        (interims * STEP, 2 * interims * STEP, interims + 1)
    }
    rollups = await pool.fetch(
        "SELECT customer_id, step, sum(bytes_in) AS i, sum(bytes_out) AS o FROM usage_rollups GROUP BY 1, 2"
    )
    assert len(rollups) == 2 * sessions  # an hour and a day per customer (or two of each at :00)
    assert {(r["step"], int(r["i"]), int(r["o"])) for r in rollups} == {
        ("hour", interims * STEP, 2 * interims * STEP),
        ("day", interims * STEP, 2 * interims * STEP),
    }


async def test_the_same_requests_received_by_two_agents_at_once_count_once(
    pool: asyncpg.Pool, db_dsn: str, customers: None
) -> None:
    sessions, interims = 30, 4
    async with two_agents(pool, db_dsn) as ((a, port_a), (b, port_b), nas):
        ident = 0
        for round_ in range(interims + 1):
            status = 1 if round_ == 0 else 3  # the Starts (new sessions on both agents), then interims
            for s in range(sessions):
                raw = request(ident, status, f"S-{s}", round_ * STEP)
                # Both at once: both agents' commits race for the same session and record.
                nas.transport.sendto(raw, ("127.0.0.1", port_a))
                nas.transport.sendto(raw, ("127.0.0.1", port_b))
                ident += 1
            await _answered(nas, 2 * ident)
        assert a.stats.commit_failures == 0 and b.stats.commit_failures == 0
        assert a.stats.answered + b.stats.answered == 2 * ident
        # Each request stored by one agent and found stored by the other.
        assert a.stats.stored + b.stats.stored == ident
    await _assert_usage_of_one(pool, sessions, interims)


async def test_interims_alternating_between_two_agents_count_once(
    pool: asyncpg.Pool, db_dsn: str, customers: None
) -> None:
    sessions, interims = 20, 6
    async with two_agents(pool, db_dsn) as ((a, port_a), (b, port_b), nas):
        ports = (port_a, port_b)
        ident = 0
        for round_ in range(interims + 1):
            status = 1 if round_ == 0 else 3
            sent = []
            for s in range(sessions):
                raw = request(ident, status, f"S-{s}", round_ * STEP)
                # Session s's records go to agent (s + round) % 2: every session changes agent at
                # every interim, and each round half the sessions are on each agent.
                port = ports[(s + round_) % 2]
                nas.transport.sendto(raw, ("127.0.0.1", port))
                sent.append((raw, port))
                ident += 1
            await _answered(nas, 2 * ident - sessions)  # earlier rounds: twice
            # The NAS missed those answers and fails over: the same requests to the other agent.
            for raw, port in sent:
                nas.transport.sendto(raw, ("127.0.0.1", port_b if port == port_a else port_a))
            await _answered(nas, 2 * ident)
        assert a.stats.commit_failures == 0 and b.stats.commit_failures == 0
        assert a.stats.stored + b.stats.stored == ident
        assert a.stats.duplicates + b.stats.duplicates == ident
    await _assert_usage_of_one(pool, sessions, interims)
