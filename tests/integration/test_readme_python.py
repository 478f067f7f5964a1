"""The README's Python example, run as written in a fresh process: DATABASE_URL names the test
database and the port of a real HTTP server on loopback replaces 8080."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestServer

import ispmon

ROOT = Path(__file__).resolve().parents[2]
# The subprocess imports the same ispmon as this test (a worktree's, not an installed copy).
SRC = str(Path(ispmon.__file__).resolve().parents[1])


async def test_readme_python_example_runs(db_dsn: str, pool: asyncpg.Pool) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"## From Python.*?```python\n(.*?)```", text, re.S)

    async def livez(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/livez", livez)
    async with TestServer(app, host="127.0.0.1") as server:
        port = server.port
        code = code.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        env = {**os.environ, "DATABASE_URL": db_dsn, "PYTHONPATH": SRC}
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
    assert done.returncode == 0, done.stderr
    created, checked, logged = done.stdout.splitlines()
    assert created == f"Created api-gateway: http http://127.0.0.1:{port}/livez"
    match = re.fullmatch(r"Service status: up, Response time: (\d+\.\d+)ms", checked)
    assert match, checked
    # The seed's context key `event` is kept (as context_event) beside the message.
    assert "Service checked" in logged and "context_event=manual_check" in logged, logged
    row = await pool.fetchrow(
        "SELECT status, response_time_ms FROM status_history WHERE endpoint_id = 'api-gateway'"
    )
    assert row["status"] == "up" and abs(row["response_time_ms"] - float(match[1])) < 0.01
    assert await pool.fetchval("SELECT source FROM endpoints WHERE id = 'api-gateway'") == "api"
