"""``GET /services/`` from the cache of encoded endpoints (services/public_cache.py): real PostgreSQL.

The page is joined from each endpoint's cached public JSON; these tests hold it to the body the
uncached path makes (`Endpoint.to_dict()` encoded by the API's `dumps`), byte for byte, and show
that every way a row changes (PUT, DELETE and a new row with the same id, a config reload as
SIGHUP runs it, another agent's or a hand-written UPDATE) is seen at once, redacted: a stale or
unredacted body from the cache would be a security bug.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from ispmon.api.errors import dumps
from ispmon.availability.endpoints import build_endpoint
from ispmon.services.context import AppServices
from ispmon.store.endpoints import ENDPOINT_LIST

Client = TestClient[web.Request, web.Application]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _closed_port()


async def _create(client: Client, body: dict[str, Any]) -> None:
    resp = await client.post("/services/", json={"retries": 0, **body})
    assert resp.status == 201, await resp.text()


async def _uncached_page(services: AppServices, limit: int, after: str | None = None) -> str:
    """The body the route made before the cache: the service's objects, to_dict(), dumps."""
    cursor = ENDPOINT_LIST.parse_cursor(after) if after else None
    rows = await services.availability.list_endpoints(limit=limit + 1, after=cursor)
    items = [e.to_dict() for e in rows[:limit]]
    next_after = ENDPOINT_LIST.cursor(items[-1]) if len(rows) > limit else None
    return dumps({"items": items, "count": len(items), "limit": limit, "offset": 0, "next_after": next_after})


def _json(body: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(body)
    return out


async def _list(client: Client, query: str = "") -> str:
    resp = await client.get(f"/services/{query}")
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    return await resp.text()


async def test_pages_are_the_uncached_bodies_byte_for_byte_and_come_from_the_cache(
    client: Client, services: AppServices
) -> None:
    for i in range(7):
        await _create(
            client,
            {
                "id": f"e{i}",
                "name": f"E {i}",
                "url": f"http://127.0.0.1:{PORT}/h{i}?token=Tok{i}-secret",
                "headers": {"X-Auth": f"XAuth{i}", "Accept": "text/html"},
                "tags": ["core", f"t{i}"],
            },
        )
    await _create(
        client, {"id": "t", "name": "T", "protocol": "tcp", "url": f"127.0.0.1:{PORT}", "send": "AUTH S3cr3t\r\n"}
    )
    after = None
    pages = 0
    while True:
        body = await _list(client, f"?limit=3{f'&after={after}' if after else ''}")
        assert body == await _uncached_page(services, 3, after)
        assert "secret" not in body and "XAuth" not in body and "S3cr3t" not in body
        pages += 1
        after = (_json(body))["next_after"]
        if after is None:
            break
    assert pages == 3
    cache = services.availability.public
    before = cache.stats()
    assert before["entries"] == 8
    assert await _list(client) == await _uncached_page(services, 100)
    after_stats = cache.stats()
    # Every row of the second full read came from the cache: nothing decoded or encoded again.
    assert after_stats["hits"] - before["hits"] == 8
    assert after_stats["misses"] == before["misses"]


async def test_a_put_delete_or_recreate_is_listed_at_once_redacted(
    client: Client, services: AppServices
) -> None:
    await _create(client, {"id": "web", "name": "Web", "url": f"http://127.0.0.1:{PORT}/?token=Old-secret"})
    first = await _list(client)
    assert "token=[redacted]" in first and "Old-secret" not in first
    resp = await client.put(
        "/services/web",
        json={"url": f"http://127.0.0.1:{PORT}/new?api_key=New-secret", "headers": {"X-Key": "Hdr-secret"}},
    )
    assert resp.status == 200, await resp.text()
    body = await _list(client)
    assert body == await _uncached_page(services, 100)
    assert "/new?api_key=" in body and "X-Key" in body
    assert "New-secret" not in body and "Hdr-secret" not in body and "Old-secret" not in body
    assert (await client.delete("/services/web")).status == 204
    assert (_json(await _list(client)))["items"] == []
    await _create(client, {"id": "web", "name": "Web again", "protocol": "tcp", "url": f"127.0.0.1:{PORT}"})
    body = await _list(client)
    assert body == await _uncached_page(services, 100)
    (item,) = (_json(body))["items"]
    assert (item["name"], item["protocol"], item["url"]) == ("Web again", "tcp", f"127.0.0.1:{PORT}")


async def test_a_reload_or_another_writer_changing_the_row_is_listed_at_once(
    client: Client, services: AppServices
) -> None:
    db = services.db
    spec = build_endpoint({"id": "cfg", "name": "Cfg", "url": f"http://127.0.0.1:{PORT}/a"})
    await db.endpoints.sync_config([spec])  # what the daemon's SIGHUP reload runs
    assert '"name": "Cfg"' in await _list(client)
    changed = build_endpoint(
        {"id": "cfg", "name": "Cfg 2", "url": f"http://127.0.0.1:{PORT}/b?secret=Reload-secret"}
    )
    await db.endpoints.sync_config([changed])
    body = await _list(client)
    assert body == await _uncached_page(services, 100)
    assert '"name": "Cfg 2"' in body and "Reload-secret" not in body
    # Another agent (or an operator's UPDATE) changes the definition and leaves updated_at alone:
    # the cache is keyed by the stored text itself, so the next page shows it.
    await db.pool.execute(
        """UPDATE endpoints SET spec = jsonb_set(spec, '{headers}', '{"X-Other": "Agent-secret"}')
           WHERE id = 'cfg'"""
    )
    body = await _list(client)
    assert body == await _uncached_page(services, 100)
    assert "X-Other" in body and "Agent-secret" not in body
    await db.endpoints.sync_config([])  # removed from the file
    assert (_json(await _list(client)))["items"] == []
