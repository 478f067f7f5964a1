"""Who may read and write the API, and what its reads never show: real PostgreSQL, real loopback targets.

With ISPMON_API_TOKEN set every request but the public paths needs a token; the read-only token
reads but cannot write. No API read shows a secret of a definition (URL user info and query
values, body, payloads, header values but an allow-list), and a GET-change-PUT keeps them all.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.availability.endpoints import build_endpoint
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database

TOKEN = "write-token-for-tests-0123456789"
READ_TOKEN = "read-token-for-tests-9876543210"
WRITE = {"Authorization": f"Bearer {TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
Client = TestClient[web.Request, web.Application]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT = _closed_port()
# One secret in each place a definition can hold one; each id's secrets are listed beside it.
DEFINITIONS: list[tuple[dict[str, Any], list[str]]] = [
    ({"id": "q-token", "url": f"http://127.0.0.1:{PORT}/h?token=QTok3n-a1&region=eu"}, ["QTok3n-a1"]),
    ({"id": "q-key", "url": f"http://127.0.0.1:{PORT}/h?api_key=QKey-b2"}, ["QKey-b2"]),
    ({"id": "at-pass", "url": f"http://mon:pa@ss-c3@127.0.0.1:{PORT}/"}, ["pa@ss-c3", "ss-c3"]),
    ({"id": "enc-pass", "url": f"http://mon:pw%40d4x@127.0.0.1:{PORT}/"}, ["pw%40d4x", "d4x"]),
    ({"id": "user-token", "url": f"http://UserTok-e5@127.0.0.1:{PORT}/"}, ["UserTok-e5"]),
    (
        {"id": "body", "url": f"http://127.0.0.1:{PORT}/login", "method": "POST", "body": "pass=B0dy-f6"},
        ["B0dy-f6"],
    ),
    ({"id": "x-auth", "url": f"http://127.0.0.1:{PORT}/", "headers": {"X-Auth": "XAuth-g7"}}, ["XAuth-g7"]),
    (
        {"id": "bearer", "url": f"http://127.0.0.1:{PORT}/", "headers": {"Authorization": "Bearer H8-tok"}},
        ["H8-tok"],
    ),
    (
        {"id": "tcp-send", "protocol": "tcp", "url": f"127.0.0.1:{PORT}", "send": "AUTH Send-i9\r\n"},
        ["Send-i9"],
    ),
    (
        {"id": "udp-hex", "protocol": "udp", "url": f"127.0.0.1:{PORT}", "send_hex": "deadbeef10"},
        ["deadbeef10"],
    ),
]
SECRETS = [secret for _, secrets in DEFINITIONS for secret in secrets]


async def _client(db: Database, **settings: Any) -> Client:
    client: Client = TestClient(TestServer(create_app(AppServices.build(db, Settings(**settings)))))
    await client.start_server()
    return client


@pytest.fixture
async def client(db: Database) -> AsyncIterator[Client]:
    client = await _client(db, ispmon_api_token=TOKEN, ispmon_api_read_token=READ_TOKEN)
    try:
        yield client
    finally:
        await client.close()


async def _text(client: Client, path: str, headers: dict[str, str]) -> str:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, (path, resp.status, await resp.text())
    return await resp.text()


async def test_no_read_shows_a_secret_and_a_round_trip_keeps_them(client: Client, db: Database) -> None:
    for definition, secrets in DEFINITIONS:
        resp = await client.post(
            "/services/", json={"name": definition["id"], "retries": 0, **definition}, headers=WRITE
        )
        assert resp.status == 201, await resp.text()
        created = await resp.text()
        assert not [s for s in secrets if s in created], created
    for headers in (READ, WRITE):  # the write token sees no more: secrets stay in the database
        paths = ["/services/", "/services/status/summary"]
        for definition, _ in DEFINITIONS:
            paths += [f"/services/{definition['id']}", f"/services/{definition['id']}/status"]
        for path in paths:
            text = await _text(client, path, headers)
            assert not [s for s in SECRETS if s in text], (path, text)
    for definition, _ in DEFINITIONS:
        ident = definition["id"]
        before = await db.endpoints.get(ident)
        assert before is not None
        shown = await (await client.get(f"/services/{ident}", headers=READ)).json()
        resp = await client.put(f"/services/{ident}", json={**shown, "description": "changed"}, headers=WRITE)
        assert resp.status == 200, await resp.text()
        after = await db.endpoints.get(ident)
        assert after is not None
        assert dict(after["spec"]) == {**before["spec"], "description": "changed"}, ident


@pytest.fixture
async def redirecting_target() -> AsyncIterator[str]:
    """A real HTTP server that redirects and keeps the query string, as many servers do."""

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/final?{request.query_string}")

    async def final(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/start", redirect)
    app.router.add_get("/final", final)
    async with TestServer(app) as server:
        yield f"http://127.0.0.1:{server.port}/start"


async def test_a_check_result_does_not_show_the_query_secret_a_redirect_carried(
    client: Client, redirecting_target: str, db: Database
) -> None:
    body = {"id": "redir", "name": "Redirecting", "url": f"{redirecting_target}?token=RedirTok-11"}
    assert (await client.post("/services/", json=body, headers=WRITE)).status == 201
    resp = await client.post("/services/redir/check", headers=WRITE)
    text = await resp.text()
    assert resp.status == 200, text
    result = await resp.json()
    assert result["status"] == "up" and result["details"]["redirects"] == 1, result
    assert "RedirTok-11" not in text and "/final?token=[redacted]" in result["details"]["url"]
    history = await _text(client, "/services/redir/history", READ)
    assert "RedirTok-11" not in history and "/final?token=[redacted]" in history, history
    # What was stored is the probe's real finding: only the API's view is redacted.
    async with db.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT details->>'url' FROM status_history WHERE endpoint_id = 'redir'")
    assert stored.endswith("/final?token=RedirTok-11")


async def test_reads_need_a_token_and_the_read_token_cannot_write(client: Client) -> None:
    resp = await client.get("/services/")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert [e["field"] for e in (await resp.json())["errors"]] == ["Authorization"]
    assert (
        await client.get("/services/", headers={"Authorization": "Bearer not-a-token-at-all"})
    ).status == 401
    assert (await client.head("/services/")).status == 401
    assert (await client.get("/services/", headers=READ)).status == 200
    assert (await client.get("/services/", headers=WRITE)).status == 200
    for method, path, body in [
        ("POST", "/services/", {"name": "x", "url": "http://127.0.0.1:9/"}),
        ("DELETE", "/services/x", None),
        ("POST", "/channels/", {"name": "ops", "url": "json://127.0.0.1:9/"}),
    ]:
        resp = await client.request(method, path, json=body, headers=READ)
        assert resp.status == 403, (method, path, resp.status)
        payload = await resp.json()
        assert [e["field"] for e in payload["errors"]] == ["Authorization"]
        assert (
            "scope is read" in payload["message"] and "insufficient_scope" in resp.headers["WWW-Authenticate"]
        )
    assert (await client.get("/services/x", headers=READ)).status == 404  # nothing was created
    resp = await client.post("/services/", json={"name": "x", "url": "http://127.0.0.1:9/"}, headers=WRITE)
    assert resp.status == 201
    # Health checks of the monitor itself and the API description stay open.
    assert (await client.get("/livez")).status == 200
    assert (await client.get("/readyz")).status in (200, 503)
    assert (await client.get("/openapi.json")).status == 200


async def test_without_a_token_configured_reads_and_writes_are_open(db: Database) -> None:
    # Loopback-only then (start_api refuses anything else), as before.
    client = await _client(db)
    try:
        assert (await client.get("/services/")).status == 200
        resp = await client.post("/services/", json={"name": "x", "url": "http://127.0.0.1:9/"})
        assert resp.status == 201
    finally:
        await client.close()


async def test_url_credentials_with_an_authorization_header_are_a_422_naming_both(client: Client) -> None:
    body = {"name": "both", "url": "http://mon:s3cret@127.0.0.1:9/", "headers": {"Authorization": "Bearer a"}}
    resp = await client.post("/services/", json=body, headers=WRITE)
    assert resp.status == 422
    payload = await resp.json()
    assert [e["field"] for e in payload["errors"]] == ["url", "headers.Authorization"]
    assert "s3cret" not in await resp.text()
    # Adding the header to an endpoint whose URL has credentials: refused the same way, nothing changed.
    del body["headers"]
    assert (await client.post("/services/", json=body, headers=WRITE)).status == 201
    resp = await client.put("/services/both", json={"headers": {"Authorization": "Bearer a"}}, headers=WRITE)
    assert resp.status == 422
    assert [e["field"] for e in (await resp.json())["errors"]] == ["url", "headers.Authorization"]
    shown = await (await client.get("/services/both", headers=READ)).json()
    assert shown["headers"] == {}


async def test_a_stored_row_with_both_credentials_stays_readable_and_must_be_fixed(
    client: Client, db: Database
) -> None:
    # Written before the rule existed: the API lists it (redacted) instead of failing, and a PUT
    # that keeps both is refused, naming them.
    legacy = {
        "id": "legacy",
        "name": "Legacy",
        "url": "http://mon:old-s3cret@127.0.0.1:9/",
        "headers": {"Authorization": "Bearer old-tok"},
    }
    await db.endpoints.upsert(build_endpoint(legacy, stored=True))
    text = await _text(client, "/services/", READ)
    assert "legacy" in text and "old-s3cret" not in text and "old-tok" not in text
    shown = await (await client.get("/services/legacy", headers=READ)).json()
    resp = await client.put("/services/legacy", json={**shown, "name": "Renamed"}, headers=WRITE)
    assert resp.status == 422
    assert [e["field"] for e in (await resp.json())["errors"]] == ["url", "headers.Authorization"]
    fixed = {**shown, "url": "http://127.0.0.1:9/"}
    resp = await client.put("/services/legacy", json=fixed, headers=WRITE)
    assert resp.status == 200, await resp.text()
    row = await db.endpoints.get("legacy")
    assert row is not None and row["spec"]["headers"] == {"Authorization": "Bearer old-tok"}


async def test_outage_and_alert_reads_redact_a_url_quoted_in_an_error(client: Client, db: Database) -> None:
    body = {"id": "loop", "name": "Loop", "url": f"http://127.0.0.1:{PORT}/a?token=ErrTok-12"}
    assert (await client.post("/services/", json=body, headers=WRITE)).status == 201
    error = f"more than 10 redirects (last to http://127.0.0.1:{PORT}/b?token=ErrTok-12)"
    now = datetime.now(UTC)
    outage_id, _ = await db.outages.open(
        "loop",
        started_at=now,
        declared_at=now,
        status="down",
        severity="high",
        error_kind="protocol",
        error=error,
        failures=3,
        verified=True,
    )
    async with db.pool.acquire() as conn:
        alert_id = await conn.fetchval(
            """INSERT INTO alerts (endpoint_id, rule_id, kind, outage_id, severity, title, message, details,
                                   started_at)
               VALUES ('loop', 'default', 'outage', $1, 'high', 'Loop is down', $2, $3, now()) RETURNING id""",
            outage_id,
            f"Loop is down: protocol: {error}",
            {"endpoint_name": "Loop", "error": error},
        )
        await conn.execute(
            """INSERT INTO notifications (idempotency_key, alert_id, outage_id, endpoint_id, event, channel,
                                          title, body, short_body)
               VALUES ('k1', $1, $2, 'loop', 'declared', 'email', 'Loop is down', $3, $3)""",
            alert_id,
            outage_id,
            f"Loop is down: protocol: {error}",
        )
    for path in (
        "/outages/",
        "/outages/active",
        f"/outages/{outage_id}",
        "/services/loop/status",
        "/alerts/",
        f"/alerts/{alert_id}",
        "/notifications/",
    ):
        text = await _text(client, path, READ)
        assert "ErrTok-12" not in text and "token=[redacted]" in text, (path, text)
