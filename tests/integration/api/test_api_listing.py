"""Every list route pages by ``after`` (keyset) beside ``offset``, against a real PostgreSQL.

A walk by ``next_after`` sees exactly the rows a single large page shows; rows inserted during a
walk neither repeat nor push rows off the next page (an offset walk does both); a damaged or
foreign cursor, or ``after`` with ``offset``, is a 400 naming ``after``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ispmon.models import Severity
from ispmon.services.context import AppServices
from ispmon.store.notifications import NotificationDraft, NotificationRepo
from tests.integration.api.conftest import Client

NOW = datetime.now(UTC)


def _fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body["errors"]]


# -- seeding: n rows of each list, through the same code paths the daemon uses ------------------------
async def _outages(services: AppServices, client: Client, start: int, n: int, hours_ago: float = 0) -> None:
    for i in range(start, start + n):
        started = NOW - timedelta(hours=hours_ago, minutes=100 - i)
        _, created = await services.db.outages.open(
            f"ep-{i}",
            started_at=started,
            declared_at=started,
            status="down",
            severity="minor",
            error_kind="timeout",
            error=None,
            failures=3,
            verified=True,
        )
        assert created


async def _alerts(services: AppServices, client: Client, start: int, n: int) -> None:
    for i in range(start, start + n):
        await services.db.pool.execute(
            """INSERT INTO alerts (endpoint_id, rule_id, kind, severity, title, message, started_at)
               VALUES ($1, 'down', 'outage', 'minor', 't', 'm', $2)""",
            f"ep-{i}",
            NOW - timedelta(minutes=100 - i),
        )


async def _notifications(services: AppServices, client: Client, start: int, n: int) -> None:
    # One statement: every row gets the same created_at, so the cursor's id breaks the tie.
    drafts = [
        NotificationDraft(f"k{i}", "ops", "declared", 0, "t", "b", "s") for i in range(start, start + n)
    ]
    assert len(await NotificationRepo(services.db.pool).enqueue(drafts)) == n


async def _endpoints(services: AppServices, client: Client, start: int, n: int) -> None:
    for i in range(start, start + n):
        definition = {"id": f"ep-{i:03d}", "name": f"ep {i}", "protocol": "tcp", "url": "192.0.2.1:25"}
        resp = await client.post("/services/", json=definition)
        assert resp.status == 201, await resp.text()


async def _windows(services: AppServices, client: Client, start: int, n: int) -> None:
    for i in range(start, start + n):
        window = {
            "id": f"mw-{i:03d}",
            "name": f"window {i}",
            "starts_at": (NOW + timedelta(days=1)).isoformat(),
            "ends_at": (NOW + timedelta(days=1, hours=1)).isoformat(),
            "all_endpoints": True,
        }
        resp = await client.post("/maintenance/", json=window)
        assert resp.status == 201, await resp.text()


Seed = Callable[[AppServices, Client, int, int], Awaitable[None]]
LISTS: dict[str, Seed] = {
    "/services/": _endpoints,
    "/outages/": _outages,
    "/alerts/": _alerts,
    "/notifications/": _notifications,
    "/maintenance/": _windows,
}


async def _page(client: Client, path: str, **params: str) -> dict[str, Any]:
    resp = await client.get(path, params=params)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def _walk(client: Client, path: str, limit: int, **params: str) -> tuple[list[Any], list[int]]:
    """Every id of `path` by following next_after (from `after`, if given); and each page's size."""
    seen: list[Any] = []
    sizes: list[int] = []
    after = params.pop("after", None)
    while True:
        page = await _page(client, path, limit=str(limit), **params, **({"after": after} if after else {}))
        seen += [item["id"] for item in page["items"]]
        sizes.append(page["count"])
        after = page["next_after"]
        if after is None:
            return seen, sizes


@pytest.mark.parametrize("path", list(LISTS))
async def test_a_walk_by_after_sees_every_row_once_in_order(
    path: str, client: Client, services: AppServices
) -> None:
    await LISTS[path](services, client, 1, 7)
    everything = await _page(client, path, limit="1000")
    assert set(everything) == {"items", "count", "limit", "offset", "next_after"}
    assert everything["count"] == 7 and everything["next_after"] is None
    full = [item["id"] for item in everything["items"]]

    walked, sizes = await _walk(client, path, 3)
    assert walked == full and sizes == [3, 3, 1]  # no empty last page: 7 = 3 + 3 + 1
    by_offset = [(await _page(client, path, limit="3", offset=str(o)))["items"] for o in (0, 3, 6)]
    assert [item["id"] for page in by_offset for item in page] == full
    exact, sizes = await _walk(client, path, 7)
    assert exact == full and sizes == [7]  # a page that ends exactly at the last row says so


