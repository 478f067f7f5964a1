"""CoA/Disconnect sends are concurrent under a bound, on real UDP to the NAS listener of
test_enforcement (pyrad's codec; it verifies the Request Authenticator): a NAS that never answers
does not hold up another NAS's CoA, one NAS never has more than `per_nas` requests in flight, and a
pending row whose NAS was deleted becomes `unsent` with its reason, logged once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from structlog.testing import capture_logs

from ispmon.services.customers import CustomerService
from ispmon.store.database import Database
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.accounting import Received
from ispmon.usage.enforce import Enforcer
from tests.integration.usage.test_enforcement import SECRET, Nas, audit
from tests.integration.usage.test_rollups import interim

THROTTLE = {"policy": "coa", "attributes": {"Filter-Id": "throttled"}}


class TimedNas(Nas):
    """Nas that also notes when each request arrived (monotonic)."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.times: list[float] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.times.append(time.monotonic())
        super().datagram_received(data, addr)


async def nas_at(db: Database, nas_id: str, answer: str) -> tuple[TimedNas, asyncio.DatagramTransport]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: TimedNas(answer), local_addr=("127.0.0.1", 0)
    )
    await db.pool.execute(
        "INSERT INTO nas_clients (id, name, address, secret, coa_port) VALUES ($1, $1, '127.0.0.1', $2, $3)",
        nas_id, SECRET, transport.get_extra_info("sockname")[1],
    )  # fmt: skip
    return protocol, transport


def usage(nas_id: str, username: str, session: str, identifier: int) -> Received:
    """1,100 bytes in one interim of `session` on `nas_id` for `username`."""
    item = interim(session, 200, 900, identifier, datetime.now(UTC))
    return replace(item, nas_id=nas_id, record=replace(item.record, username=username, session_id=session))


async def over_quota(db: Database, customer_id: str, items: list[Received], policy: dict[str, Any]) -> None:
    await CustomerService(db).create_customer(
        {"id": customer_id, "name": customer_id, "usernames": [customer_id], "quota_bytes": 1000,
         "enforcement": policy}
    )  # fmt: skip
    await AccountingStore(db.pool).commit(items)


async def state_of(db: Database, customer_id: str) -> str:
    return await db.pool.fetchval("SELECT state FROM enforcements WHERE customer_id = $1", customer_id)


async def test_a_dead_nas_does_not_delay_another_nas_coa(db: Database) -> None:
    dead, dead_transport = await nas_at(db, "bras-dead", "none")
    live, live_transport = await nas_at(db, "bras-live", "ack")
    try:
        await over_quota(db, "carol", [usage("bras-dead", "carol", "D-1", 1)], THROTTLE)
        await over_quota(db, "erin", [usage("bras-live", "erin", "L-1", 2)], THROTTLE)
        enforcer = Enforcer(db.pool, timeout=1.0, tries=3)  # the dead NAS costs 3 s
        assert await enforcer.check("carol") == [80, 100]  # carol's row first: sent first
        assert await enforcer.check("erin") == [80, 100]
        started = time.monotonic()
        dispatch = asyncio.create_task(enforcer.dispatch())
        while await state_of(db, "erin") != "acked":
            assert time.monotonic() - started < 5, "erin's CoA was never acked"
            await asyncio.sleep(0.02)
        acked_after = time.monotonic() - started
        # Acked before the dead NAS's first timeout, and while carol's request is still in flight.
        assert acked_after < 1.0, acked_after
        assert await state_of(db, "carol") == "pending"
        assert len(dead.received) >= 1
        assert await dispatch == 2
        assert await audit(db.pool) == [("coa", "timeout", 1, None), ("coa", "acked", 1, None)]
        assert len(dead.received) == 3 and len(live.received) == 1 and live.received[0]["verified"]
    finally:
        dead_transport.close()
        live_transport.close()


async def test_one_nas_has_at_most_per_nas_requests_in_flight(db: Database) -> None:
    dead, transport = await nas_at(db, "bras-dead", "none")
    try:
        items = [usage("bras-dead", "carol", f"D-{i}", i) for i in range(6)]
        await over_quota(db, "carol", items, {"policy": "disconnect"})
        enforcer = Enforcer(db.pool, timeout=0.4, tries=1, per_nas=2)
        await enforcer.check("carol")
        started = time.monotonic()
        assert await enforcer.dispatch() == 6
        elapsed = time.monotonic() - started
        # Three rounds of two (each waits its 0.4 s timeout): never a third before one is done.
        offsets = sorted(t - started for t in dead.times)
        assert len(offsets) == 6
        assert offsets[1] < 0.3 and offsets[2] >= 0.35, offsets
        assert offsets[3] < 0.7 and offsets[4] >= 0.75, offsets
        assert 1.1 <= elapsed < 2.0, elapsed
        assert {a[1] for a in await audit(db.pool)} == {"timeout"}
    finally:
        transport.close()


async def test_a_row_whose_nas_was_deleted_is_unsent_with_its_reason_once(db: Database) -> None:
    live, transport = await nas_at(db, "bras-live", "ack")
    gone, gone_transport = await nas_at(db, "bras-gone", "ack")
    try:
        await over_quota(
            db,
            "carol",
            [usage("bras-gone", "carol", "G-1", 1), usage("bras-live", "carol", "L-1", 2)],
            THROTTLE,
        )
        enforcer = Enforcer(db.pool, timeout=0.5, tries=2)
        await enforcer.check("carol")
        await db.pool.execute("DELETE FROM nas_clients WHERE id = 'bras-gone'")
        with capture_logs() as logs:
            assert await enforcer.dispatch() == 2
            assert await enforcer.dispatch() == 0  # terminal: never looked at again
        rows = await db.pool.fetch("SELECT nas_id, state, attempts, detail FROM enforcements ORDER BY nas_id")
        assert [tuple(r) for r in rows] == [
            ("bras-gone", "unsent", 0, "NAS bras-gone is not configured any more: nothing was sent"),
            ("bras-live", "acked", 1, None),
        ]
        unsent = [entry for entry in logs if entry["event"] == "quota_enforcement_unsent"]
        assert len(unsent) == 1 and unsent[0]["nas_id"] == "bras-gone" and unsent[0]["customer_id"] == "carol"
        assert len(live.received) == 1 and gone.received == []
    finally:
        transport.close()
        gone_transport.close()


async def test_a_coa_whose_customer_was_deleted_is_unsent(db: Database) -> None:
    live, transport = await nas_at(db, "bras-live", "ack")
    try:
        await over_quota(db, "carol", [usage("bras-live", "carol", "L-1", 1)], THROTTLE)
        enforcer = Enforcer(db.pool, timeout=0.5, tries=2)
        await enforcer.check("carol")
        await CustomerService(db).delete_customer("carol")
        assert await enforcer.dispatch() == 1
        assert await audit(db.pool) == [
            (
                "coa",
                "unsent",
                0,
                "customer carol was deleted, and with it the attributes to send: nothing was sent",
            )
        ]
        assert live.received == []  # no CoA without its attributes
    finally:
        transport.close()
