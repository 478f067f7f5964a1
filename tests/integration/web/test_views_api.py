"""``/views/``: saved dashboard views round-trip, are validated (4xx naming the field), paged and
documented exactly."""

from __future__ import annotations

from typing import Any

from tests.integration.api.conftest import Client
from tests.integration.api.documented import assert_documented

VIEW: dict[str, Any] = {
    "name": "Core RTT",
    "kind": "area",
    "step": "5m",
    "range_hours": 48,
    "series": [
        {"source": "endpoint_response_time", "target": "core-web", "label": "web"},
        {"source": "interface_rates", "target": "12"},
        {"source": "customer_usage", "target": "cust-1"},
        {"source": "checks_by_status"},
    ],
    "filters": {"tag": "core"},
    "pinned": True,
}


async def test_a_view_round_trips_through_post_get_put_delete(client: Client) -> None:
    resp = await client.post("/views/", json=VIEW)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == "/views/core-rtt"
    created = await assert_documented(client, "POST", "/views/", resp)
    assert created["id"] == "core-rtt"
    assert created["series"][3] == {"source": "checks_by_status", "target": None, "label": None}
    assert {k: created[k] for k in VIEW if k != "series"} == {k: v for k, v in VIEW.items() if k != "series"}

    resp = await client.get("/views/core-rtt")
    assert await assert_documented(client, "GET", "/views/{view_id}", resp) == created

    resp = await client.put("/views/core-rtt", json={"kind": "table", "pinned": False})
    changed = await assert_documented(client, "PUT", "/views/{view_id}", resp)
    assert (changed["kind"], changed["pinned"], changed["series"]) == ("table", False, created["series"])
    assert changed["updated_at"] >= created["updated_at"]

    resp = await client.post("/views/", json=VIEW)
    assert resp.status == 409
    assert (await resp.json())["errors"][0]["field"] == "id"

    assert (await client.delete("/views/core-rtt")).status == 204
    assert (await client.get("/views/core-rtt")).status == 404
    assert (await client.delete("/views/core-rtt")).status == 404


async def test_bad_views_are_refused_naming_the_field_and_nothing_is_stored(client: Client) -> None:
    cases = [
        ({**VIEW, "kind": "pie"}, "kind"),
        ({**VIEW, "step": "7m"}, "step"),
        ({**VIEW, "range_hours": 0}, "range_hours"),
        ({**VIEW, "series": []}, "series"),
        ({**VIEW, "series": [{"source": "interface_rates", "target": "eth0"}]}, "series[0].target"),
        ({**VIEW, "series": [{"source": "endpoint_response_time"}]}, "series[0].target"),
        ({**VIEW, "series": [{"source": "checks_by_status", "target": "x"}]}, "series[0].target"),
        ({**VIEW, "series": [{"source": "cpu"}]}, "series[0].source"),
        ({**VIEW, "filters": {"colour": "red"}}, "filters.colour"),
        ({**VIEW, "id": "Not A Slug"}, "id"),
        ({**VIEW, "extra": 1}, "extra"),
        ({k: v for k, v in VIEW.items() if k != "name"}, "name"),
    ]
    for body, field in cases:
        resp = await client.post("/views/", json=body)
        assert resp.status == 422, (field, await resp.text())
        fields = [e["field"] for e in (await resp.json())["errors"]]
        assert field in fields, (field, fields)
    resp = await client.get("/views/")
    assert (await resp.json())["items"] == []

    assert (await client.post("/views/", json=VIEW)).status == 201
    resp = await client.put("/views/core-rtt", json={"series": [{"source": "customer_usage"}]})
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "series[0].target"
    resp = await client.put("/views/core-rtt", json={"id": "other"})
    assert resp.status == 422
    assert (await resp.json())["errors"][0]["field"] == "id"
    assert (await client.get("/views/core-rtt")).status == 200
    assert (await client.put("/views/missing", json={"kind": "bar"})).status == 404


async def test_the_list_is_keyset_paged_and_filters_pinned(client: Client) -> None:
    for i in range(5):
        body = {**VIEW, "name": f"View {i}", "pinned": i % 2 == 0}
        assert (await client.post("/views/", json=body)).status == 201
    seen: list[str] = []
    after = None
    while True:
        resp = await client.get("/views/", params={"limit": 2, **({"after": after} if after else {})})
        page = await assert_documented(client, "GET", "/views/", resp)
        seen += [v["id"] for v in page["items"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == [f"view-{i}" for i in range(5)]
    resp = await client.get("/views/", params={"pinned": "true"})
    assert [v["id"] for v in (await resp.json())["items"]] == ["view-0", "view-2", "view-4"]
    resp = await client.get("/views/", params={"after": "garbage"})
    assert resp.status == 400
    assert (await resp.json())["errors"][0]["field"] == "after"
