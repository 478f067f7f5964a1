"""`ispmon validate` next to a database that already runs: it names the API-created endpoints the
file would take over, and changes nothing (no schema, no rows, no server started)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from ispmon.availability.endpoints import build_endpoint
from ispmon.store.endpoints import EndpointRepo


def validate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ispmon", "validate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_validate_names_endpoints_the_file_takes_over(
    db_dsn: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    repo = EndpointRepo(pool)
    await repo.insert(
        build_endpoint({"id": "web", "name": "Web", "url": "http://127.0.0.1:1/"}), source="api"
    )
    await repo.insert(
        build_endpoint({"id": "other", "name": "Other", "url": "http://127.0.0.1:2/"}), source="api"
    )
    config = tmp_path / "ispmon.toml"
    config.write_text(
        '[channels]\nemail = "json://127.0.0.1/hook"\n'
        '[[endpoints]]\nid = "dns"\nname = "DNS"\nurl = "dns://127.0.0.1/example.net"\n'
        '[[endpoints]]\nid = "web"\nname = "Web"\nurl = "http://127.0.0.1:1/"\n'
    )
    env = {**os.environ, "DATABASE_URL": db_dsn, "ISPMON_STATE_DIR": str(tmp_path / "state")}
    done = await asyncio.to_thread(validate, env, "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: {config}: 2 endpoints")
    assert done.stderr.splitlines() == [
        f"ispmon: warning: {config}: endpoints[1].id: 'web' was created through the API; the file takes it "
        "over at the next start or reload (then the API can no longer change or delete it)"
    ]
    assert {r["id"]: r["source"] for r in await repo.all()} == {"web": "api", "other": "api"}
    offline = await asyncio.to_thread(validate, env, "--config", str(config), "--offline")
    assert (offline.returncode, offline.stderr) == (0, "")
    assert not (tmp_path / "state").exists()
