"""The REST API against a real PostgreSQL and real loopback servers, through aiohttp's TestServer.

The app is built exactly as the daemon builds it (`AppServices.build` without a monitor), so
checks run real probes and every row lands in the database the services read back.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from ispmon.api.app import ROUTES, create_app, start_api
from ispmon.config import Settings
from ispmon.errors import StartupError
from ispmon.services.context import AppServices
from ispmon.store.database import Database
from ispmon.web import routes as web_routes

TOKEN = "t0ken-for-tests-0123456789"
HTTP_EP = {"name": "API gateway", "url": "https://api.example.net/health", "tags": ["core", "web"]}
TCP_EP = {"id": "smtp", "name": "SMTP relay", "protocol": "tcp", "url": "mail.example.net:25"}
DNS_EP = {"name": "Resolver 1", "url": "dns://192.0.2.53/example.net?type=AAAA", "expected_answers": ["::1"]}


@pytest.fixture
async def services(db_dsn: str) -> AsyncIterator[AppServices]:
    db = await Database.connect(db_dsn, max_size=4)
    try:
        yield AppServices.build(db, Settings())
    finally:
        await db.close()


async def _client(services: AppServices) -> TestClient[web.Request, web.Application]:
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(create_app(services)))
    await client.start_server()
    return client


@pytest.fixture
async def client(services: AppServices) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = await _client(services)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """A real HTTP server on loopback for the checks to probe."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ispmon target ok")

    app = web.Application()
    app.router.add_get("/", ok)
    async with TestServer(app) as server:
        yield f"http://127.0.0.1:{server.port}/"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body["errors"]]


async def test_endpoint_crud_for_http_tcp_and_dns(client: TestClient[Any, Any]) -> None:
    created = []
    for definition in (HTTP_EP, TCP_EP, DNS_EP):
        resp = await client.post("/services/", json=definition)
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert resp.headers["Location"] == f"/services/{body['id']}"
        created.append(body)
    http_ep, tcp_ep, dns_ep = created
    assert (http_ep["id"], http_ep["protocol"], http_ep["source"]) == ("api-gateway", "https", "api")
    assert http_ep["check_interval"] == 60 and http_ep["timeout"] == 5  # SERVICE_CHECK_* defaults
    assert "expected_answers" not in http_ep  # fields of other protocols are not returned
    assert (tcp_ep["protocol"], dns_ep["protocol"], dns_ep["expected_answers"]) == ("tcp", "dns", ["::1"])

    listing = await (await client.get("/services")).json()  # without the trailing slash too
    assert listing["count"] == 3 and {i["id"] for i in listing["items"]} == {
        "api-gateway",
        "smtp",
        "resolver-1",
    }
    only_tcp = await (await client.get("/services/", params={"protocol": "tcp"})).json()
    assert [i["id"] for i in only_tcp["items"]] == ["smtp"]
    tagged = await (await client.get("/services/", params={"tag": "core"})).json()
    assert [i["id"] for i in tagged["items"]] == ["api-gateway"]
    paged = await (await client.get("/services/", params={"limit": "2", "offset": "2"})).json()
    assert (paged["count"], paged["limit"], paged["offset"]) == (1, 2, 2)

    resp = await client.put("/services/smtp", json={"is_active": False, "check_interval": 120})
    assert resp.status == 200, await resp.text()
    updated = await resp.json()
    assert (updated["is_active"], updated["check_interval"], updated["url"]) == (
        False,
        120,
        "mail.example.net:25",
    )
    inactive = await (await client.get("/services/", params={"active": "false"})).json()
    assert [i["id"] for i in inactive["items"]] == ["smtp"]
    resp = await client.put("/services/smtp", json={"timeout": 200})
    assert resp.status == 422 and "timeout" in _fields(await resp.json())

    fetched = await (await client.get("/services/resolver-1")).json()
    assert fetched["url"] == DNS_EP["url"]
    resp = await client.delete("/services/resolver-1")
    assert resp.status == 204 and await resp.read() == b""
    resp = await client.get("/services/resolver-1")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "not_found" and _fields(body) == ["endpoint_id"]
    assert (await client.delete("/services/resolver-1")).status == 404
    assert (await client.put("/services/resolver-1", json={"name": "x"})).status == 404


async def test_duplicate_id_is_a_conflict(client: TestClient[Any, Any]) -> None:
    assert (await client.post("/services/", json=TCP_EP)).status == 201
    resp = await client.post("/services/", json={**TCP_EP, "name": "Another"})
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "conflict" and _fields(body) == ["id"] and "smtp" in body["message"]


