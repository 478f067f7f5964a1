"""``/devices/``, ``/interfaces/`` and ``/network/summary`` through the real app and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from tests.integration.api.documented import assert_documented
from tests.integration.network.agents import COMMUNITY, snmpd_namespace

Client = TestClient[web.Request, web.Application]
V3 = {
    "id": "edge-1",
    "name": "Edge 1",
    "address": "192.0.2.10",
    "version": "3",
    "username": "noc",
    "auth_protocol": "SHA",
    "auth_key": "auth-secret-1",
    "priv_protocol": "AES",
    "priv_key": "priv-secret-1",
    "tags": ["edge"],
}
V2 = {"name": "Core 1", "address": "192.0.2.1:1161", "community": "comm-secret-1", "tags": ["core"]}


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    db = await Database.connect(db_dsn, max_size=4)
    services = AppServices.build(db, Settings())
    client: Client = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await services.network.close()
        await db.close()


async def _json(resp: Any, status: int) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_create_get_list_delete_and_secrets_never_shown(client: Client) -> None:
    with capture_logs() as logs:
        created = await _json(await client.post("/devices/", json=V3), 201)
        core = await _json(await client.post("/devices/", json=V2), 201)
    assert core["id"] == "core-1" and core["address"] == "192.0.2.1:1161" and core["version"] == "2c"
    assert created["auth_key"] == created["priv_key"] == core["community"] == "[redacted]"
    assert created["state"]["reachable"] is None
    listed = await _json(await client.get("/devices/"), 200)
    assert [d["id"] for d in listed["items"]] == ["core-1", "edge-1"] and listed["next_after"] is None
    assert [d["id"] for d in (await _json(await client.get("/devices/?tag=edge"), 200))["items"]] == ["edge-1"]
    got = await _json(await client.get("/devices/edge-1"), 200)
    text = str(listed) + str(got) + str(logs)
    for secret in ("auth-secret-1", "priv-secret-1", "comm-secret-1"):
        assert secret not in text
    assert (await client.delete("/devices/edge-1")).status == 204
    assert (await client.get("/devices/edge-1")).status == 404


async def test_put_round_trip_keeps_the_secrets(client: Client, db_dsn: str) -> None:
    await _json(await client.post("/devices/", json=V3), 201)
    shown = await _json(await client.get("/devices/edge-1"), 200)
    shown["name"] = "Edge one"
    updated = await _json(await client.put("/devices/edge-1", json=shown), 200)
    assert updated["name"] == "Edge one" and updated["auth_key"] == "[redacted]"
    db = await Database.connect(db_dsn, apply_schema=False, max_size=1)
    try:
        spec = (await db.devices.get("edge-1"))["spec"]
    finally:
        await db.close()
    assert (spec["auth_key"], spec["priv_key"], spec["name"]) == ("auth-secret-1", "priv-secret-1", "Edge one")
    # A new key replaces the stored one; a partial PUT keeps everything else.
    await _json(await client.put("/devices/edge-1", json={"auth_key": "auth-secret-2"}), 200)
    # Switching to v2c drops the v3 credentials, and needs a community.
    bad = await _json(await client.put("/devices/edge-1", json={"version": "2c"}), 422)
    assert bad["errors"][0]["field"] == "community"
    ok = await _json(await client.put("/devices/edge-1", json={"version": "2c", "community": "c2"}), 200)
    assert "username" not in ok and ok["community"] == "[redacted]"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**V3, "auth_protocol": "SHA-1024"}, "auth_protocol"),
        ({**V3, "username": None}, "username"),
        ({**V2, "poll_interval": 0.5}, "poll_interval"),
        ({**V2, "address": "not a host"}, "address"),
        ({**V2, "interfaces": {"include": ["("]}}, "interfaces.include"),
        ({**V2, "parent": "no-such-endpoint"}, "parent"),
        ({**V2, "speed": 1}, "speed"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(client: Client, body: dict[str, Any], field: str) -> None:
    problem = await _json(await client.post("/devices/", json=body), 422)
    assert problem["errors"][0]["field"] == field, problem
    assert (await _json(await client.get("/devices/"), 200))["items"] == []  # nothing half-stored


async def test_unknown_ids_and_conflicts(client: Client) -> None:
    await _json(await client.post("/devices/", json=V2), 201)
    assert (await _json(await client.post("/devices/", json=V2), 409))["errors"][0]["field"] == "id"
    for path in ("/devices/nope", "/devices/nope/interfaces", "/interfaces/999", "/interfaces/999/metrics"):
        problem = await _json(await client.get(path), 404)
        assert problem["errors"][0]["field"] in ("device_id", "interface_id"), problem
    assert (await client.post("/devices/nope/poll")).status == 404
    assert (await _json(await client.get("/interfaces/abc"), 400))["errors"][0]["field"] == "interface_id"
    problem = await _json(
        await client.get("/interfaces/1/metrics?since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z"), 400
    )
    assert problem["errors"][0]["field"] == "until"


async def test_summary_of_an_empty_and_a_polled_network(client: Client) -> None:
    summary = await _json(await client.get("/network/summary"), 200)
    assert summary["devices"] == {"total": 0, "up": 0, "unreachable": 0, "unknown": 0}
    await _json(await client.post("/devices/", json={**V2, "address": "127.0.0.1:9", "timeout": 0.2,
                                                     "retries": 0}), 201)
    polled = await _json(await client.post("/devices/core-1/poll"), 200)
    assert polled["reachable"] is False and polled["error_kind"] == "timeout"
    summary = await _json(await client.get("/network/summary"), 200)
    assert summary["devices"]["unreachable"] == 1 and summary["top_utilised"] == []


async def test_95th_percentile_of_five_minute_averages(client: Client, db_dsn: str) -> None:
    from datetime import UTC, datetime, timedelta

    from ispmon.network.counters import Sample
    from ispmon.store.interfaces import metric_row

    await _json(await client.post("/devices/", json=V2), 201)
    db = await Database.connect(db_dsn, apply_schema=False, max_size=1)
    try:
        (row,) = await db.interfaces.upsert_discovered(
            "core-1", [{"key": "xe-0/0/0", "if_index": 1, "name": "xe-0/0/0", "selected": True}]
        )
        start = datetime(2026, 3, 2, tzinfo=UTC)
        rows = []
        # 20 five-minute buckets, each of five 60 s samples; bucket k averages k Mbit/s in, 2k out.
        for k in range(1, 21):
            for j in range(5):
                at = start + timedelta(minutes=5 * (k - 1) + j, seconds=30)
                wobble = (j - 2) * 100_000  # averages out within the bucket
                rows.append(metric_row(row["id"], Sample(at=at.timestamp(), interval=60.0,
                                                         in_bps=k * 1e6 + wobble, out_bps=2 * k * 1e6)))
        await db.interfaces.write_metrics(rows)
    finally:
        await db.close()
    query = "since=2026-03-02T00:00:00Z&until=2026-03-03T00:00:00Z"
    resp = await client.get(f"/interfaces/{row['id']}/percentile?{query}")
    assert resp.status == 200, await resp.text()
    got = await assert_documented(client, "GET", "/interfaces/{interface_id}/percentile", resp)
    assert got["sources"] == {"raw": 20}
    # Nearest rank: of 20 buckets the 95th percentile is the 19th.
    assert got["buckets"] == 20 and got["percentile"] == 95.0
    assert got["in_bps"] == pytest.approx(19e6) and got["out_bps"] == pytest.approx(38e6)
    assert got["billable_bps"] == pytest.approx(38e6) and got["in_max_bps"] == pytest.approx(20e6)
    median = await _json(await client.get(f"/interfaces/{row['id']}/percentile?{query}&percentile=50"), 200)
    assert median["in_bps"] == pytest.approx(10e6)
    bad = await _json(await client.get(f"/interfaces/{row['id']}/percentile?percentile=0"), 400)
    assert bad["errors"][0]["field"] == "percentile"
    assert (await client.get("/interfaces/999/percentile")).status == 404


@pytest.mark.netns
async def test_poll_interfaces_and_summary_are_as_documented(client: Client, tmp_path: Path, db_dsn: str) -> None:
    """Two polls of Debian's snmpd (rates, utilisation of the veths) and one of nothing: each
    answer validates against /openapi.json, and so do the polled interface's raw samples, their
    rollups and their percentile."""
    with snmpd_namespace(tmp_path, veths=1, tag="d") as agent:
        device = {"id": "ns-doc", "name": "agent", "address": f"{agent.address}:{agent.port}",
                  "community": COMMUNITY, "timeout": 1, "retries": 0}
        await _json(await client.post("/devices/", json=device), 201)
        path = "/devices/{device_id}/poll"
        first = await assert_documented(client, "POST", path, await client.post("/devices/ns-doc/poll"))
        assert first["reachable"] is True and first["discovered"] is True
        await asyncio.sleep(4.0)  # snmpd's IF-MIB cache
        second = await assert_documented(client, "POST", path, await client.post("/devices/ns-doc/poll"))
        assert any(i["rates"] is not None and i["rates"]["in_util_pct"] is not None for i in second["interfaces"])
    listed = await assert_documented(
        client, "GET", "/devices/{device_id}/interfaces", await client.get("/devices/ns-doc/interfaces")
    )
    va0 = next(i for i in listed["items"] if i["name"] == "va0")
    assert None not in va0.values() and None not in va0["last_sample"].values(), va0
    await assert_documented(client, "GET", "/interfaces/{interface_id}", await client.get(f"/interfaces/{va0['id']}"))
    summary = await assert_documented(client, "GET", "/network/summary", await client.get("/network/summary"))
    assert summary["devices"]["up"] == 1 and summary["top_utilised"], summary
    await _samples_are_as_documented(client, db_dsn, va0["id"])
    await _json(await client.post("/devices/", json={**V2, "address": "127.0.0.1:9", "timeout": 0.2,
                                                     "retries": 0}), 201)
    failed = await assert_documented(client, "POST", path, await client.post("/devices/core-1/poll"))
    assert failed["reachable"] is False
    events = "/devices/{device_id}/events"
    gone = await assert_documented(client, "GET", events, await client.get("/devices/core-1/events"))
    assert [e["kind"] for e in gone["items"]] == ["device_unreachable"] and gone["items"][0]["data"]["error"], gone
    await assert_documented(client, "GET", "/network/events", await client.get("/network/events"))


async def _samples_are_as_documented(client: Client, db_dsn: str, interface_id: int) -> None:
    """The polled samples of `interface_id`, raw and rolled up (every step there is data for),
    and their percentile, each validated against /openapi.json."""
    from datetime import UTC, datetime, timedelta

    from ispmon.store import rollups

    metrics = "/interfaces/{interface_id}/metrics"
    raw = await assert_documented(client, "GET", metrics, await client.get(f"/interfaces/{interface_id}/metrics"))
    assert raw["step"] == "raw" and raw["count"] >= 1 and raw["items"][0]["in_util_pct"] is not None, raw
    # Roll the poll's samples up as if a day had passed: the 5-minute, hour and day buckets.
    db = await Database.connect(db_dsn, apply_schema=False, max_size=1)
    try:
        await rollups.rollup(db.pool, now=datetime.now(UTC) + timedelta(days=2))
    finally:
        await db.close()
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    until = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for step in rollups.STEPS:
        resp = await client.get(f"/interfaces/{interface_id}/metrics", params={"since": since, "until": until,
                                                                               "step": step})
        assert resp.status == 200, await resp.text()
        rolled = await assert_documented(client, "GET", metrics, resp)
        assert rolled["step"] == step and rolled["count"] == 1, rolled
        assert rolled["items"][0]["samples"] == raw["count"] and rolled["items"][0]["in_bps_p95"] is not None
    resp = await client.get(f"/interfaces/{interface_id}/percentile")
    assert resp.status == 200, await resp.text()
    got = await assert_documented(client, "GET", "/interfaces/{interface_id}/percentile", resp)
    assert got["sources"] == {"raw": 1} and got["billable_bps"] is not None, got
