"""The accounting listener against Debian's radclient and a real PostgreSQL: sessions and usage
byte-exact, retransmissions answered and not counted twice, bad secrets and Accounting-On."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from ispmon.store.usage_accounting import AccountingStore
from tests.integration.usage.radclient import listener, packet, radclient

BASE = {
    "User-Name": "alice",
    "Acct-Session-Id": "S-1",
    "NAS-IP-Address": "127.0.0.1",
    "Framed-IP-Address": "100.64.0.7",
}


def acct(status: str, **attrs: Any) -> str:
    return packet(**{"Acct-Status-Type": status, **BASE, **attrs})


async def session(pool: asyncpg.Pool, key: str = "S-1") -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM radius_sessions WHERE session_key = $1", key)


async def test_start_interims_stop_make_one_session_with_exact_usage(pool: asyncpg.Pool) -> None:
    async with listener(pool) as (protocol, port):
        code, out = await radclient(
            port,
            [
                acct("Start"),
                acct(
                    "Interim-Update",
                    **{"Acct-Input-Octets": 1000, "Acct-Output-Octets": 50000, "Acct-Session-Time": 60},
                ),
                acct(
                    "Interim-Update",
                    **{"Acct-Input-Octets": 3000, "Acct-Output-Octets": 90000, "Acct-Session-Time": 120},
                ),
                acct(
                    "Stop",
                    **{
                        "Acct-Input-Octets": 3500,
                        "Acct-Output-Octets": 100001,
                        "Acct-Session-Time": 150,
                        "Acct-Terminate-Cause": "User-Request",
                    },
                ),
            ],
        )
        assert code == 0, out
        assert out.count("Received Accounting-Response") == 4, out
    row = await session(pool)
    assert (int(row["in_octets"]), int(row["out_octets"]), row["session_time"]) == (3500, 100001, 150)
    assert row["closed_at"] is not None and row["terminate_cause"] == "User-Request"
    assert row["framed_ip"].compressed == "100.64.0.7" if hasattr(row["framed_ip"], "compressed") else True
    sums = await pool.fetchrow(
        "SELECT sum(delta_in) AS i, sum(delta_out) AS o, count(*) AS n FROM acct_records"
    )
    assert (int(sums["i"]), int(sums["o"]), sums["n"]) == (3500, 100001, 4)
    assert protocol.stats.stored == 4 and protocol.stats.answered == 4


async def test_gigaword_wrap_is_counted_exactly(pool: asyncpg.Pool) -> None:
    async with listener(pool) as (_, port):
        code, out = await radclient(
            port,
            [
                acct("Interim-Update", **{"Acct-Input-Octets": 4294967000, "Acct-Output-Octets": 10}),
                # The 32-bit counter wrapped: Gigawords says how often.
                acct(
                    "Interim-Update",
                    **{
                        "Acct-Input-Octets": 704,
                        "Acct-Input-Gigawords": 1,
                        "Acct-Output-Octets": 4294967295,
                        "Acct-Output-Gigawords": 2,
                    },
                ),
            ],
        )
        assert code == 0, out
    row = await session(pool)
    assert int(row["in_octets"]) == 2**32 + 704
    assert int(row["out_octets"]) == 2 * 2**32 + 4294967295
    deltas = await pool.fetch("SELECT delta_in, delta_out FROM acct_records ORDER BY id")
    assert [(int(d["delta_in"]), int(d["delta_out"])) for d in deltas] == [
        (4294967000, 10),
        (2**32 + 704 - 4294967000, 2 * 2**32 + 4294967295 - 10),
    ]


async def test_a_retransmission_is_answered_again_and_counted_once(pool: asyncpg.Pool) -> None:
    store = AccountingStore(pool)
    calls = 0

    async def slow_first_commit(batch: Any) -> Any:
        # The first commit outlasts radclient's timeout, so it retransmits the same packet.
        nonlocal calls
        calls += 1
        result = await store.commit(batch)
        if calls == 1:
            await asyncio.sleep(1.5)
        return result

    async with listener(pool, slow_first_commit) as (protocol, port):
        code, out = await radclient(
            port,
            [acct("Interim-Update", **{"Acct-Input-Octets": 777, "Acct-Output-Octets": 888})],
            "testing123-secret",
            "-r",
            "3",
            "-t",
            "1",
        )
        assert code == 0, out
    assert protocol.stats.received >= 2, protocol.stats
    assert protocol.stats.duplicates >= 1
    sums = await pool.fetchrow(
        "SELECT sum(delta_in) AS i, sum(delta_out) AS o, count(*) AS n FROM acct_records"
    )
    assert (int(sums["i"]), int(sums["o"]), sums["n"]) == (777, 888, 1)


async def test_a_wrong_secret_is_dropped_counted_and_never_answered(pool: asyncpg.Pool) -> None:
    async with listener(pool) as (protocol, port):
        code, out = await radclient(port, [acct("Start")], "not-the-secret", "-r", "1", "-t", "0.5")
        assert code != 0
        assert "Received Accounting-Response" not in out
    assert protocol.stats.bad_authenticator >= 1 and protocol.stats.stored == 0
    assert await pool.fetchval("SELECT count(*) FROM acct_records") == 0


async def test_accounting_on_closes_the_nas_sessions(pool: asyncpg.Pool) -> None:
    async with listener(pool) as (_, port):
        code, out = await radclient(
            port,
            [
                acct("Start"),
                acct("Start", **{"Acct-Session-Id": "S-2", "User-Name": "bob"}),
                packet(**{"Acct-Status-Type": "Accounting-On", "NAS-IP-Address": "127.0.0.1"}),
                acct("Start", **{"Acct-Session-Id": "S-3", "User-Name": "carol"}),
            ],
        )
        assert code == 0, out
    rows = {r["session_key"]: r for r in await pool.fetch("SELECT * FROM radius_sessions")}
    assert rows["S-1"]["closed_at"] is not None and rows["S-1"]["terminate_cause"] == "Accounting-On"
    assert rows["S-2"]["closed_at"] is not None
    assert rows["S-3"]["closed_at"] is None


async def test_malformed_and_unknown_sources_are_dropped_counted_and_survived(pool: asyncpg.Pool) -> None:
    import socket

    async with listener(pool) as (protocol, port):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (
                b"",
                b"\x04",
                b"\x04\x01\x00\x30" + bytes(16),
                b"\x04\x01\x00\x16" + bytes(16) + b"\x2a\xff",
            ):
                sock.sendto(junk, ("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.2", 0))  # no NAS has this address
            other.sendto(b"\x04\x01\x00\x14" + bytes(16), ("127.0.0.1", port))
        code, out = await radclient(port, [acct("Start")])
        assert code == 0, out
    assert protocol.stats.malformed == 4 and protocol.stats.unknown_nas == 1 and protocol.stats.stored == 1


async def test_a_silent_session_is_closed_as_lost_and_an_interim_reopens_it(pool: asyncpg.Pool) -> None:
    from datetime import UTC, datetime, timedelta

    from ispmon.store.usage_accounting import close_lost

    async with listener(pool) as (_, port):
        code, out = await radclient(
            port,
            [
                acct("Interim-Update", **{"Acct-Interim-Interval": 60, "Acct-Input-Octets": 10}),
                acct(
                    "Interim-Update", **{"Acct-Session-Id": "S-2", "Acct-Input-Octets": 10}
                ),  # no interval: 900 s
            ],
        )
        assert code == 0, out
        later = datetime.now(UTC) + timedelta(seconds=200)
        assert await close_lost(pool, 900, later) == 1  # S-1 after 2 x 60 s; S-2 not yet
        row = await session(pool)
        assert row["terminate_cause"] == "lost" and row["closed_at"] == row["last_at"]
        assert (await session(pool, "S-2"))["closed_at"] is None
        code, out = await radclient(port, [acct("Interim-Update", **{"Acct-Input-Octets": 25})])
        assert code == 0, out
    row = await session(pool)
    assert row["closed_at"] is None and int(row["in_octets"]) == 25
    assert int(await pool.fetchval("SELECT sum(delta_in) FROM acct_records WHERE session_key = 'S-1'")) == 25


async def test_an_interim_older_than_the_stored_one_is_stored_and_adds_nothing(pool: asyncpg.Pool) -> None:
    async with listener(pool) as (_, port):
        later = {"Acct-Input-Octets": 9000, "Acct-Output-Octets": 800, "Acct-Session-Time": 120}
        earlier = {"Acct-Input-Octets": 4000, "Acct-Output-Octets": 300, "Acct-Session-Time": 60}
        code, out = await radclient(
            port, [acct("Interim-Update", **later), acct("Interim-Update", **earlier)]
        )
        assert code == 0, out
    row = await session(pool)
    assert (int(row["in_octets"]), int(row["out_octets"]), row["session_time"]) == (9000, 800, 120)
    deltas = await pool.fetch("SELECT in_octets, delta_in, delta_out FROM acct_records ORDER BY id")
    assert [(int(d["in_octets"]), int(d["delta_in"]), int(d["delta_out"])) for d in deltas] == [
        (9000, 9000, 800),
        (4000, 0, 0),
    ]