async def test_ids_derived_from_names_are_readable_and_never_a_conflict(client: TestClient[Any, Any]) -> None:
    """A 409 is for an id the client sent; one derived from the name is made unique instead."""
    ids = []
    for name in ("Москва-1", "Москва-2", "東京", "大阪", "Москва-1", "Москва-1"):
        resp = await client.post("/services/", json={"name": name, "url": "http://127.0.0.1:9/"})
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert resp.headers["Location"] == f"/services/{body['id']}"
        ids.append(body["id"])
    assert ids[:2] == ["moskva-1", "moskva-2"] and ids[4:] == ["moskva-1-2", "moskva-1-3"]
    assert ids[2].startswith("endpoint-") and ids[3].startswith("endpoint-") and ids[2] != ids[3]
    resp = await client.post("/services/", json={"id": "moskva-1", "name": "x", "url": "http://127.0.0.1:9/"})
    assert resp.status == 409


async def test_checks_history_paging_status_and_summary(client: TestClient[Any, Any], target: str) -> None:
    web_ep = {"id": "web", "name": "Web", "url": target, "timeout": 2, "retries": 0}
    assert (await client.post("/services/", json=web_ep)).status == 201
    down_ep = {"id": "dead", "name": "Dead", "protocol": "tcp", "url": f"127.0.0.1:{_closed_port()}"}
    assert (await client.post("/services/", json={**down_ep, "timeout": 1, "retries": 0})).status == 201
    for _ in range(5):
        resp = await client.post("/services/web/check")
        assert resp.status == 200, await resp.text()
        result = await resp.json()
        assert result["status"] == "up" and result["endpoint_id"] == "web"
    down = await (await client.post("/services/dead/check")).json()
    assert (down["status"], down["error_kind"]) == ("down", "refused")

    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    pages = 0
    while True:
        page = await (await client.get("/services/web/history", params=params)).json()
        pages += 1
        seen += [item["checked_at"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        params = {"limit": "2", "cursor": page["next_cursor"]}
    assert pages == 3 and len(seen) == 5 and len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)  # newest first, no overlap between pages
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    empty = await (await client.get("/services/web/history", params={"since": future})).json()
    assert empty["items"] == [] and empty["next_cursor"] is None
    naive_past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # read as UTC
    recent = await (await client.get("/services/web/history", params={"since": naive_past})).json()
    assert recent["count"] == 5

    status = await (await client.get("/services/web/status")).json()
    assert status["status"] == "up" and status["last_check"]["status"] == "up"
    assert status["last_24h"]["checks"] == 5 and status["open_outage"] is None
    summary = await (await client.get("/services/status/summary")).json()
    assert summary["total"] == 2 and summary["by_status"] == {"up": 1, "down": 1}
    assert [e["endpoint_id"] for e in summary["not_up"]] == ["dead"]
    assert (await client.get("/services/nope/history")).status == 404


async def _open_outage(services: AppServices, endpoint_id: str, severity: str, hours_ago: float) -> int:
    started = datetime.now(UTC) - timedelta(hours=hours_ago)
    outage_id, created = await services.db.outages.open(
        endpoint_id,
        started_at=started,
        declared_at=started + timedelta(minutes=1),
        status="down",
        severity=severity,
        error_kind="timeout",
        error="no answer within 5 s",
        failures=3,
        verified=True,
    )
    assert created
    return outage_id


async def test_outages_filters_detail_and_manual_resolve(
    client: TestClient[Any, Any], services: AppServices
) -> None:
    old = await _open_outage(services, "dns1", "critical", hours_ago=30)
    await services.db.outages.resolve(
        old, resolved_at=datetime.now(UTC) - timedelta(hours=29), resolution="auto"
    )
    web_id = await _open_outage(services, "web", "major", hours_ago=2)

    async def ids(**params: str) -> list[int]:
        resp = await client.get("/outages/", params=params)
        assert resp.status == 200, await resp.text()
        return [o["id"] for o in (await resp.json())["items"]]

    assert await ids() == [web_id, old]
    assert await ids(service="web") == [web_id]
    assert await ids(severity="critical") == [old]
    assert await ids(active="true") == [web_id]
    assert await ids(active="false") == [old]
    assert await ids(since=(datetime.now(UTC) - timedelta(hours=10)).isoformat()) == [web_id]
    assert await ids(until=(datetime.now(UTC) - timedelta(hours=10)).isoformat()) == [old]
    assert await ids(limit="1", offset="1") == [old]
    active = await (await client.get("/outages/active")).json()
    assert [o["id"] for o in active["items"]] == [web_id] and active["items"][0]["active"] is True
    summary = await (await client.get("/outages/summary", params={"hours": "24"})).json()
    assert summary["active"] == 1 and summary["window_hours"] == 24 and summary["by_severity"] == {"major": 1}
    assert (await client.get("/outages/summary")).status == 200

    detail = await (await client.get(f"/outages/{web_id}")).json()
    assert detail["endpoint_id"] == "web" and detail["events"] == [] and detail["resolved_at"] is None

    resp = await client.post(
        f"/outages/{web_id}/resolve", json={"notes": "decommissioned", "resolved_by": "noc"}
    )
    assert resp.status == 200, await resp.text()
    resolved = await resp.json()
    assert (resolved["resolution"], resolved["resolution_notes"], resolved["resolved_by"]) == (
        "manual",
        "decommissioned",
        "noc",
    )
    assert resolved["active"] is False
    again = await client.post(f"/outages/{web_id}/resolve")  # no body: both fields are optional
    assert again.status == 409 and _fields(await again.json()) == ["outage_id"]
    missing = await client.post("/outages/999999/resolve")
    assert missing.status == 404 and _fields(await missing.json()) == ["outage_id"]
    assert (await client.get("/outages/999999")).status == 404


async def test_maintenance_windows(client: TestClient[Any, Any]) -> None:
    now = datetime.now(UTC)
    one_off = {
        "id": "core-upgrade",
        "name": "Core router upgrade",
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "endpoint_ids": ["web"],
    }
    recurring = {
        "name": "Nightly backup",
        "timezone": "Europe/Berlin",
        "starts_at": "2024-01-01T03:00:00",
        "rrule": "FREQ=DAILY",
        "duration_minutes": 30,
        "tags": ["backup"],
        "mode": "skip",
    }
    resp = await client.post("/maintenance/", json=one_off)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Location"] == "/maintenance/core-upgrade"
    assert (await resp.json())["active"] is True
    resp = await client.post("/maintenance", json=recurring)
    assert resp.status == 201, await resp.text()
    nightly = await resp.json()
    assert nightly["id"].startswith("mw-") and nightly["next_occurrence"] is not None
    assert (await client.post("/maintenance/", json=one_off)).status == 409

    listing = await (await client.get("/maintenance/")).json()
    assert listing["count"] == 2
    active = await (await client.get("/maintenance/active")).json()
    assert "core-upgrade" in [w["id"] for w in active["items"]]

    resp = await client.put(
        "/maintenance/core-upgrade", json={"ends_at": (now - timedelta(minutes=1)).isoformat()}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["active"] is False
    resp = await client.put(
        "/maintenance/core-upgrade", json={"rrule": "FREQ=WEEKLY", "duration_minutes": 60}
    )
    assert resp.status == 200 and (await resp.json())["rrule"] == "FREQ=WEEKLY"
    fetched = await (await client.get("/maintenance/core-upgrade")).json()
    assert fetched["ends_at"] is None and fetched["duration_minutes"] == 60

    assert (await client.delete(f"/maintenance/{nightly['id']}")).status == 204
    resp = await client.get(f"/maintenance/{nightly['id']}")
    assert resp.status == 404 and _fields(await resp.json()) == ["window_id"]
    resp = await client.post("/maintenance/", json={**one_off, "id": "active"})
    assert resp.status == 422 and _fields(await resp.json()) == ["id"]


async def test_livez_and_readyz(client: TestClient[Any, Any], services: AppServices) -> None:
    resp = await client.get("/livez")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ready"
    await services.db.pool.close()  # the fixture's close() afterwards is a no-op
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["status"] == "not_ready" and "database" in body["reason"]
    assert (await client.get("/livez")).status == 200


async def test_openapi_describes_every_registered_route(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.1")
    documented: set[tuple[str, str]] = set()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            documented.add((method.upper(), path))
            documented |= {(method.upper(), alias) for alias in op.get("x-also-served-at", [])}
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path
            if (method == "post" and path.endswith("/")) or method == "put":
                assert "requestBody" in op, (method, path)
            assert "500" in op["responses"]
    # "*": the 405 guard of a static path that a parametrised one also matches (/maintenance/active).
    registered = {
        (r.method, r.resource.canonical) for r in client.app.router.routes() if r.method not in ("HEAD", "*")
    }
    # The dashboard's pages, files and event stream are not JSON routes (ispmon.web.routes.PAGES).
    assert registered >= web_routes.PAGES
    assert registered - web_routes.PAGES == documented
    assert len(ROUTES) == sum(len(item) for item in doc["paths"].values())

    create = doc["paths"]["/services/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EndpointSpec"
    }
    assert {"201", "400", "401", "409", "413", "415", "422"} <= set(create["responses"])
    assert "Location" in create["responses"]["201"]["headers"]
    schemas = doc["components"]["schemas"]
    assert set(schemas["EndpointSpec"]["required"]) == {"name", "url"}
    assert {"MaintenanceWindowSpec", "ResolveOutageBody", "EndpointUpdate"} <= set(schemas)
    history = {
        p["name"]: p["schema"] for p in doc["paths"]["/services/{endpoint_id}/history"]["get"]["parameters"]
    }
    assert history["limit"] == {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}
    assert history["since"]["format"] == "date-time"
    # Reads need a token too when one is set; health checks and this document do not.
    assert doc["paths"]["/services/"]["get"]["security"] == [{"bearerAuth": []}]
    assert {"401"} <= set(doc["paths"]["/services/"]["get"]["responses"]) and "403" in create["responses"]
    assert (
        doc["paths"]["/livez"]["get"]["security"] == []
        and "401" not in doc["paths"]["/livez"]["get"]["responses"]
    )
    import openapi_spec_validator as validator

    validator.validate(doc)


async def test_unexpected_error_is_a_generic_500(
    client: TestClient[Any, Any], services: AppServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("password=hunter2 in some internal state")

    monkeypatch.setattr(services.availability, "status_summary", broken)
    with capture_logs() as logs:
        resp = await client.get("/services/status/summary")
    assert resp.status == 500
    text = await resp.text()
    assert "hunter2" not in text and (await resp.json())["error"] == "internal_error"
    assert any(e["event"] == "api_unhandled_error" for e in logs)


BIG = "a" * (70 * 1024)
VALID = {"name": "Web", "url": "http://example.com/"}
JSON = {"Content-Type": "application/json"}


def case(name: str, method: str, path: str, kwargs: dict[str, Any], status: int, field: str) -> Any:
    return pytest.param(method, path, kwargs, status, field, id=name)


def body(**changes: Any) -> dict[str, Any]:
    return {"json": {**VALID, **changes}}


# name, method, path, request kwargs, expected status, the field the error must name
BAD_INPUT = [
    case("malformed-json", "POST", "/services/", {"data": b'{"name": ', "headers": JSON}, 400, "body"),
    case("array-body", "POST", "/services/", {"json": [VALID]}, 422, "body"),
    case("string-body", "POST", "/services/", {"json": "a string"}, 422, "body"),
    case(
        "wrong-content-type",
        "POST",
        "/services/",
        {"data": b"name=web", "headers": {"Content-Type": "text/plain"}},
        415,
        "body",
    ),
    case("oversized-body", "POST", "/services/", body(description=BIG), 413, "body"),
    case("wrong-type-number", "POST", "/services/", body(check_interval="often"), 422, "check_interval"),
    case("wrong-type-int", "POST", "/services/", body(retries=[1]), 422, "retries"),
    case("unknown-field", "POST", "/services/", body(colour="red"), 422, "colour"),
    case("nul-in-string", "POST", "/services/", body(name="nul\u0000byte"), 422, "name"),
    case("bad-id-in-body", "POST", "/services/", body(id="has/slash"), 422, "id"),
    case(
        "invalid-regex",
        "POST",
        "/services/",
        body(expected_response_pattern="(unclosed"),
        422,
        "expected_response_pattern",
    ),
    case("invalid-url", "POST", "/services/", body(url="http://exa mple.com/"), 422, "url"),
    case("invalid-hostname", "POST", "/services/", body(protocol="tcp", url="bad_host!:80"), 422, "url"),
    case("port-70000", "POST", "/services/", body(protocol="tcp", url="192.0.2.1", port=70000), 422, "port"),
    case("check-interval-0.5", "POST", "/services/", body(check_interval=0.5), 422, "check_interval"),
    case(
        "timeout-not-below-interval",
        "POST",
        "/services/",
        body(check_interval=10, timeout=10),
        422,
        "timeout",
    ),
    case(
        "dns-field-on-http",
        "POST",
        "/services/",
        body(expected_answers=["192.0.2.1"]),
        422,
        "expected_answers",
    ),
    case("put-array-body", "PUT", "/services/web", {"json": [1]}, 422, "body"),
    case("id-encoded-slash", "GET", "/services/a%2Fb", {}, 404, "endpoint_id"),
    case("id-slash", "GET", "/services/a/b", {}, 404, "endpoint_id"),
    case("delete-id-slash", "DELETE", "/services/a%2Fb", {}, 404, "endpoint_id"),
    case("id-unicode", "GET", "/services/%C3%BCnic%C3%B6de", {}, 404, "endpoint_id"),
    case("id-65-chars", "GET", "/services/" + "a" * 65, {}, 404, "endpoint_id"),
    case("check-id-65-chars", "POST", "/services/" + "a" * 65 + "/check", {}, 404, "endpoint_id"),
    case("limit-abc", "GET", "/services/", {"params": {"limit": "abc"}}, 400, "limit"),
    case("limit-0", "GET", "/services/", {"params": {"limit": "0"}}, 400, "limit"),
    case("offset-negative", "GET", "/services/", {"params": {"offset": "-1"}}, 400, "offset"),
    case("active-maybe", "GET", "/services/", {"params": {"active": "maybe"}}, 400, "active"),
    case("protocol-unknown", "GET", "/services/", {"params": {"protocol": "gopher"}}, 400, "protocol"),
    case("query-param-typo", "GET", "/services/", {"params": {"activ": "true"}}, 400, "activ"),
    case(
        "history-since-garbage",
        "GET",
        "/services/web/history",
        {"params": {"since": "garbage"}},
        400,
        "since",
    ),
    case("history-limit-1001", "GET", "/services/web/history", {"params": {"limit": "1001"}}, 400, "limit"),
    case(
        "history-bad-cursor",
        "GET",
        "/services/web/history",
        {"params": {"cursor": "nonsense"}},
        400,
        "cursor",
    ),
    case("outages-since-garbage", "GET", "/outages/", {"params": {"since": "yesterday"}}, 400, "since"),
    case("outages-active-maybe", "GET", "/outages/", {"params": {"active": "maybe"}}, 400, "active"),
    case("outages-severity", "GET", "/outages/", {"params": {"severity": "apocalyptic"}}, 400, "severity"),
    case("summary-hours-0", "GET", "/outages/summary", {"params": {"hours": "0"}}, 400, "hours"),
    case("summary-hours-nan", "GET", "/outages/summary", {"params": {"hours": "nan"}}, 400, "hours"),
    case("outage-id-text", "GET", "/outages/abc", {}, 400, "outage_id"),
    case("outage-id-too-big", "GET", "/outages/99999999999999999999", {}, 400, "outage_id"),
    case("outage-id-float", "POST", "/outages/1.5/resolve", {}, 400, "outage_id"),
    case(
        "resolve-unknown-field", "POST", "/outages/1/resolve", {"json": {"notes": "x", "by": "me"}}, 422, "by"
    ),
    case(
        "resolve-notes-too-long", "POST", "/outages/1/resolve", {"json": {"notes": "x" * 4001}}, 422, "notes"
    ),
    case(
        "window-bad-datetime",
        "POST",
        "/maintenance/",
        {"json": {"name": "w", "starts_at": "soon", "all_endpoints": True}},
        422,
        "starts_at",
    ),
    case(
        "window-rrule-without-duration",
        "POST",
        "/maintenance/",
        {
            "json": {
                "name": "w",
                "starts_at": "2030-01-01T00:00:00Z",
                "rrule": "FREQ=DAILY",
                "all_endpoints": True,
            }
        },
        422,
        "duration_minutes",
    ),
    case("no-such-route", "GET", "/nowhere", {}, 404, "path"),
    case("method-not-allowed", "PATCH", "/services/", {"json": {}}, 405, "method"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "field"), BAD_INPUT)
async def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient[Any, Any], method: str, path: str, kwargs: dict[str, Any], status: int, field: str
) -> None:
    resp = await client.request(method, path, **kwargs)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error", "message", "errors"}
    assert field in _fields(body) or field in body["message"], body


async def test_writes_need_the_bearer_token_when_one_is_set(db_dsn: str) -> None:
    db = await Database.connect(db_dsn, max_size=2)
    client = await _client(AppServices.build(db, Settings(ispmon_api_token=TOKEN)))
    try:
        resp = await client.post("/services/", json=TCP_EP)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert _fields(await resp.json()) == ["Authorization"]
        resp = await client.post(
            "/services/", json=TCP_EP, headers={"Authorization": "Bearer wrong-token-123456"}
        )
        assert resp.status == 401 and "invalid_token" in resp.headers["WWW-Authenticate"]
        resp = await client.delete("/services/smtp", headers={"Authorization": f"Basic {TOKEN}"})
        assert resp.status == 401
        resp = await client.post("/services/", json=TCP_EP, headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 201
        assert (await client.get("/services/smtp")).status == 401  # reads need a token too
        resp = await client.get("/services/smtp", headers={"Authorization": f"Bearer {TOKEN}"})
        assert resp.status == 200 and (await resp.json())["id"] == "smtp"
        assert (await client.get("/openapi.json")).status == 200
    finally:
        await client.close()
        await db.close()


async def test_start_api_refuses_a_public_address_without_a_token(services: AppServices) -> None:
    """No silent fall-back to loopback: listening beyond it without a token is an error naming API_HOST."""
    with pytest.raises(StartupError) as info:
        await start_api(create_app(services), "0.0.0.0", 0, None)
    assert str(info.value).startswith("API_HOST: '0.0.0.0' is not a loopback address")
    assert "ISPMON_API_TOKEN" in str(info.value)
    runner, host, port = await start_api(create_app(services), "127.0.0.1", 0, None)
    await runner.cleanup()
    assert host == "127.0.0.1" and port > 0
    runner, host, port = await start_api(create_app(services), "127.0.0.1", 0, TOKEN)
    await runner.cleanup()
    assert host == "127.0.0.1" and port > 0


async def test_config_owned_endpoints_and_windows_are_read_only_through_the_api(
    client: TestClient[web.Request, web.Application], services: AppServices
) -> None:
    from ispmon.availability.endpoints import build_endpoint
    from ispmon.availability.maintenance import MaintenanceWindowSpec

    spec = build_endpoint({"id": "from-file", "name": "From the file", "url": "http://127.0.0.1:9/"})
    await services.db.endpoints.sync_config([spec])
    window = MaintenanceWindowSpec.model_validate(
        {
            "id": "file-window",
            "name": "From the file",
            "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": "2030-01-01T01:00:00Z",
            "all_endpoints": True,
        }
    )
    await services.db.maintenance.sync_config([(window.id, window.name, window.model_dump(mode="json"))])

    listed = await (await client.get("/services/from-file")).json()
    assert listed["source"] == "config"
    for method, path, body in [
        ("PUT", "/services/from-file", {"name": "renamed"}),
        ("DELETE", "/services/from-file", None),
        ("PUT", "/maintenance/file-window", {"name": "renamed"}),
        ("DELETE", "/maintenance/file-window", None),
    ]:
        resp = await client.request(method, path, json=body)
        assert resp.status == 409, (method, path, resp.status)
        payload = await resp.json()
        assert _fields(payload) == ["id"] and "config file" in payload["message"]
    assert (await (await client.get("/services/from-file")).json())["name"] == "From the file"


async def test_secrets_are_not_readable_and_survive_a_get_put_round_trip(
    client: TestClient[web.Request, web.Application], services: AppServices
) -> None:
    body = {
        "id": "billing",
        "name": "Billing",
        "url": "https://monitor:s3cret@127.0.0.1:9/health",
        "headers": {"X-Auth": "Bearer abc123", "Accept": "application/json"},
    }
    created = await client.post("/services/", json=body)
    assert created.status == 201
    for resp in (created, await client.get("/services/billing"), await client.get("/services/")):
        text = await resp.text()
        assert "s3cret" not in text and "abc123" not in text, text
    shown = await (await client.get("/services/billing")).json()
    assert shown["headers"]["X-Auth"] == "[redacted]"
    # The whole GET body sent back with one change: accepted, and the secrets are kept.
    resp = await client.put("/services/billing", json={**shown, "name": "Billing API"})
    assert resp.status == 200, await resp.text()
    stored = await services.db.endpoints.get("billing")
    assert stored is not None
    assert stored["spec"]["headers"]["X-Auth"] == "Bearer abc123"
    assert stored["spec"]["url"] == "https://monitor:s3cret@127.0.0.1:9/health"
    assert stored["name"] == "Billing API"
