"""`ispmon migrate` against a real database: applies the schema, idempotently, and says which version."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import asyncpg


async def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`ispmon migrate` in a fresh process with `env`."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ispmon", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_migrate_applies_the_schema_idempotently(db_dsn: str, pool: asyncpg.Pool) -> None:
    await pool.execute("DROP TABLE outages")  # as if an older database lacked it
    env = {**os.environ, "DATABASE_URL": db_dsn}
    env.pop("ISPMON_CONFIG", None)
    for _ in range(2):
        done = await migrate(env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "schema version 20"
    assert await pool.fetchval("SELECT to_regclass('outages') IS NOT NULL")
    assert await pool.fetchval("SELECT count(*) FROM schema_version") == 20


async def test_an_unreachable_database_is_retried_then_reported_without_secrets() -> None:
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://monitor:s3cret@127.0.0.1:1/none",
        "ISPMON_DB_CONNECT_TIMEOUT": "2",
        "ISPMON_LOG_FORMAT": "json",
    }
    started = time.monotonic()
    done = await migrate(env)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ispmon: database unavailable: postgresql://monitor:[redacted]@127.0.0.1:1/none")
    assert "gave up after 2 s" in last
    assert 1.5 <= elapsed < 30  # it did wait and retry, within the bound
    retries = [json.loads(line) for line in done.stderr.splitlines() if '"database_unavailable"' in line]
    assert len(retries) >= 2


async def test_a_wrong_database_name_fails_at_once(db_dsn: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(db_dsn)
    env = {
        **os.environ,
        "DATABASE_URL": urlunsplit(parts._replace(path="/no_such_db")),
        "ISPMON_DB_CONNECT_TIMEOUT": "300",
    }
    started = time.monotonic()
    done = await migrate(env)
    assert done.returncode == 1 and "no_such_db" in done.stderr and "does not exist" in done.stderr, (
        done.stderr
    )
    # Not retried for 300 s (waiting would not create it); the margin allows a slow start on a loaded machine.
    assert time.monotonic() - started < 60


async def test_a_malformed_database_url_exits_2_at_once_naming_it_without_the_password() -> None:
    """A typo is not worth ISPMON_DB_CONNECT_TIMEOUT of retries: exit 2 before connecting."""
    env = {
        **os.environ,
        # An unencoded '/' in the password: a parser takes "monitor" for the host and "s3" for the port.
        "DATABASE_URL": "postgresql://monitor:s3/cret@127.0.0.1/ispmon",
        "ISPMON_DB_CONNECT_TIMEOUT": "30",
        "ISPMON_LOG_FORMAT": "json",
    }
    env.pop("ISPMON_CONFIG", None)
    started = time.monotonic()
    done = await migrate(env)
    assert done.returncode == 2, done.stderr
    assert time.monotonic() - started < 10
    assert done.stderr.startswith("ispmon: config error: DATABASE_URL: the port must be a number")
    assert "s3" not in done.stderr and "cret" not in done.stderr and "database_unavailable" not in done.stderr
