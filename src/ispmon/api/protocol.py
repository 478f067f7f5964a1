"""The JSON error shape for requests aiohttp rejects itself, before any route or middleware runs.

aiohttp's HTTP parser refuses a request line over ``max_line_size``, a header over
``max_field_size``, too many headers, a method token it does not know or plain garbage, and its
`RequestHandler.handle_error` answers those in text/plain (and logs a traceback per request). The
subclass here answers with the same ``{"error", "message", "errors"}`` body as every other error
and logs one debug line: what a client sends wrong is not an event of ours. `ApiRunner` is the
`AppRunner` whose server builds these handlers; `start_api` uses it.

Statuses: aiohttp says 400 for every parse failure; an over-long request line is 414 (RFC 9110
§15.5.15), an over-long or excessive header section 431 (RFC 6585 §5), an unknown method token
501 (RFC 9110 §9.1: "a method that is unrecognized or not implemented by the origin server").
"""

from __future__ import annotations

import re
from types import TracebackType

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from ispmon.api.errors import error_response

log = structlog.get_logger("ispmon.api")

# Where the C parser (llhttp callbacks) raised LineTooLong: the URL or the header section.
_TOO_LONG_AT: dict[str, tuple[int, str]] = {
    "cb_on_url": (414, "url"),
    "cb_on_header_field": (431, "headers"),
    "cb_on_header_value": (431, "headers"),
}
# llhttp's BadHttpMethod quotes the request line: a well-formed line with a method token it does not
# know is a 501; anything else (TLS to a plain port, garbage) is not HTTP at all, a 400.
_REQUEST_LINE = re.compile(r"b'[!#$%&*+.^_`|~0-9A-Za-z-]+ \S+ HTTP/1\.[01]'")
_REASONS: dict[int, str] = {
    400: "the request is not valid HTTP/1.1",
    414: "the request line (method, path and query) is longer than the server accepts",
    431: "the header section is larger than the server accepts",
    500: "internal error; see the ispmon log",
    501: "the method is not one this server implements",
    504: "the request took too long",
}


def _raised_in(tb: TracebackType | None) -> str:
    name = ""
    while tb is not None:
        # Cython names its frames by qualified name ("aiohttp._http_parser.cb_on_url").
        name = tb.tb_frame.f_code.co_name.rsplit(".", 1)[-1]
        tb = tb.tb_next
    return name


def classify(status: int, exc: BaseException | None) -> tuple[int, str]:
    """(status, field) for a request aiohttp failed to parse or serve."""
    if isinstance(exc, BadHttpMethod):
        return (501, "method") if _REQUEST_LINE.search(exc.message or "") else (400, "(request)")
    if isinstance(exc, LineTooLong):
        return _TOO_LONG_AT.get(_raised_in(exc.__traceback__), (status, "(request)"))
    if isinstance(exc, HttpProcessingError) and "too many headers" in (exc.message or "").lower():
        return 431, "headers"
    return status, "(request)"


class JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own error answers in the API's JSON shape."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # The same rule as aiohttp's: a started response cannot be replaced.
            raise ConnectionError("Response is sent already, cannot send another response")
        status, field = classify(status, exc)
        reason = _REASONS.get(status, "the request failed")
        if status >= 500 and status != 501:
            log.error("api_request_failed", status=status, exc_info=exc)
        else:
            log.debug("api_request_rejected", status=status, field=field, detail=str(exc)[:200])
        response = error_response(status, f"{field}: {reason}", [{"field": field, "message": reason}])
        response.force_close()  # the parser's state is unknown after an error
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An `AppRunner` whose connections answer parse errors in the API's JSON shape."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds a plain `web.Server` (there is no factory argument for the handler class);
        # the subclass only replaces the protocol factory, so its state is the same object's.
        server.__class__ = _JsonErrorServer
        return server
