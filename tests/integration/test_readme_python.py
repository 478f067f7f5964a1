"""The README's Python example, run as written (database URL substituted) in a fresh process."""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]


async def test_readme_python_example_runs(db_dsn: str, pool: asyncpg.Pool) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"## From Python.*?```python\n(.*?)```", text, re.S)
    code = code.replace("postgresql://ispmon@db.example.net/ispmon", db_dsn)
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    printed = ast.literal_eval(done.stdout.strip())
    # Nothing listens on 127.0.0.1:8080 in the test: a refused connection is a DOWN result, not an error.
    assert printed["endpoint_id"] == "api-gateway"
    assert printed["status"] in {"up", "down"}
    assert await pool.fetchval("SELECT count(*) FROM status_history WHERE endpoint_id = 'api-gateway'") == 1
    assert await pool.fetchval("SELECT source FROM endpoints WHERE id = 'api-gateway'") == "api"
