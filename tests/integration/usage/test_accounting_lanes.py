"""The listener's parallel lanes against a real PostgreSQL: transactions of several lanes in flight
at once, and still each session's records applied in arrival order, a retransmission that arrives
while its original is in a transaction in flight answered and counted once, and an Accounting-On
amid them closing what it must without a deadlock or a failed commit."""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import asyncpg

from ispmon.store.usage_accounting import AccountingStore
from tests.integration.usage.radclient import SECRET, listener

STEP = 1000  # octets each interim adds
SESSIONS = 24
INTERIMS = 5


def _attr(code: int, value: bytes) -> bytes:
    return bytes([code, len(value) + 2]) + value


def request(ident: int, status: int, session: str | None = None, octets: int = 0) -> bytes:
    body = _attr(40, status.to_bytes(4, "big"))
    if session is not None:
        body += _attr(44, session.encode()) + _attr(1, f"user-{session}".encode())
        body += _attr(42, octets.to_bytes(4, "big")) + _attr(43, (2 * octets).to_bytes(4, "big"))
    header = struct.pack("!BBH", 4, ident, 20 + len(body))
    auth = hashlib.md5(header + bytes(16) + body + SECRET.encode(), usedforsecurity=False).digest()
    return header + auth + body


class Nas(asyncio.DatagramProtocol):
    """One NAS source port: counts the Accounting-Responses per Identifier."""

    def __init__(self) -> None:
        self.answers: dict[int, int] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answers[data[1]] = self.answers.get(data[1], 0) + 1


class SlowStore:
    """The real store, with each commit held open a while: lanes overlap, and what arrives in the
    meantime (retransmissions) queues behind the transaction in flight."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.store = AccountingStore(pool)
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    async def commit(self, batch: Sequence[Any]) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.calls += 1
        try:
            # Uneven: a later transaction often finishes first, as on a loaded server, so records
            # of one session spread over lanes would be applied out of order.
            await asyncio.sleep(0.4 if self.calls % 3 == 1 else 0.05)
            return await self.store.commit(batch)
        finally:
            self.in_flight -= 1


async def _until(predicate: Any, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_lanes_commit_in_parallel_keep_each_sessions_order_and_count_retransmissions_once(
    pool: asyncpg.Pool,
) -> None:
    slow = SlowStore(pool)
    loop = asyncio.get_running_loop()
    async with listener(pool, slow.commit) as (protocol, port):
        transport, nas = await loop.create_datagram_endpoint(Nas, remote_addr=("127.0.0.1", port))
        try:
            ident = 0
            for round_ in range(1, INTERIMS + 1):
                sent = []
                for s in range(SESSIONS):
                    raw = request(ident, 3, f"S-{s}", round_ * STEP)
                    transport.sendto(raw)
                    sent.append(raw)
                    ident += 1
                await asyncio.sleep(0.05)  # the round's transactions are now in flight
                for raw in sent:
                    transport.sendto(raw)  # RFC 5080 retransmission: same Identifier, authenticator
                await asyncio.sleep(0.05)
            await _until(lambda: len(nas.answers) == ident)
        finally:
            transport.close()
    assert slow.most_in_flight > 1, "lanes never committed at the same time"
    assert protocol.stats.commit_failures == 0
    assert protocol.stats.stored == SESSIONS * INTERIMS
    assert protocol.stats.duplicates >= SESSIONS * INTERIMS  # every retransmission found its original
    rows = await pool.fetch(
        "SELECT session_key, delta_in, delta_out, in_octets FROM acct_records ORDER BY session_key, id"
    )
    assert len(rows) == SESSIONS * INTERIMS
    # In arrival order, each interim adds exactly its step: a session's records applied out of
    # order would give one record 2 steps and a later one 0.
    assert {(int(r["delta_in"]), int(r["delta_out"])) for r in rows} == {(STEP, 2 * STEP)}
    sessions = await pool.fetch("SELECT in_octets, out_octets, records FROM radius_sessions")
    assert len(sessions) == SESSIONS
    assert {(int(r["in_octets"]), int(r["out_octets"]), r["records"]) for r in sessions} == {
        (INTERIMS * STEP, 2 * INTERIMS * STEP, INTERIMS)
    }


async def test_an_accounting_on_amid_other_lanes_closes_the_nas_sessions_without_a_failed_commit(
    pool: asyncpg.Pool,
) -> None:
    store = AccountingStore(pool)
    loop = asyncio.get_running_loop()
    async with listener(pool, store.commit) as (protocol, port):
        transport, nas = await loop.create_datagram_endpoint(Nas, remote_addr=("127.0.0.1", port))
        try:
            for s in range(40):
                transport.sendto(request(s, 1, f"S-{s}"))  # Starts
            await _until(lambda: len(nas.answers) == 40)
            ident = 40
            for repeat in range(5):
                for s in range(40):
                    transport.sendto(request(ident, 3, f"S-{s}", (repeat + 1) * STEP))
                    ident += 1
                    if repeat == 2 and s == 20:
                        transport.sendto(request(ident, 7))  # Accounting-On, while lanes commit
                        ident += 1
            await _until(lambda: len(nas.answers) == ident)
        finally:
            transport.close()
    assert protocol.stats.commit_failures == 0
    closed = await pool.fetchval(
        "SELECT count(*) FROM radius_sessions WHERE terminate_cause = 'Accounting-On'"
    )
    assert closed == 40  # every session was open when the NAS said it restarted
    total = await pool.fetchval("SELECT sum(delta_in) FROM acct_records")
    assert int(total) == 40 * 5 * STEP  # interims after the close still count, once
