"""A TCP relay on 127.0.0.1 in front of the tests' PostgreSQL that a test can cut and restore.

The tests share one PostgreSQL server, so a test cannot stop it; it points the daemon at this relay
instead. `cut()` is what the daemon sees when PostgreSQL stops: every connection is reset at once
and new ones are refused (the listening socket is closed) until `restore()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class PgProxy:
    def __init__(self, upstream_dsn: str) -> None:
        parts = urlsplit(upstream_dsn)
        query = dict(parse_qsl(parts.query))
        port = int(query.get("port") or parts.port or 5432)
        socket_dir = query.get("host", "")
        # The embedded server listens on a unix socket only (?host=<dir>); DATABASE_URL may be TCP.
        self._unix = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir.startswith("/") else None
        self._tcp = (parts.hostname or "127.0.0.1", port)
        self._parts = parts
        self._query = {k: v for k, v in query.items() if k not in ("host", "port")}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._relayed: set[asyncio.StreamWriter] = set()
        self.connections = 0

    def dsn(self) -> str:
        """The upstream URL with this relay's address in place of the server's."""
        auth = self._parts.username or ""
        if self._parts.password:
            auth += f":{self._parts.password}"
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit((self._parts.scheme, netloc, self._parts.path, urlencode(self._query), ""))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """PostgreSQL is gone: refuse new connections, reset every open one."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._relayed):
            writer.transport.abort()
        self._relayed.clear()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            if self._unix is not None:
                up_r, up_w = await asyncio.open_unix_connection(self._unix)
            else:
                up_r, up_w = await asyncio.open_connection(*self._tcp)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        self._relayed.update((client_w, up_w))
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
        self._relayed.difference_update((client_w, up_w))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.transport.abort()
