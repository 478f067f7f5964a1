"""Customers, NAS clients, sessions and usage through the REST API, on a real PostgreSQL, with
accounting fed by Debian's radclient into the real listener."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.listener import start_listener
from ispmon.usage.nas import NasDirectory
from tests.integration.api.conftest import Client
from tests.integration.api.documented import assert_documented
from tests.integration.usage.radclient import SECRET, packet, radclient


@pytest.fixture
async def services(db_dsn: str) -> AsyncIterator[AppServices]:
    db = await Database.connect(db_dsn, max_size=4)
    try:
        yield AppServices.build(db, Settings(), nas_directory=NasDirectory())
    finally:
        await db.close()


def fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body["errors"]]


CUSTOMER = {
    "id": "acme-001",
    "name": "ACME Ltd",
    "plan": "business",
    "quota_bytes": 10**12,
    "timezone": "Europe/Berlin",
    "enforcement": {"policy": "coa", "attributes": {"Filter-Id": "throttled"}},
    "usernames": ["acme@isp"],
    "prefixes": ["198.51.100.16/29"],
}


async def test_customer_crud(client: Client) -> None:
    resp = await client.post("/customers/", json=CUSTOMER)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert body["thresholds"] == [80, 100] and body["period"] == "monthly" and body["source"] == "api"
    resp = await client.put(
        "/customers/acme-001", json={"plan": "gold", "usernames": ["acme@isp", "acme2@isp"]}
    )
    assert resp.status == 200 and (await resp.json())["plan"] == "gold"
    listed = await (await client.get("/customers/?plan=gold")).json()
    assert [c["id"] for c in listed["items"]] == ["acme-001"]
    assert (await client.post("/customers/", json=CUSTOMER)).status == 409
    assert (await client.delete("/customers/acme-001")).status == 204
    assert (await client.get("/customers/acme-001")).status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**CUSTOMER, "quota_bytes": 0}, "quota_bytes"),
        ({**CUSTOMER, "period": "yearly"}, "period"),
        ({**CUSTOMER, "timezone": "Mars/Olympus"}, "timezone"),
        ({**CUSTOMER, "thresholds": [80, 0]}, "thresholds[1]"),
        ({**CUSTOMER, "usernames": ["a", "a"]}, "usernames[1]"),
        ({**CUSTOMER, "prefixes": ["10.0.0.1/8"]}, "prefixes[0]"),
        ({**CUSTOMER, "enforcement": {"policy": "webhook"}}, "enforcement.url"),
        ({**CUSTOMER, "enforcement": {"policy": "coa"}}, "enforcement.attributes"),
        ({**CUSTOMER, "colour": "red"}, "colour"),
        ({**CUSTOMER, "id": "bulk"}, "id"),
    ],
)
async def test_a_bad_customer_is_a_422_naming_the_field(
    client: Client, body: dict[str, Any], field: str
) -> None:
    resp = await client.post("/customers/", json=body)
    assert resp.status == 422, await resp.text()
    assert field in fields(await resp.json())
    assert (await (await client.get("/customers/")).json())["count"] == 0


async def test_an_identity_of_another_customer_is_a_409_naming_it(client: Client) -> None:
    assert (await client.post("/customers/", json=CUSTOMER)).status == 201
    resp = await client.post(
        "/customers/", json={"id": "other", "name": "Other", "usernames": ["x", "acme@isp"]}
    )
    assert resp.status == 409
    body = await resp.json()
    assert fields(body) == ["usernames[1]"] and "acme-001" in body["message"]
    assert (await client.get("/customers/other")).status == 404


async def test_bulk_upsert_of_twenty_thousand_customers_in_one_call(
    client: Client, services: AppServices
) -> None:
    items = [{"id": f"c{i:05d}", "name": f"Customer {i}", "usernames": [f"u{i}@isp"]} for i in range(20_000)]
    payload = json.dumps({"customers": items})
    assert len(payload) > 64 * 1024  # beyond the API's default body limit
    # A stream (aiohttp warns about large in-memory bodies): what a provisioning client sends.
    headers = {"Content-Type": "application/json"}
    resp = await client.post("/customers/bulk", data=io.BytesIO(payload.encode()), headers=headers)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"count": 20_000, "created": 20_000, "updated": 0}
    # Again, with a change: updates, nothing created, identities replaced.
    items[7]["usernames"] = ["moved@isp"]
    changed = json.dumps({"customers": items}).encode()
    resp = await client.post("/customers/bulk", data=io.BytesIO(changed), headers=headers)
    assert await resp.json() == {"count": 20_000, "created": 0, "updated": 20_000}
    pool = services.db.pool
    assert await pool.fetchval("SELECT count(*) FROM customer_usernames") == 20_000
    assert (
        await pool.fetchval("SELECT customer_id FROM customer_usernames WHERE username = 'moved@isp'")
        == "c00007"
    )
    # Other routes keep the 64 KiB limit.
    resp = await client.post("/customers/", data=io.BytesIO(payload.encode()), headers=headers)
    assert resp.status == 413


async def test_bulk_with_a_bad_item_writes_nothing_and_names_it(
    client: Client, services: AppServices
) -> None:
    items = [
        {"id": "a", "name": "A"},
        {"id": "b", "name": "B", "quota_bytes": -5},
        {"id": "a", "name": "again"},
        {"id": "c", "name": "C", "usernames": ["dup"]},
        {"id": "d", "name": "D", "usernames": ["dup"]},
    ]
    resp = await client.post("/customers/bulk", json={"customers": items})
    assert resp.status == 422
    assert fields(await resp.json()) == [
        "customers[1].quota_bytes",
        "customers[2].id",
        "customers[4].usernames[0]",
    ]
    assert await services.db.pool.fetchval("SELECT count(*) FROM customers") == 0
    resp = await client.post("/customers/bulk", json={"customers": {"a": 1}})
    assert resp.status == 422 and fields(await resp.json()) == ["customers"]
    resp = await client.post("/customers/bulk", json={"items": []})
    assert resp.status == 422 and fields(await resp.json()) == ["items"]


async def test_nas_secrets_are_never_returned_nor_logged(client: Client, services: AppServices) -> None:
    with capture_logs() as logs:
        resp = await client.post(
            "/nas/",
            json={"id": "bras-1", "name": "BRAS", "address": "127.0.0.1", "secret": "s3cr3t-value-xyz"},
        )
        assert resp.status == 201
        text = await (await client.get("/nas/")).text()
        bad = await client.post(
            "/nas/", json={"id": "bras-2", "address": "10.0.0.1/8", "secret": "s3cr3t-value-xyz"}
        )
    assert "s3cr3t" not in text and "s3cr3t" not in await resp.text()
    assert bad.status == 422 and fields(await bad.json()) == ["address"]
    assert "s3cr3t" not in await bad.text()
    assert "s3cr3t" not in repr(logs)
    assert json.loads(text)["items"][0]["coa_port"] == 3799
    assert services.usage.directory is not None and services.usage.directory.match("127.0.0.1") is not None
    assert (await client.delete("/nas/bras-1")).status == 204
    assert services.usage.directory.match("127.0.0.1") is None


async def test_sessions_and_usage_from_radclient(client: Client, services: AppServices) -> None:
    assert (await client.post("/customers/", json=CUSTOMER)).status == 201
    assert (
        await client.post("/customers/", json={"id": "bob", "name": "Bob", "prefixes": ["100.64.0.0/10"]})
    ).status == 201
    await client.post("/nas/", json={"id": "bras-1", "address": "127.0.0.1", "secret": SECRET})
    directory = services.usage.directory
    assert directory is not None
    protocol, port = await start_listener("127.0.0.1", 0, directory, AccountingStore(services.db.pool).commit)
    try:
        base = {"NAS-IP-Address": "127.0.0.1"}
        code, out = await radclient(
            port,
            [
                packet(
                    **base, **{"Acct-Status-Type": "Start", "Acct-Session-Id": "A", "User-Name": "acme@isp"}
                ),
                packet(
                    **base,
                    **{
                        "Acct-Status-Type": "Interim-Update",
                        "Acct-Session-Id": "A",
                        "User-Name": "acme@isp",
                        "Acct-Input-Octets": 100,
                        "Acct-Output-Octets": 5000,
                        "Acct-Session-Time": 60,
                    },
                ),
                # Attributed by framed IP: no User-Name of any customer.
                packet(
                    **base,
                    **{
                        "Acct-Status-Type": "Interim-Update",
                        "Acct-Session-Id": "B",
                        "User-Name": "anon",
                        "Framed-IP-Address": "100.64.1.2",
                        "Acct-Input-Octets": 7,
                        "Acct-Output-Octets": 9,
                        "Acct-Output-Gigawords": 1,
                    },
                ),
            ],
        )
        assert code == 0, out
    finally:
        await protocol.close()
    active = await (await client.get("/sessions/active")).json()
    assert {s["acct_session_id"]: s["customer_id"] for s in active["items"]} == {"A": "acme-001", "B": "bob"}
    only = await (await client.get("/sessions/active?customer=bob")).json()
    assert [s["acct_session_id"] for s in only["items"]] == ["B"]
    one = await (await client.get(f"/sessions/{only['items'][0]['id']}")).json()
    assert (one["bytes_in"], one["bytes_out"], one["framed_ip"]) == (7, 2**32 + 9, "100.64.1.2")
    sessions = await (await client.get("/customers/acme-001/sessions")).json()
    assert [(s["bytes_in"], s["bytes_out"], s["state"]) for s in sessions["items"]] == [(100, 5000, "active")]
    for step in ("hour", "day", "month"):
        resp = await client.get(f"/customers/acme-001/usage?step={step}")
        assert resp.status == 200, await resp.text()
        usage = await assert_documented(client, "GET", "/customers/{customer_id}/usage", resp)
        assert (usage["bytes_in"], usage["bytes_out"], usage["bytes_total"]) == (100, 5000, 5100)
        assert usage["step"] == step and usage["timezone"] == "Europe/Berlin"
        assert sum(i["bytes_total"] for i in usage["items"]) == 5100 and usage["items"][-1]["bytes_in"] > 0
    usage = await (await client.get("/customers/acme-001/usage?step=day")).json()
    assert len(usage["items"]) == 1
    top = await (await client.get("/usage/top?limit=5")).json()
    assert [(t["customer_id"], t["bytes_total"]) for t in top["items"]] == [
        ("bob", 2**32 + 16),
        ("acme-001", 5100),
    ]
    assert (await client.get("/sessions/999999")).status == 404
    assert (await client.get("/sessions/abc")).status == 400
    bad = await client.get("/customers/acme-001/usage?step=week")
    assert bad.status == 400 and fields(await bad.json()) == ["step"]
    assert (await client.get("/customers/nobody/usage")).status == 404
    resp = await client.get("/customers/acme-001/usage/summary")
    assert resp.status == 200, await resp.text()
    summary = await assert_documented(client, "GET", "/customers/{customer_id}/usage/summary", resp)
    assert summary["percent"] is not None and summary["projected_bytes"] >= 5100, summary
    assert (summary["used_bytes"], summary["quota_bytes"], summary["period"]["kind"]) == (
        5100,
        10**12,
        "monthly",
    )
    # 5100 octets against a terabyte: not reached this period at this pace (and no date overflow).
    assert summary["quota_reached_at"] is None
    assert (await client.get("/customers/nobody/usage/summary")).status == 404


async def test_enforcement_audit_trail_routes(client: Client, services: AppServices) -> None:
    assert (await client.post("/customers/", json=CUSTOMER)).status == 201
    await services.db.pool.execute(
        """INSERT INTO enforcements (customer_id, period_start, threshold, action, target, nas_id, session_key,
               idempotency_key, state, attempts, detail)
           VALUES ('acme-001', '2026-12-01T00:00:00Z', 100, 'coa', 'bras-1/A', 'bras-1', 'A', 'k1', 'nak', 1,
                   'Error-Cause 501'),
                  ('acme-001', '2026-12-01T00:00:00Z', 100, 'coa', 'bras-1/B', 'bras-1', 'B', 'k2', 'acked', 1, NULL)"""
    )
    every = await assert_documented(client, "GET", "/enforcements/", await client.get("/enforcements/"))
    assert [e["target"] for e in every["items"]] == ["bras-1/B", "bras-1/A"]
    resp = await client.get("/customers/acme-001/enforcements?state=nak")
    naks = await assert_documented(client, "GET", "/customers/{customer_id}/enforcements", resp)
    assert [(e["state"], e["detail"], e["idempotency_key"]) for e in naks["items"]] == [
        ("nak", "Error-Cause 501", "k1")
    ]
    assert (await client.get("/customers/nobody/enforcements")).status == 404
    bad = await client.get("/enforcements/?state=bogus")
    assert bad.status == 400 and fields(await bad.json()) == ["state"]


async def test_session_answers_are_as_documented(client: Client, services: AppServices) -> None:
    """Every field filled (a closed session: closed_at, terminate cause, framed IP, calling station,
    interim interval) and the answers validate against /openapi.json."""
    assert (await client.post("/customers/", json=CUSTOMER)).status == 201
    await client.post("/nas/", json={"id": "bras-1", "address": "127.0.0.1", "secret": SECRET})
    directory = services.usage.directory
    assert directory is not None
    protocol, port = await start_listener("127.0.0.1", 0, directory, AccountingStore(services.db.pool).commit)
    full = {
        "NAS-IP-Address": "127.0.0.1",
        "User-Name": "acme@isp",
        "Framed-IP-Address": "198.51.100.17",
        "Calling-Station-Id": "02-00-00-00-00-01",
        "Acct-Interim-Interval": 300,
    }
    try:
        code, out = await radclient(
            port,
            [
                packet(**full, **{"Acct-Status-Type": "Start", "Acct-Session-Id": "S1"}),
                packet(**full, **{"Acct-Status-Type": "Stop", "Acct-Session-Id": "S1", "Acct-Input-Octets": 10,
                                  "Acct-Output-Octets": 20, "Acct-Session-Time": 30,
                                  "Acct-Terminate-Cause": "User-Request"}),
                packet(**full, **{"Acct-Status-Type": "Interim-Update", "Acct-Session-Id": "S2",
                                  "Acct-Input-Octets": 1, "Acct-Output-Octets": 2}),
            ],
        )
        assert code == 0, out
    finally:
        await protocol.close()
    history = await assert_documented(
        client, "GET", "/customers/{customer_id}/sessions", await client.get("/customers/acme-001/sessions")
    )
    closed = next(s for s in history["items"] if s["acct_session_id"] == "S1")
    assert None not in closed.values(), closed
    assert closed["state"] == "closed" and closed["terminate_cause"]
    active = await assert_documented(client, "GET", "/sessions/active", await client.get("/sessions/active"))
    assert [s["acct_session_id"] for s in active["items"]] == ["S2"]
    await assert_documented(client, "GET", "/sessions/{session_id}", await client.get(f"/sessions/{closed['id']}"))
    top = await assert_documented(client, "GET", "/usage/top", await client.get("/usage/top"))
    assert top["items"] == [{"customer_id": "acme-001", "bytes_in": 11, "bytes_out": 22, "bytes_total": 33}]
