"""``/metrics/network``, ``/metrics/system`` and ``/network/latency/{id}`` against a real PostgreSQL.

Samples go in through POST exactly as the seed writes them, come back through the keyset-paged
GETs with their filters; bad bodies are 422s naming the field and store nothing; the latency view
refuses too many steps with a 400 naming ``step``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.services.context import AppServices
from tests.integration.api.conftest import Client

SEED_NETWORK = {"interface": "eth0", "bandwidth_usage": 75.5, "packet_loss": 0.2, "latency": 15.3}
SEED_SYSTEM = {"cpu_usage": 42.0, "memory_usage": 61.5, "disk_usage": 70.1, "load_average": 0.8}


async def _count(services: AppServices, table: str) -> int:
    count: int = await services.db.pool.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def test_seed_bodies_are_recorded_and_listed(client: Client, services: AppServices) -> None:
    resp = await client.post("/metrics/network", json=SEED_NETWORK)
    assert resp.status == 201, await resp.text()
    stored = await resp.json()
    assert {k: stored[k] for k in SEED_NETWORK} == pytest.approx(SEED_NETWORK) and stored["host"] is None
    resp = await client.post("/metrics/system", json=SEED_SYSTEM | {"host": "radius-1"})
    assert resp.status == 201, await resp.text()

    page = await (await client.get("/metrics/network", params={"interface": "eth0"})).json()
    assert [i["id"] for i in page["items"]] == [stored["id"]]
    assert page["items"][0]["latency"] == pytest.approx(15.3)
    page = await (await client.get("/metrics/system", params={"host": "radius-1"})).json()
    assert page["count"] == 1 and page["items"][0]["cpu_usage"] == 42.0
    assert (await (await client.get("/metrics/system", params={"host": "other"})).json())["count"] == 0


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("network", SEED_NETWORK | {"bandwith_usage": 1}, "bandwith_usage", "unknown field"),
    ("network", SEED_NETWORK | {"bandwidth_usage": 100.5}, "bandwidth_usage", "less than or equal to 100"),
    ("network", SEED_NETWORK | {"packet_loss": -0.1}, "packet_loss", "greater than or equal to 0"),
    ("network", SEED_NETWORK | {"latency": -1}, "latency", "greater than or equal to 0"),
    ("network", SEED_NETWORK | {"latency": "15"}, "latency", "valid number"),
    ("network", {"bandwidth_usage": 1.0}, "interface", "Field required"),
    ("network", {"interface": "eth0"}, "bandwidth_usage", "at least one of"),
    ("network", SEED_NETWORK | {"host": "a", "device": "b"}, "device", "not both"),
    ("system", SEED_SYSTEM | {"cpu_usage": 101}, "cpu_usage", "less than or equal to 100"),
    ("system", SEED_SYSTEM | {"memory_usage": True}, "memory_usage", "valid number"),
    ("system", SEED_SYSTEM | {"load_average": -0.5}, "load_average", "greater than or equal to 0"),
    ("system", SEED_SYSTEM | {"swap_usage": 3}, "swap_usage", "unknown field"),
    ("system", SEED_SYSTEM | {"recorded_at": "yesterday"}, "recorded_at", "datetime"),
]


@pytest.mark.parametrize(("kind", "body", "field", "text"), BAD, ids=[f"{b[0]}:{b[2]}" for b in BAD])
async def test_bad_bodies_are_422_naming_the_field_and_store_nothing(
    client: Client, services: AppServices, kind: str, body: dict[str, Any], field: str, text: str
) -> None:
    resp = await client.post(f"/metrics/{kind}", json=body)
    assert resp.status == 422, await resp.text()
    errors = (await resp.json())["errors"]
    assert errors[0]["field"] == field and text in errors[0]["message"], errors
    assert await _count(services, f"{kind}_metrics") == 0


async def test_keyset_walk_sees_every_sample_once(client: Client) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(7):
        at = (base + timedelta(minutes=i)).isoformat()
        body = {"interface": f"ge-0/0/{i % 2}", "latency": float(i), "recorded_at": at}
        assert (await client.post("/metrics/network", json=body)).status == 201
    seen: list[float] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = await (await client.get("/metrics/network", params=params)).json()
        seen += [i["latency"] for i in page["items"]]
        if page["next_after"] is None:
            break
        params["after"] = page["next_after"]
    assert seen == [6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]  # newest first, no repeats
    window = {"since": (base + timedelta(minutes=2)).isoformat(), "until": (base + timedelta(minutes=5)).isoformat()}
    page = await (await client.get("/metrics/network", params=window | {"interface": "ge-0/0/0"})).json()
    assert [i["latency"] for i in page["items"]] == [4.0, 2.0]


async def test_latency_view_bounds_and_errors(client: Client) -> None:
    resp = await client.post(
        "/services/", json={"id": "core-ping", "name": "core", "url": "127.0.0.1", "protocol": "icmp"}
    )
    assert resp.status == 201, await resp.text()
    since, until = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"
    resp = await client.get("/network/latency/core-ping", params={"since": since, "until": until, "step": 43})
    assert resp.status == 400
    error = (await resp.json())["errors"][0]
    assert error["field"] == "step" and "at most 2000" in error["message"], error
    resp = await client.get("/network/latency/core-ping", params={"since": since, "until": until, "step": 0})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "step"
    resp = await client.get("/network/latency/core-ping", params={"since": until, "until": since})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "until"
    resp = await client.get("/network/latency/nope", params={"since": since, "until": until})
    assert resp.status == 404
    resp = await client.get("/network/latency/core-ping", params={"since": since, "until": until, "step": 3600})
    view = await resp.json()
    assert resp.status == 200 and len(view["steps"]) == 24 and view["steps"][0]["loss_percent"] is None
