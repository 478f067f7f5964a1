"""The request and connector classes of the probes' HTTP session.

`ProbeRequest` judges a server that speaks first the same way on every event loop;
`ProbeConnector` opens a connection to a single address without aiohappyeyeballs.

A server that sends bytes as soon as the connection opens (an SSH or SMTP banner on port 80, a
port that answers with garbage) is not speaking HTTP. What aiohttp reported for it depended on
the loop: with asyncio's loop the request went out and the response parser then rejected the
bytes (``protocol``); with uvloop the bytes had already arrived when aiohttp set up its parser,
the parser rejected them and closed the transport, and writing the request then failed with
"Cannot write to closing transport" (``connection``). The parser's verdict was lost in the
second case because aiohttp forgets it when the connection is closed.

`ProbeRequest.send` looks at the connection before writing: when the parser has already failed,
it raises that failure exactly as `ClientResponse.start` would have, so both loops report the same
kind and the same text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.client_exceptions import cert_errors, ssl_errors
from aiohttp.helpers import ceil_timeout
from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
    import asyncio

    from aiohttp.client_proto import ResponseHandler
    from aiohttp.connector import Connection


class ProbeRequest(aiohttp.ClientRequest):
    """A ClientRequest that raises the response parser's error, when it already has one, instead
    of trying to write to the transport that error closed."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        protocol = conn.protocol
        early = protocol.exception() if protocol is not None else None
        if isinstance(early, HttpProcessingError):
            raise aiohttp.ClientResponseError(
                self.request_info,
                (),
                status=early.code,
                message=early.message,
                headers=early.headers,
            ) from early
        return await super().send(conn)


class ProbeConnector(aiohttp.TCPConnector):
    """A TCPConnector that hands a single resolved address straight to the event loop.

    aiohttp connects through ``aiohappyeyeballs.start_connection`` even when there is only one
    address (an IP literal, a name with one A record): it builds a Python socket and waits on
    ``loop.sock_connect`` before ``loop.create_connection(sock=...)`` wraps it. A profile at 1,000
    HTTP checks/s put ~41 % of HTTP CPU in opening connections, most of it there; uvloop's own
    ``create_connection(host, port)`` does the same connect in C (bench/http_connect.py has the
    figures). Several addresses (a dual-stack name) keep aiohttp's path: the happy-eyeballs race
    is what they need. Errors are wrapped exactly as aiohttp's own path wraps them, so
    ``http._classify`` sees the same exception types either way.
    """

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        single = _single_address(addr_infos)
        if single is None or self._local_addr_infos or self._socket_factory is not None:
            return await super()._wrap_create_connection(
                *args, addr_infos=addr_infos, req=req, timeout=timeout, client_error=client_error, **kwargs
            )
        family, host, port = single
        if kwargs.get("ssl") and self._ssl_shutdown_timeout:
            kwargs["ssl_shutdown_timeout"] = self._ssl_shutdown_timeout
        try:
            async with ceil_timeout(timeout.sock_connect, ceil_threshold=timeout.ceil_threshold):
                transport, protocol = await self._loop.create_connection(
                    *args, host=host, port=port, family=family, **kwargs
                )
                return transport, protocol  # type: ignore[return-value]
        except cert_errors as exc:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl_errors as exc:
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc


def _single_address(addr_infos: list[Any]) -> tuple[int, str, int] | None:
    """(family, address, port) when there is exactly one address to try and it needs nothing
    create_connection(host=..., port=...) cannot say: an IPv6 scope id (fe80::1%eth0) or flow
    label keeps aiohttp's path, which connects to the full sockaddr."""
    if len(addr_infos) != 1:
        return None
    family, _, _, _, sockaddr = addr_infos[0]
    if len(sockaddr) > 2 and any(sockaddr[2:]):
        return None
    return family, sockaddr[0], sockaddr[1]