async def test_outage_pages_are_stable_under_inserts(client: Client, services: AppServices) -> None:
    await _outages(services, client, 1, 6, hours_ago=1)
    original = [o["id"] for o in (await _page(client, "/outages/", limit="1000"))["items"]]
    first = await _page(client, "/outages/", limit="2")
    assert [o["id"] for o in first["items"]] == original[:2]

    # Newer outages open while the operator reads page 1; one more started long before all others.
    await _outages(services, client, 50, 3)
    await _outages(services, client, 90, 1, hours_ago=48)
    older = (await _page(client, "/outages/", service="ep-90"))["items"][0]["id"]

    second = await _page(client, "/outages/", limit="2", after=first["next_after"])
    assert [o["id"] for o in second["items"]] == original[2:4]  # neither repeated nor skipped
    rest, _ = await _walk(client, "/outages/", 100, after=second["next_after"])
    assert rest == [*original[4:], older]
    # The same walk by offset repeats page 1's rows, pushed down by the new ones.
    by_offset = await _page(client, "/outages/", limit="2", offset="2")
    assert [o["id"] for o in by_offset["items"]] != original[2:4]


async def test_notification_pages_are_stable_under_inserts_with_tied_timestamps(
    client: Client, services: AppServices
) -> None:
    await _notifications(services, client, 1, 5)
    original = [n["id"] for n in (await _page(client, "/notifications/", limit="1000"))["items"]]
    first = await _page(client, "/notifications/", limit="2", channel="ops")
    await _notifications(services, client, 10, 4)
    rest, _ = await _walk(client, "/notifications/", 2, channel="ops", after=first["next_after"])
    assert [n["id"] for n in first["items"]] + rest == original


async def test_after_keeps_the_filters_semantics(client: Client, services: AppServices) -> None:
    await _outages(services, client, 1, 5, hours_ago=3)
    for outage in (await _page(client, "/outages/", limit="3"))["items"][:3]:
        await services.db.outages.resolve(
            outage["id"], resolved_at=NOW - timedelta(hours=2), resolution="auto"
        )
    resolved = [o["id"] for o in (await _page(client, "/outages/", active="false"))["items"]]
    assert len(resolved) == 3
    walked, sizes = await _walk(client, "/outages/", 2, active="false")
    assert walked == resolved and sizes == [2, 1]
    since = (NOW - timedelta(hours=1)).isoformat()  # overlap: only the still-open ones
    walked, _ = await _walk(client, "/outages/", 1, since=since)
    assert len(walked) == 2 and not set(walked) & set(resolved)


async def test_endpoint_pages_by_id_are_stable_under_inserts(client: Client, services: AppServices) -> None:
    await _endpoints(services, client, 10, 4)  # ep-010 .. ep-013
    first = await _page(client, "/services/", limit="2")
    assert [e["id"] for e in first["items"]] == ["ep-010", "ep-011"]
    await _endpoints(services, client, 1, 1)  # ep-001 sorts before the cursor: not on later pages
    await _endpoints(services, client, 20, 1)  # ep-020 sorts after it: on a later page, once
    rest, _ = await _walk(client, "/services/", 2, after=first["next_after"])
    assert rest == ["ep-012", "ep-013", "ep-020"]


async def _cursor_of(client: Client, path: str) -> str:
    page = await _page(client, path, limit="1")
    assert page["next_after"] is not None
    cursor: str = page["next_after"]
    return cursor


@pytest.mark.parametrize("path", list(LISTS))
async def test_a_bad_after_is_a_400_naming_after(path: str, client: Client, services: AppServices) -> None:
    await LISTS[path](services, client, 1, 2)
    cursor = await _cursor_of(client, path)
    foreign_path = "/alerts/" if path != "/alerts/" else "/outages/"
    await LISTS[foreign_path](services, client, 30, 2)
    foreign = await _cursor_of(client, foreign_path)
    for params in (
        {"after": "nonsense!"},
        {"after": cursor[:-3]},  # truncated
        {"after": foreign},  # another list's cursor
        {"after": cursor, "offset": "1"},
        {"after": "x" * 5000},
    ):
        resp = await client.get(path, params=params)
        assert resp.status == 400, (params, await resp.text())
        body = await resp.json()
        assert _fields(body) == ["after"] and body["message"].startswith("after:"), body
    assert (await client.get(path, params={"after": cursor, "offset": "0"})).status == 200


async def test_openapi_documents_keyset_paging_on_every_list_route(client: Client) -> None:
    doc = await (await client.get("/openapi.json")).json()
    for path in LISTS:
        op = doc["paths"][path]["get"]
        params = {p["name"]: p for p in op["parameters"]}
        assert {"limit", "offset", "after"} <= set(params), path
        assert (
            params["after"]["schema"] == {"type": "string"} and "next_after" in params["after"]["description"]
        )
        envelope = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert envelope["properties"]["next_after"]["type"] == ["string", "null"], path
        assert "next_after" in envelope["required"]
    outages = {p["name"]: p["schema"] for p in doc["paths"]["/outages/"]["get"]["parameters"]}
    assert outages["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert set(outages["severity"]["enum"]) == {s.value for s in Severity}
    maintenance = {p["name"]: p["schema"] for p in doc["paths"]["/maintenance/"]["get"]["parameters"]}
    assert maintenance["limit"]["default"] == 1000  # the route listed every window before it paged
