"""Errors the generated tests found, pinned: non-string ids, wrong methods, requests aiohttp rejects.

The last group talks raw HTTP/1.1 to `start_api`'s listener, because aiohttp refuses those
requests in its parser, before any route or middleware, and a client library would not send them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app, start_api
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database

WINDOW = {"name": "w", "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"}


@pytest.fixture
async def services(db_dsn: str) -> AsyncIterator[AppServices]:
    db = await Database.connect(db_dsn, max_size=2)
    try:
        yield AppServices.build(db, Settings())
    finally:
        await db.close()


@pytest.fixture
async def client(services: AppServices) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def listener(services: AppServices) -> AsyncIterator[int]:
    runner, _, port = await start_api(create_app(services), "127.0.0.1", 0, None)
    try:
        yield port
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("bad_id", [{}, [], ["active"], 7, True])
async def test_a_window_id_that_is_not_a_string_is_a_422_naming_id(
    client: TestClient[Any, Any], bad_id: Any
) -> None:
    resp = await client.post("/maintenance/", json={**WINDOW, "all_endpoints": True, "id": bad_id})
    assert resp.status == 422, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["id"]
    assert (await (await client.get("/maintenance/")).json())["count"] == 0


async def test_active_is_refused_as_a_window_id_and_the_list_route_keeps_its_path(
    client: TestClient[Any, Any],
) -> None:
    resp = await client.post("/maintenance/", json={**WINDOW, "all_endpoints": True, "id": "active"})
    assert resp.status == 422
    assert "reserved" in (await resp.json())["errors"][0]["message"]
    assert (
        await client.post("/maintenance/", json={**WINDOW, "all_endpoints": True, "id": "w1"})
    ).status == 201
    active = await client.get("/maintenance/active")
    assert active.status == 200 and (await active.json())["count"] == 0  # w1 is in 2030
    doc = await (await client.get("/openapi.json")).json()
    pattern = doc["paths"]["/maintenance/{window_id}"]["get"]["parameters"][0]["schema"]["pattern"]
    import re

    assert re.fullmatch(pattern, "w1") and not re.fullmatch(pattern, "active")


async def _raw(port: int, data: bytes) -> tuple[int, str, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 10)  # error answers close the connection
    finally:
        writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers["Content-Type"], json.loads(body)


REJECTED_BY_AIOHTTP = [
    pytest.param(
        b"GET /services/" + b"a" * 10240 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "url", id="10k-url"
    ),
    pytest.param(
        b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 102400 + b"\r\n\r\n",
        431,
        "headers",
        id="100k-header",
    ),
    pytest.param(
        b"GET /livez HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        431,
        "headers",
        id="200-headers",
    ),
    pytest.param(b"BREW /services/ HTTP/1.1\r\nHost: x\r\n\r\n", 501, "method", id="unknown-method"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "(request)", id="tls-hello"),
]


@pytest.mark.parametrize(("request_bytes", "status", "field"), REJECTED_BY_AIOHTTP)
async def test_requests_aiohttp_rejects_get_the_json_error_shape(
    listener: int, request_bytes: bytes, status: int, field: str
) -> None:
    code, content_type, body = await _raw(listener, request_bytes)
    assert (code, content_type) == (status, "application/json; charset=utf-8")
    assert set(body) == {"error", "message", "errors"} and body["errors"][0]["field"] == field
    # The connection was answered and closed; the listener still serves the next client.
    code, _, body = await _raw(listener, b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert code == 200 and body["status"] == "ok"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/maintenance/active"),
        ("DELETE", "/maintenance/active"),
        ("DELETE", "/outages/active"),
        ("PUT", "/outages/summary"),
        ("DELETE", "/alerts/summary"),
        ("PATCH", "/maintenance/"),
    ],
)
async def test_a_method_a_path_does_not_declare_is_a_405_with_allow(
    client: TestClient[Any, Any], method: str, path: str
) -> None:
    """Not a 400/404 from the {id} route the path also matches (PUT /maintenance/{window_id})."""
    resp = await client.request(method, path, json={"name": "x"})
    assert resp.status == 405, await resp.text()
    assert "GET" in resp.headers["Allow"].split(",")
    assert (await resp.json())["errors"][0]["field"] == "method"


@pytest.mark.parametrize("name", ["ops\n", "ops\r\n"])
async def test_a_channel_name_with_a_trailing_newline_is_a_422_not_a_dropped_connection(
    client: TestClient[Any, Any], name: str
) -> None:
    """A regex "$" also matches before a final newline; such a name then broke the Location header."""
    resp = await client.post("/channels/", json={"name": name, "url": "json://127.0.0.1:9/"})
    assert resp.status == 422, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["name"]
    assert (await (await client.get("/channels/")).json())["count"] == 0


@pytest.mark.parametrize("value", ["9223372036854775808", "9999999999999999999"])
async def test_an_integer_filter_beyond_bigint_is_a_400_naming_it(
    client: TestClient[Any, Any], value: str
) -> None:
    resp = await client.get("/notifications/", params={"alert": value})
    assert resp.status == 400, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["alert"]
    doc = await (await client.get("/openapi.json")).json()
    alert = next(p for p in doc["paths"]["/notifications/"]["get"]["parameters"] if p["name"] == "alert")
    assert alert["schema"]["maximum"] == 2**63 - 1


async def test_a_body_that_is_not_its_content_encoding_is_a_400_naming_body(
    client: TestClient[Any, Any],
) -> None:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    resp = await client.post("/services/", data=b'{"name": "not gzip"}', headers=headers)
    assert resp.status == 400, await resp.text()
    assert [e["field"] for e in (await resp.json())["errors"]] == ["body"]
    assert (await (await client.get("/services/")).json())["count"] == 0
