"""The README's MetricsService example (section "Metrics and latency"), run as written in a fresh
process with DATABASE_URL naming the test database."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg

import ispmon

ROOT = Path(__file__).resolve().parents[2]
SRC = str(Path(ispmon.__file__).resolve().parents[1])


async def test_readme_metrics_example_runs(db_dsn: str, pool: asyncpg.Pool) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"## Metrics and latency.*?```python\n(.*?)```", text, re.S)
    env = {**os.environ, "DATABASE_URL": db_dsn, "PYTHONPATH": SRC}
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    # Log lines (structlog, to stdout without a configured logger) come before the print.
    assert done.stdout.splitlines()[-1] == "eth0 15.3", done.stdout
    assert await pool.fetchval("SELECT host FROM system_metrics") == "radius-1"
