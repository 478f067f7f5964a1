"""AvailabilityService returns typed objects (`Endpoint`, `CheckResult`) whose `to_dict()` is the API's JSON.

Against a real PostgreSQL and a real HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import datetime
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.models import ErrorKind, ProtocolType, Status
from ispmon.services import AvailabilityService, CheckResult, Endpoint
from ispmon.services.context import AppServices
from ispmon.store.database import Database


class Target:
    """A real HTTP server that answers after `delay` seconds and counts requests in flight."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return web.Response(text="ok")
        finally:
            self.in_flight -= 1


async def _serve(target: Target) -> TestServer:
    app = web.Application()
    app.router.add_get("/{tail:.*}", target.handle)
    server = TestServer(app)
    await server.start_server()
    return server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_create_endpoint_returns_an_endpoint_with_attributes(db: Database) -> None:
    svc = AvailabilityService(db)
    endpoint = await svc.create_endpoint(
        {
            "name": "API Gateway",
            "url": "https://ops:s3cret@api.example.net/health",
            "protocol": ProtocolType.HTTPS,
            "headers": {"X-Auth": "Bearer abc", "Accept": "text/plain"},
            "check_interval": 60,
            "timeout": 5,
            "expected_status_code": 200,
        }
    )
    assert isinstance(endpoint, Endpoint)
    assert (endpoint.id, endpoint.name, endpoint.protocol) == (
        "api-gateway",
        "API Gateway",
        ProtocolType.HTTPS,
    )
    assert (endpoint.timeout, endpoint.expected_status_code, endpoint.source) == (5.0, 200, "api")
    assert isinstance(endpoint.created_at, datetime) and endpoint.current_status is None
    # The attributes hold the real values; the dict is what the API shows, secrets redacted.
    assert endpoint.headers["X-Auth"] == "Bearer abc"
    assert endpoint.url == "https://ops:s3cret@api.example.net/health"
    shown = endpoint.to_dict()
    assert shown["headers"] == {"X-Auth": "[redacted]", "Accept": "text/plain"}
    assert shown["url"] == "https://ops:[redacted]@api.example.net/health"
    assert shown["protocol"] == "https" and shown["created_at"] == endpoint.created_at.isoformat()
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = endpoint.nonsense
    assert (await svc.get_endpoint("api-gateway")).to_dict() == shown
    assert [e.id for e in await svc.list_endpoints()] == ["api-gateway"]
    updated = await svc.update_endpoint("api-gateway", {"timeout": 2})
    assert updated.timeout == 2.0 and updated.headers["X-Auth"] == "Bearer abc"


async def test_the_api_shows_what_to_dict_gives(db: Database) -> None:
    services = AppServices.build(db, Settings())
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(services)))
    await client.start_server()
    try:
        body = {"name": "Mail", "protocol": "tcp", "url": f"127.0.0.1:{_closed_port()}", "retries": 0}
        resp = await client.post("/services/", json=body)
        created = await resp.json()
        assert resp.status == 201 and resp.headers["Location"] == "/services/mail"
        endpoint = await services.availability.get_endpoint("mail")
        assert created == json.loads(json.dumps(endpoint.to_dict()))
        checked = await (await client.post("/services/mail/check")).json()
    finally:
        await client.close()
    assert set(checked) == {
        "checked_at", "status", "response_time_ms", "error_kind", "error", "attempts", "details", "endpoint_id"
    }  # fmt: skip
    assert (checked["endpoint_id"], checked["status"], checked["error_kind"]) == ("mail", "down", "refused")


async def test_check_service_returns_a_check_result(db: Database, pool: asyncpg.Pool) -> None:
    server = await _serve(Target())
    try:
        svc = AvailabilityService(db)
        endpoint = await svc.create_endpoint({"name": "Portal", "url": str(server.make_url("/health"))})
        status = await svc.check_service(endpoint.id)
    finally:
        await server.close()
    assert isinstance(status, CheckResult)
    assert status.status is Status.UP and status.status.value == "up"
    assert isinstance(status.response_time, float) and status.response_time > 0
    assert status.response_time == status.response_time_ms
    assert (status.endpoint_id, status.error_kind, status.error, status.attempts) == ("portal", None, None, 1)
    assert status.details["status_code"] == 200
    assert status.to_dict() == {
        "checked_at": status.checked_at.isoformat(),
        "status": "up",
        "response_time_ms": status.response_time_ms,
        "error_kind": None,
        "error": None,
        "attempts": 1,
        "details": status.details,
        "endpoint_id": "portal",
    }
    row = await pool.fetchrow("SELECT checked_at, status, response_time_ms FROM status_history")
    assert (row["checked_at"], row["status"]) == (status.checked_at, "up")
    assert row["response_time_ms"] == pytest.approx(status.response_time, rel=1e-6)  # a real column


async def test_check_all_checks_active_endpoints_with_bounded_concurrency(
    db: Database, pool: asyncpg.Pool
) -> None:
    target = Target(delay=0.2)
    server = await _serve(target)
    try:
        svc = AvailabilityService(db)
        for n in range(5):
            await svc.create_endpoint(
                {"id": f"web-{n}", "name": f"Web {n}", "url": str(server.make_url(f"/{n}"))}
            )
        await svc.create_endpoint(
            {"id": "off", "name": "Off", "url": str(server.make_url("/")), "is_active": False}
        )
        down_url = f"127.0.0.1:{_closed_port()}"
        await svc.create_endpoint(
            {"id": "mail", "name": "Mail", "protocol": "tcp", "url": down_url, "retries": 0}
        )
        results = await svc.check_all(concurrency=2)
    finally:
        await server.close()
    assert [r.endpoint_id for r in results] == ["mail", "web-0", "web-1", "web-2", "web-3", "web-4"]
    assert [r.status for r in results] == [Status.DOWN] + [Status.UP] * 5
    assert results[0].error_kind is ErrorKind.REFUSED
    assert target.most_in_flight == 2
    recorded = await pool.fetch("SELECT endpoint_id, status FROM status_history ORDER BY endpoint_id")
    assert [(r["endpoint_id"], r["status"]) for r in recorded] == [
        (r.endpoint_id, r.status.value) for r in results
    ]
