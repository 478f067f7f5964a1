"""Usage rollups and the summary, on a real PostgreSQL with Debian's radclient feeding the real
listener: byte-exact per hour, day and month in the customer's zone; a retransmission and a
failed commit count nothing twice and lose nothing; the summary's period arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ispmon.services.customers import CustomerService
from ispmon.services.usage import UsageService
from ispmon.store.database import Database
from ispmon.store.db import migrate
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.accounting import Received
from ispmon.usage.radius import INTERIM, AcctRecord
from tests.integration.usage.radclient import listener, packet, radclient


def interim(session: str, octets_in: int, octets_out: int, identifier: int, at: datetime) -> Received:
    record = AcctRecord(
        status=INTERIM, session_id=session, unique_id=None, username="carol", framed_ip=None, nas_ip=None,
        nas_identifier=None, calling_station=None, terminate_cause=None, interim_interval=None,
        session_time=60, in_octets=octets_in, out_octets=octets_out, delay_time=0,
    )  # fmt: skip
    return Received("bras-1", 40000, identifier, bytes([identifier]) * 16, record, at)


async def rollups(pool: asyncpg.Pool, step: str) -> list[tuple[datetime, int, int]]:
    rows = await pool.fetch(
        "SELECT start, bytes_in, bytes_out FROM usage_rollups WHERE customer_id = 'carol' AND step = $1"
        " ORDER BY start",
        step,
    )
    return [(r["start"], int(r["bytes_in"]), int(r["bytes_out"])) for r in rows]


async def test_radclient_usage_rolls_up_byte_exact_and_retransmissions_add_nothing(db: Database) -> None:
    await CustomerService(db).create_customer({"id": "carol", "name": "Carol", "usernames": ["carol"]})
    base = {"User-Name": "carol", "Acct-Session-Id": "C-1", "NAS-IP-Address": "127.0.0.1"}
    packets = [
        packet(**base, **{"Acct-Status-Type": "Start"}),
        packet(
            **base,
            **{"Acct-Status-Type": "Interim-Update", "Acct-Input-Octets": 10, "Acct-Output-Octets": 2000},
        ),
        packet(
            **base,
            **{
                "Acct-Status-Type": "Interim-Update",
                "Acct-Input-Octets": 30,
                "Acct-Output-Octets": 5,
                "Acct-Output-Gigawords": 1,
            },
        ),
    ]
    async with listener(db.pool) as (_, port):
        code, out = await radclient(port, packets)
        assert code == 0, out
        # The same packets again, from radclient's own source port and Identifiers: new records
        # whose counters did not move, so nothing is added.
        code, out = await radclient(port, packets[1:])
        assert code == 0, out
    want_in, want_out = 30, 2**32 + 5
    for step in ("hour", "day"):
        got = await rollups(db.pool, step)
        assert [(i, o) for _, i, o in got] == [(want_in, want_out)], step
    # Months are not stored (schema 16): a commit upserts two rows, and a month is read as its days.
    assert await rollups(db.pool, "month") == []
    month = await UsageService(db).customer_usage("carol", step="month")
    assert (month["bytes_in"], month["bytes_out"]) == (want_in, want_out)
    usage = await UsageService(db).customer_usage("carol", step="hour")
    assert (usage["bytes_in"], usage["bytes_out"]) == (want_in, want_out)


async def test_a_retransmitted_record_and_a_failed_commit_count_nothing_twice(db: Database) -> None:
    await CustomerService(db).create_customer(
        {"id": "carol", "name": "Carol", "usernames": ["carol"], "timezone": "Asia/Kolkata"}
    )
    store = AccountingStore(db.pool)
    at = datetime(2026, 3, 31, 18, 45, tzinfo=UTC)  # 00:15 on April 1st in Kolkata (UTC+5:30)
    first = interim("K-1", 100, 1000, 1, at)
    assert (await store.commit([first])).stored == 1
    # RFC 5080 retransmission (same NAS, port, Identifier, authenticator): not counted again.
    result = await store.commit([first, first])
    assert (result.stored, result.duplicates) == (0, 2)
    # A commit that fails in its rollup (a zone PostgreSQL refuses, written behind the model's
    # back) stores neither its records nor their rollup ...
    await db.pool.execute('UPDATE customers SET spec = spec || \'{"timezone": "Nowhere/Else"}\'')
    second = interim("K-1", 150, 1500, 2, at + timedelta(minutes=10))
    with pytest.raises(asyncpg.PostgresError):
        await store.commit([second])
    assert await db.pool.fetchval("SELECT count(*) FROM acct_records") == 1
    # ... so the NAS's retransmission of it, once the commit works, counts it exactly once.
    await db.pool.execute('UPDATE customers SET spec = spec || \'{"timezone": "Asia/Kolkata"}\'')
    assert (await store.commit([second])).stored == 1
    assert (await store.commit([second])).stored == 0
    local_day = datetime(2026, 3, 31, 18, 30, tzinfo=UTC)  # Kolkata's midnight
    assert await rollups(db.pool, "day") == [(local_day, 150, 1500)]
    assert await rollups(db.pool, "month") == []  # derived from the days (schema 16)
    assert await rollups(db.pool, "hour") == [(local_day, 150, 1500)]
    by_month = await UsageService(db).customer_usage(
        "carol", since=at - timedelta(days=2), until=at + timedelta(days=2), step="month"
    )
    # April in Kolkata starts at its midnight, 18:30 UTC the day before.
    assert [(i["start"], i["bytes_in"], i["bytes_out"]) for i in by_month["items"]] == [
        (local_day.isoformat(), 150, 1500)
    ]
    by_day = await UsageService(db).customer_usage(
        "carol", since=at - timedelta(days=2), until=at + timedelta(days=2), step="day"
    )
    assert [(i["start"], i["bytes_total"]) for i in by_day["items"]] == [(local_day.isoformat(), 1650)]


async def test_schema_16_drops_stored_months_and_a_month_still_reads_as_its_days(db: Database) -> None:
    await CustomerService(db).create_customer(
        {"id": "carol", "name": "Carol", "usernames": ["carol"], "timezone": "Asia/Kolkata"}
    )
    store = AccountingStore(db.pool)
    at = datetime(2026, 3, 31, 18, 45, tzinfo=UTC)  # April 1st in Kolkata
    await store.commit([interim("K-2", 100, 1000, 1, at)])
    await store.commit([interim("K-2", 300, 1700, 2, at + timedelta(days=3))])
    await store.commit([interim("K-2", 305, 1800, 3, at + timedelta(days=30))])  # May 1st there
    # A database from before schema 16: its commits also wrote a row per month.
    await db.pool.execute(
        """INSERT INTO usage_rollups (customer_id, step, start, bytes_in, bytes_out)
           VALUES ('carol', 'month', '2026-03-31T18:30Z', 300, 1700), ('carol', 'month', '2026-04-30T18:30Z', 5, 100)"""
    )
    await db.pool.execute("DELETE FROM schema_version WHERE version = 16")
    async with db.pool.acquire() as conn:
        assert await migrate(conn) >= 16
        await migrate(conn)  # idempotent
    assert await rollups(db.pool, "month") == []
    assert len(await rollups(db.pool, "day")) == 3
    usage = await UsageService(db).customer_usage(
        "carol", since=at - timedelta(days=1), until=at + timedelta(days=40), step="month"
    )
    assert [(i["start"], i["bytes_in"], i["bytes_out"]) for i in usage["items"]] == [
        ("2026-03-31T18:30:00+00:00", 300, 1700),
        ("2026-04-30T18:30:00+00:00", 5, 100),
    ]
    # A month is in the window when it starts in it, with all its days (as a stored row was).
    april = await UsageService(db).customer_usage(
        "carol", since=at - timedelta(days=1), until=at + timedelta(days=1), step="month"
    )
    assert [(i["bytes_in"], i["bytes_out"]) for i in april["items"]] == [(300, 1700)]


async def test_summary_against_quota_previous_period_and_projection(db: Database) -> None:
    await CustomerService(db).create_customer(
        {"id": "carol", "name": "Carol", "usernames": ["carol"], "quota_bytes": 10_000, "reset_day": 5}
    )
    store = AccountingStore(db.pool)
    # Previous period (Feb 5 - Mar 5): 3000 octets. This one (Mar 5 - Apr 5): 2000 by Mar 8 00:00.
    await store.commit([interim("P", 1000, 2000, 1, datetime(2026, 2, 20, tzinfo=UTC))])
    await store.commit([interim("Q", 500, 1500, 2, datetime(2026, 3, 6, tzinfo=UTC))])
    now = datetime(2026, 3, 8, tzinfo=UTC)  # 3 of the period's 31 days
    summary = await UsageService(db).usage_summary("carol", now=now)
    assert summary["period"]["start"] == "2026-03-05T00:00:00+00:00"
    assert summary["period"]["end"] == "2026-04-05T00:00:00+00:00"
    assert (summary["used_bytes"], summary["quota_bytes"], summary["percent"]) == (2000, 10_000, 20.0)
    assert summary["previous_period"]["used_bytes"] == 3000
    assert summary["projected_bytes"] == 2000 * 31 // 3
    assert summary["change_bytes"] == 2000 * 31 // 3 - 3000
    # At 2000 per 3 days, 10,000 is reached 15 days in: March 20th.
    assert summary["quota_reached_at"] == "2026-03-20T00:00:00+00:00"
    download = await CustomerService(db).update_customer("carol", {"counts": "download"})
    assert download["counts"] == "download"
    assert (await UsageService(db).usage_summary("carol", now=now))["used_bytes"] == 1500
