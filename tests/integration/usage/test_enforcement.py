"""Quota crossings enforced by RFC 5176 CoA/Disconnect to a NAS listener written here (pyrad's
codec, real UDP on 127.0.0.1) that verifies the Request Authenticator and answers ACK, NAK or
nothing; once per customer, period and threshold, also across a restart; the audit trail first."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from pyrad.packet import CoANAK, CoAPacket

from ispmon.services.customers import CustomerService
from ispmon.store.database import Database
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.enforce import Enforcer
from ispmon.usage.quota_pass import Commit, QuotaTracker, enforce_quotas
from ispmon.usage.radius import dictionary
from tests.integration.usage.test_rollups import interim

SECRET = "coa-secret"


class Nas(asyncio.DatagramProtocol):
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.received: list[dict[str, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = CoAPacket(packet=data, secret=SECRET.encode(), dict=dictionary())
        verified = request.VerifyCoARequest()  # RFC 5176 section 2.3
        self.received.append(
            {"code": request.code, "verified": verified, "attrs": {k: request[k] for k in request.keys()}}  # noqa: SIM118
        )
        if self.answer == "none" or not verified:
            return
        reply = request.CreateReply()
        if self.answer == "nak":
            reply.code = CoANAK
            reply["Error-Cause"] = "Administratively-Prohibited"
        assert self.transport is not None
        self.transport.sendto(reply.ReplyPacket(), addr)


async def nas(db: Database, answer: str) -> tuple[Nas, asyncio.DatagramTransport]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Nas(answer), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    await db.pool.execute(
        "INSERT INTO nas_clients (id, name, address, secret, coa_port) VALUES ('bras-1', 'B', '127.0.0.1', $1, $2)",
        SECRET,
        port,
    )
    return protocol, transport


async def over_quota(db: Database, policy: dict[str, Any], commit: Commit | None = None) -> datetime:
    """Carol, with a 1,000-byte quota, uses 1,100 bytes (through `commit`: the daemon's is the
    quota tracker's wrapper around the accounting store's)."""
    await CustomerService(db).create_customer(
        {"id": "carol", "name": "Carol", "usernames": ["carol"], "quota_bytes": 1000, "enforcement": policy}
    )
    now = datetime.now(UTC)
    await (commit or AccountingStore(db.pool).commit)([interim("S-9", 200, 900, 1, now)])
    return now


async def audit(pool: asyncpg.Pool) -> list[tuple[str, str, int, str | None]]:
    rows = await pool.fetch("SELECT action, state, attempts, detail FROM enforcements ORDER BY id")
    return [(r["action"], r["state"], r["attempts"], r["detail"]) for r in rows]


async def test_coa_is_sent_once_verified_and_not_again_after_a_restart(db: Database) -> None:
    listener, transport = await nas(db, "ack")
    try:
        await over_quota(db, {"policy": "coa", "attributes": {"Filter-Id": "throttled"}})
        enforcer = Enforcer(db.pool, timeout=0.5, tries=2)
        assert await enforcer.check("carol") == [80, 100]
        # Written before it is sent: pending, no attempt yet (a kill -9 here loses nothing).
        assert await audit(db.pool) == [("coa", "pending", 0, None)]
        assert await enforcer.dispatch() == 1
        assert await audit(db.pool) == [("coa", "acked", 1, None)]
        assert len(listener.received) == 1 and listener.received[0]["verified"]
        assert listener.received[0]["attrs"]["Filter-Id"] == ["throttled"]
        assert listener.received[0]["attrs"]["Acct-Session-Id"] == ["S-9"]
        # The daemon restarts: a new Enforcer on the same database sends nothing again.
        again = Enforcer(db.pool, timeout=0.5, tries=2)
        assert await again.check("carol") == []
        assert await again.dispatch() == 0
        assert len(listener.received) == 1
    finally:
        transport.close()


async def test_crash_between_audit_and_send_sends_it_at_the_next_start(db: Database) -> None:
    listener, transport = await nas(db, "ack")
    try:
        await over_quota(db, {"policy": "disconnect"})
        assert await Enforcer(db.pool).check("carol") == [80, 100]  # then "killed" before dispatch
        restarted = Enforcer(db.pool, timeout=0.5, tries=2)
        assert await restarted.check("carol") == []
        assert await restarted.dispatch() == 1
        assert await audit(db.pool) == [("disconnect", "acked", 1, None)]
        assert [r["code"] for r in listener.received] == [40]  # Disconnect-Request
    finally:
        transport.close()


@pytest.mark.parametrize(
    ("answer", "state", "attempts", "detail"),
    [("nak", "nak", 1, "Error-Cause 501"), ("none", "timeout", 2, None)],
)
async def test_nak_and_timeout_are_recorded(
    db: Database, answer: str, state: str, attempts: int, detail: str | None
) -> None:
    listener, transport = await nas(db, answer)
    try:
        await over_quota(db, {"policy": "coa", "attributes": {"Filter-Id": "throttled"}})
        enforcer = Enforcer(db.pool, timeout=0.3, tries=2)
        await enforcer.check("carol")
        await enforcer.dispatch()
        assert await audit(db.pool) == [("coa", state, 1, detail)]
        assert len(listener.received) == attempts  # retried on timeout, same packet
    finally:
        transport.close()


async def test_the_daemons_quota_pass_finds_the_crossing_and_enforces_it(db: Database) -> None:
    listener, transport = await nas(db, "ack")
    await CustomerService(db).create_customer(
        {"id": "dave", "name": "Dave", "usernames": ["dave"]}
    )  # no quota
    tracker = QuotaTracker(Enforcer(db.pool, timeout=0.5, tries=2))
    task = asyncio.create_task(enforce_quotas(tracker, every=0.05))
    try:
        commit = tracker.wrap(AccountingStore(db.pool).commit)
        await over_quota(db, {"policy": "coa", "attributes": {"Filter-Id": "throttled"}}, commit)
        for _ in range(100):
            if await audit(db.pool) == [("coa", "acked", 1, None)]:
                break
            await asyncio.sleep(0.05)
        assert await audit(db.pool) == [("coa", "acked", 1, None)]
        await asyncio.sleep(0.3)  # more passes: nothing more is sent
        assert len(listener.received) == 1
    finally:
        task.cancel()
        transport.close()
