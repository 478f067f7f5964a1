"""Requests schemathesis found answered with a 500 or an undocumented status; each is a 4xx naming its field."""

from __future__ import annotations

from tests.integration.api.conftest import Client


async def test_a_customer_id_that_is_not_a_string_is_a_422(client: Client) -> None:
    body = {"id": {}, "name": "0", "period": "monthly", "thresholds": [], "usernames": []}
    resp = await client.post("/customers/", json=body)
    assert resp.status == 422, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["id"]


async def test_usage_top_with_an_empty_window_is_a_400_naming_until(client: Client) -> None:
    resp = await client.get("/usage/top", params={"since": "2000-01-01T00:00:00Z", "until": "2000-01-01T00:00:00Z"})
    assert resp.status == 400, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["until"]


async def test_a_latency_step_below_a_second_is_a_400_naming_step(client: Client) -> None:
    resp = await client.get("/network/latency/x", params={"since": "2000-01-01T00:00:00Z", "step": "5e-324"})
    assert resp.status == 400, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["step"]


async def test_a_customer_whose_name_derives_the_reserved_id_is_refused(client: Client) -> None:
    resp = await client.post("/customers/", json={"name": "Bulk"})
    assert resp.status == 422, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["id"]
