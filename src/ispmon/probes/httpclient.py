"""The request class of the probes' HTTP session: judges a server that speaks first the same way
on every event loop.

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

from typing import TYPE_CHECKING

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
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
