"""The seed's Python examples (issue 8, section 2), run as the seed writes them, with `await`.

Each snippet runs in a fresh process, at top level (asyncio's REPL flag for top-level await),
with only `db` defined: a `Database` on the test's PostgreSQL. The seed's target,
https://api.example.com, is replaced by a real HTTPS server on loopback whose test CA the process
trusts through SSL_CERT_FILE.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import trustme
from aiohttp import web

import ispmon

SRC = str(Path(ispmon.__file__).resolve().parents[1])

CREATE_AND_CHECK = """\
from ispmon.models import ProtocolType
from ispmon.services import AvailabilityService

endpoint = await AvailabilityService(db).create_endpoint({
    "name": "API Gateway",
    "url": "https://api.example.com/health",
    "protocol": ProtocolType.HTTPS,
    "check_interval": 60,
    "timeout": 5,
    "expected_status_code": 200,
})
print(f"Created endpoint: {endpoint.id} ({endpoint.name})")

service = AvailabilityService(db)
status = await service.check_service(endpoint.id)
print(f"Service status: {status.status.value}, Response time: {status.response_time}ms")
"""

COLLECT = """\
from ispmon.collectors import collect_specific_service_availability

await collect_specific_service_availability(db, "api-gateway")
"""

LOG = """\
from ispmon.services import LoggingService

logger = LoggingService()
logger.info("Service outage detected", {"event": "outage_detected", "service_id": "api-gateway"})
"""

SERVICES = """\
from ispmon.services import AlertService, AvailabilityService, LoggingService, MaintenanceService, OutageService

alerts = AlertService(db)
print(await alerts.list_alerts())
"""

# Runs the snippets (JSON on stdin) one after the other, each with a fresh namespace holding `db`.
HARNESS = """\
import ast, asyncio, json, os, sys
from ispmon.store.database import Database

async def main():
    db = await Database.connect(os.environ["DATABASE_URL"])
    try:
        for name, source in json.load(sys.stdin):
            print(f"--- {name}", flush=True)
            code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, {"db": db})
            if result is not None:
                await result
            sys.stdout.flush()
    finally:
        await db.close()

asyncio.run(main())
"""


@pytest.fixture
async def https_base(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A real HTTPS server on loopback; its base URL and the CA file that makes it trusted."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}", ca_file
    finally:
        await runner.cleanup()


async def run_snippets(snippets: dict[str, str], db_dsn: str, ca_file: Path) -> dict[str, list[str]]:
    """Each snippet's printed lines, by name; fails with the process's stderr if it fails."""
    env = {**os.environ, "DATABASE_URL": db_dsn, "PYTHONPATH": SRC, "SSL_CERT_FILE": str(ca_file)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", HARNESS],
        input=json.dumps(list(snippets.items())),
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    out: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        if line.startswith("--- "):
            out[line[4:]] = []
        else:
            out[next(reversed(out))].append(line)
    return out


async def test_seed_examples_run_as_written(
    db_dsn: str, pool: asyncpg.Pool, https_base: tuple[str, Path]
) -> None:
    base, ca_file = https_base
    snippets = {
        "create_and_check": CREATE_AND_CHECK.replace("https://api.example.com", base),
        "collect": COLLECT,
        "log": LOG,
        "services": SERVICES,
    }
    printed = await run_snippets(snippets, db_dsn, ca_file)

    created, checked = printed["create_and_check"]
    assert created == "Created endpoint: api-gateway (API Gateway)"
    assert re.fullmatch(r"Service status: up, Response time: \d+(\.\d+)?ms", checked), checked
    row = await pool.fetchrow("SELECT protocol, spec->>'protocol' AS spec_protocol FROM endpoints")
    assert (row["protocol"], row["spec_protocol"]) == ("https", "https")
    history = await pool.fetch(
        "SELECT status FROM status_history WHERE endpoint_id = 'api-gateway' ORDER BY checked_at"
    )
    assert [r["status"] for r in history] == ["up", "up"]  # the check, then the collector's
    (logged,) = printed["log"]
    assert "Service outage detected" in logged and "context_event=outage_detected" in logged, logged
    assert printed["services"] == ["[]"]
