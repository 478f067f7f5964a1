"""`ispmon migrate` and `ispmon db-url`: the database commands."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ispmon.cli_support import load, run_coro, setup_logging


def cmd_migrate(args: argparse.Namespace) -> int:
    config = load(args)
    setup_logging(config)

    async def go() -> int:
        from ispmon.daemon import open_database

        db, embedded = await open_database(config.settings)
        try:
            version = await db.pool.fetchval("SELECT max(version) FROM schema_version")
        finally:
            await db.close()
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
        print(f"schema version {version}")
        return 0

    return run_coro(go())


def cmd_db_url(args: argparse.Namespace) -> int:
    """Print DATABASE_URL as given (stdout only: it may hold a password, and it must work), or the
    URL of the embedded server in the state directory while it runs. It listens on a unix socket
    in its data directory that exists only while it runs: exit 1 and say so when it does not."""
    config = load(args)
    settings = config.settings
    if settings.database_url:
        print(settings.database_url)
        return 0
    from ispmon.store.embedded import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.ispmon_state_dir)
    try:
        uri = embedded.running_uri()
    except PermissionError:
        print(
            f"ispmon: cannot read {embedded.pgdata}: permission denied (run as the user ispmon runs as, or root)",
            file=sys.stderr,
        )
        return 1
    if uri is None:
        where = "" if (embedded.pgdata / "PG_VERSION").exists() else " (none has been created there yet)"
        print(
            f"ispmon: the embedded PostgreSQL in {embedded.pgdata} is not running{where}; its URL names a "
            "unix socket that exists only while it runs: start ispmon (ispmon run, or systemctl start ispmon), "
            "or set ISPMON_STATE_DIR to the state directory of the ispmon that runs",
            file=sys.stderr,
        )
        return 1
    print(uri)
    return 0
