"""The API's TCP listener, bounded: what one client can hold is limited.

aiohttp alone keeps a connection that never completes a request for its keep-alive timeout and
accepts connections until the process runs out of file descriptors; then every TCP check fails
with "Too many open files" and reports a false DOWN. Here:

* a new connection must deliver its first request's headers within ``header_timeout`` seconds
  (slow-loris and idle floods are closed);
* between requests aiohttp's ``keepalive_timeout`` applies (its timer also closes a connection
  whose next request arrives too slowly: the connection counts as idle until the headers are in);
* at most ``max_connections`` are held; one over the cap is closed as soon as it is accepted, so
  the descriptors the daemon keeps for probing stay free (the daemon derives the cap from the
  open-file limit, see `ispmon.fdlimit`).

Shedding is logged once when it starts and once when it ends, never per connection.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import structlog
from aiohttp import web

from ispmon.api.protocol import JsonErrorRequestHandler

log = structlog.get_logger("ispmon.api")


class ConnectionGuard:
    """Counts the API's connections and decides whether one more may be held."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0  # over the cap, closed on arrival (since start)
        self.header_timeouts = 0  # closed before their first request's headers were in
        self._refusing_since: int | None = None  # `refused` when the current episode began

    def admit(self) -> bool:
        if self.open < self.max_connections:
            if self._refusing_since is not None:
                log.info(
                    "api_connections_accepted_again",
                    open=self.open,
                    max_connections=self.max_connections,
                    refused=self.refused - self._refusing_since,
                )
                self._refusing_since = None
            return True
        if self._refusing_since is None:
            self._refusing_since = self.refused
            log.warning(
                "api_connections_refused",
                open=self.open,
                max_connections=self.max_connections,
                effect="new API connections are closed on arrival until some close",
            )
        self.refused += 1
        return False

    def stats(self) -> dict[str, int]:
        return {
            "open": self.open,
            "max_connections": self.max_connections,
            "refused": self.refused,
            "header_timeouts": self.header_timeouts,
        }


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed at once (its descriptor is back within this callback)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class BoundedHandler(JsonErrorRequestHandler):
    """aiohttp's request handler plus the first-request header timer and the connection count."""

    __slots__ = ("_counted", "_guard", "_header_timer")

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timer: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard.open += 1
        self._counted = True
        super().connection_made(transport)
        self._header_timer = asyncio.get_running_loop().call_later(
            self._guard.header_timeout, self._header_timeout_expired
        )

    def headers_received(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        self._guard.header_timeouts += 1
        self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        super().connection_lost(exc)


def _marking_headers(factory: Any) -> Any:
    """Wrap the server's request factory: aiohttp calls it once a request's headers are parsed
    (also for a malformed request, which gets its 400), which is the moment the header timer stops."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> Any:
        if isinstance(protocol, BoundedHandler):
            protocol.headers_received()
        return factory(message, payload, protocol, writer, task)

    return make


class BoundedSite(web.BaseSite):
    """A TCP site whose connections go through a `ConnectionGuard`."""

    __slots__ = ("_bound", "_guard", "_host", "_keepalive_timeout", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        guard: ConnectionGuard,
        keepalive_timeout: float,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._keepalive_timeout = keepalive_timeout
        self._bound: tuple[str, int] | None = None

    @property
    def name(self) -> str:
        host, port = self._bound or (self._host, self._port)
        return f"http://{host}:{port}"

    @property
    def bound(self) -> tuple[str, int]:
        assert self._bound is not None, "not started"
        return self._bound

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        server.request_factory = _marking_headers(server.request_factory)
        guard = self._guard
        keepalive_timeout = self._keepalive_timeout
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            if not guard.admit():
                return _Refused()
            # access_log=None: the error middleware logs what matters, not every request.
            return BoundedHandler(
                server, guard, loop=loop, keepalive_timeout=keepalive_timeout, access_log=None
            )

        listener = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog, reuse_address=True
        )
        self._server = listener
        sock: socket.socket = listener.sockets[0]
        host, port = sock.getsockname()[:2]
        self._bound = (str(host), int(port))
