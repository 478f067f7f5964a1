"""Schemathesis against the live API: every route, generated requests, no 5xx, answers as documented.

The app is the daemon's (`create_app` + `start_api`, real PostgreSQL, ISPMON_API_TOKEN set and
sent), served from its own thread and event loop because schemathesis' calls are blocking. Every
operation of /openapi.json gets a bounded number of valid and invalid requests; a server error, a
status code, content type, header or body the document does not describe fails the test.

Generated definitions must not send probes or notifications off this machine, so the `url`/`urls`
a create or update would store are pointed at a closed port on loopback; everything else in the
bodies is what schemathesis generated.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from ispmon.api.app import create_app, start_api
from ispmon.api.keys import OPENAPI_CACHE
from ispmon.config import Settings
from ispmon.services.context import AppServices
from ispmon.store.database import Database

TOKEN = "t0ken-for-schemathesis-0123456789"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLOSED = _closed_port()
LOOPBACK_URLS = {
    "http": f"http://127.0.0.1:{CLOSED}/",
    "https": f"https://127.0.0.1:{CLOSED}/",
    "tcp": f"127.0.0.1:{CLOSED}",
    "udp": f"127.0.0.1:{CLOSED}",
    "dns": f"dns://127.0.0.1:{CLOSED}/example.net",
    "icmp": "127.0.0.1",
}
CHANNEL_URL = f"json://127.0.0.1:{CLOSED}/"


class LiveApi:
    """The app on 127.0.0.1, served by a thread with its own loop; `base_url` once started."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.base_url = ""
        self.document: dict[str, Any] = {}
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="schemathesis-api", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start()/stop() in the test's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        db = await Database.connect(self.dsn, max_size=4)
        try:
            app = create_app(AppServices.build(db, Settings(ispmon_api_token=TOKEN)))
            runner, host, port = await start_api(app, "127.0.0.1", 0, TOKEN)
            try:
                self.document = app[OPENAPI_CACHE]
                self.base_url = f"http://{host}:{port}"
                self._ready.set()
                await self._stop.wait()
            finally:
                await runner.cleanup()
        finally:
            await db.close()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or not self.base_url:
            raise RuntimeError("the API did not start") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._error is not None:
            raise self._error


@pytest.fixture
def live_api(db_dsn: str) -> Iterator[LiveApi]:
    api = LiveApi(db_dsn)
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def api_schema(live_api: LiveApi) -> Any:
    schema = schemathesis.openapi.from_dict(live_api.document)
    schema.config.update(base_url=live_api.base_url, headers={"Authorization": f"Bearer {TOKEN}"})
    return schema


def _keep_on_loopback(case: Any) -> None:
    """Point a generated definition's targets at a closed loopback port (type errors stay as made)."""
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("url"), str):
        protocol = body.get("protocol")
        body["url"] = (
            LOOPBACK_URLS.get(protocol.lower(), LOOPBACK_URLS["http"])
            if isinstance(protocol, str)
            else LOOPBACK_URLS["http"]
        )
    if isinstance(body.get("urls"), list):
        body["urls"] = [CHANNEL_URL if isinstance(u, str) else u for u in body["urls"]]


schema = schemathesis.pytest.from_fixture("api_schema")


# One pytest test runs every operation (as subtests): ~2,700 requests, most of them schemathesis'
# deterministic coverage phase (boundary values, wrong types, undeclared methods), ~50 s of CPU.
@pytest.mark.timeout(480)
@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_route_answers_as_documented(case: Any, live_api: LiveApi) -> None:
    _keep_on_loopback(case)
    case.call_and_validate(
        base_url=live_api.base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=CHECKS,
        timeout=30,
    )
