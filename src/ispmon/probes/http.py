"""HTTP and HTTPS probe: one request on a fresh connection, judged on status, body and certificate.

Checks run in a fixed order so the reported kind is the most fundamental problem: an expired
certificate (when verification is off), then the status code, then the body pattern, then the
DEGRADED conditions (certificate close to expiry, slow response).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from time import perf_counter
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from cryptography import x509

from ispmon.models import ErrorKind, ProbeResult, Protocol, Status
from ispmon.probes.base import pattern_failure, up_or_slow
from ispmon.probes.oserrors import classify_os_error, describe_os_error, host_port, resource_errno
from ispmon.probes.resources import resource_failure
from ispmon.probes.safetext import target_text

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext

MAX_REDIRECTS = 10
# All aiohttp timers off: the probe's own asyncio.timeout is the only clock, so there is one timer
# per check instead of two and the time limit is exact (aiohttp rounds long timeouts up).
_NO_CLIENT_TIMEOUT = aiohttp.ClientTimeout()
_SECONDS_PER_DAY = 86400.0


class _CertResponse(aiohttp.ClientResponse):
    """A response that keeps the peer certificate (DER) of the connection it arrived on.

    With a force_close connector aiohttp closes the connection inside `start()` when the body is
    empty (HEAD, 204, Content-Length: 0), so by the time the caller sees the response the
    ssl_object is gone; grabbing the certificate here works for every response.
    """

    peer_cert: bytes | None = None

    async def start(self, connection: Any) -> aiohttp.ClientResponse:
        transport = connection.transport
        if transport is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                # binary_form works even with verification off, where the dict form is empty.
                self.peer_cert = ssl_object.getpeercert(binary_form=True)
        return await super().start(connection)


async def _keep_peer_cert(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
    req.response_class = _CertResponse
    response: aiohttp.ClientResponse = await handler(req)
    return response


# Per-request `middlewares=` needs aiohttp >= 3.12; it keeps the shared session untouched.
_HTTPS_MIDDLEWARES = (_keep_peer_cert,)


def _not_after(der: bytes) -> datetime | None:
    # ~2 µs per parse against ~1 ms for the handshake itself: not worth a cache.
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:
        return None


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    https = endpoint.protocol is Protocol.HTTPS
    pattern = endpoint.pattern
    read_body = pattern is not None or endpoint.method != "HEAD"
    body = b""
    nbytes = 0
    truncated = False
    resp: aiohttp.ClientResponse | None = None
    start = perf_counter()
    try:
        async with (
            asyncio.timeout(timeout),
            ctx.http_session().request(
                endpoint.method,
                endpoint.url,
                headers=endpoint.headers or None,
                data=endpoint.body,
                allow_redirects=endpoint.follow_redirects,
                max_redirects=MAX_REDIRECTS,
                ssl=endpoint.verify_tls,
                timeout=_NO_CLIENT_TIMEOUT,
                middlewares=_HTTPS_MIDDLEWARES if https else None,
            ) as resp,
        ):
            status = resp.status
            accepted = endpoint.accepts_status(status)
            if accepted and read_body:
                nbytes, body, truncated = await _read_capped(
                    resp.content, ctx.max_body_bytes, pattern is not None
                )
                if truncated:
                    # Do not wait for (or drain) the rest of an endless body: drop the connection.
                    resp.close()
            rt = (perf_counter() - start) * 1000.0
    except TimeoutError:
        if resp is None:
            return ProbeResult.down(ErrorKind.TIMEOUT, f"no response within {timeout:g} s")
        return ProbeResult.down(
            ErrorKind.TIMEOUT, f"response body not complete within {timeout:g} s", status_code=resp.status
        )
    except (aiohttp.ClientError, OSError) as exc:
        kind, text = _classify(exc)
        # A failure after the headers (body cut short) still tells which status the server sent.
        failed = {"status_code": resp.status} if resp is not None else {}
        if kind is ErrorKind.INTERNAL:  # this host ran out of descriptors, buffers or memory
            return resource_failure(resource_errno(exc) or "os", text, None, failed)
        return ProbeResult(Status.DOWN, None, kind, text, failed)

    details: dict[str, Any] = {"status_code": status, "bytes_read": nbytes}
    if resp.history:
        details["url"] = str(resp.url)
        details["redirects"] = len(resp.history)
    if truncated:
        details["body_truncated"] = True
    days_left: float | None = None
    if https:
        der = _peer_cert(resp)
        not_after = _not_after(der) if der is not None else None
        if not_after is not None:
            days_left = (not_after - datetime.now(UTC)).total_seconds() / _SECONDS_PER_DAY
            # floor() keeps "days_left < threshold" and "cert_days_left < threshold" equivalent.
            details["cert_days_left"] = int(days_left // 1)
            details["cert_not_after"] = not_after.isoformat()
            if days_left < 0:
                return ProbeResult(
                    Status.DOWN,
                    rt,
                    ErrorKind.TLS,
                    f"certificate expired on {not_after:%Y-%m-%d %H:%M} UTC",
                    details,
                )
    if not accepted:
        return ProbeResult(
            Status.DOWN,
            rt,
            ErrorKind.UNEXPECTED_STATUS,
            # The reason phrase is the server's own text.
            f"HTTP {status} {target_text(resp.reason or '')}".rstrip() + f", expected {_expected(endpoint)}",
            details,
        )
    where = f"the first {nbytes} bytes of the body" if truncated else f"the {nbytes}-byte body"
    failure = await pattern_failure(endpoint, body, ctx, rt, details, where)
    if failure is not None:
        return failure
    if days_left is not None and days_left < endpoint.cert_expiry_days:
        return ProbeResult(
            Status.DEGRADED,
            rt,
            ErrorKind.CERT_EXPIRY,
            f"certificate expires in {days_left:.1f} days (threshold {endpoint.cert_expiry_days})",
            details,
        )
    return up_or_slow(endpoint, rt, details)


async def _read_capped(content: aiohttp.StreamReader, cap: int, keep: bool) -> tuple[int, bytes, bool]:
    """Read at most `cap` bytes; returns (bytes read, the body if `keep`, whether it was cut short)."""
    chunks: list[bytes] = []
    nbytes = 0
    while nbytes < cap:
        chunk = await content.read(cap - nbytes)
        if not chunk:
            return nbytes, b"".join(chunks), False
        nbytes += len(chunk)
        if keep:
            chunks.append(chunk)
    return nbytes, b"".join(chunks), not content.at_eof()


def _peer_cert(resp: aiohttp.ClientResponse) -> bytes | None:
    # After a redirect to plain http the final hop has no certificate; judge the last TLS hop.
    for hop in (resp, *reversed(resp.history)):
        der = getattr(hop, "peer_cert", None)
        if der is not None:
            return der
    return None


def _expected(endpoint: EndpointSpec) -> str:
    codes = endpoint.expected_status_code
    if codes is None:
        return "2xx or 3xx"
    if isinstance(codes, int):
        return str(codes)
    return ", ".join(map(str, codes))


def _classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map an aiohttp / socket exception to an error kind and a short readable text."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or str(cert_error)
        return (
            ErrorKind.TLS,
            f"TLS certificate verification failed for {host_port(exc.host, exc.port)}: {reason}",
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return ErrorKind.TLS, f"TLS handshake with {host_port(exc.host, exc.port)} failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return ErrorKind.TLS, "TLS certificate fingerprint mismatch"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS, f"cannot resolve {exc.host}: {describe_os_error(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        kind = classify_os_error(exc.os_error)
        where = host_port(exc.host, exc.port)
        if kind is ErrorKind.REFUSED:
            return kind, f"connection refused by {where}"
        return kind, f"cannot connect to {where}: {describe_os_error(exc.os_error)}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return (
            ErrorKind.PROTOCOL,
            f"more than {MAX_REDIRECTS} redirects (last to {target_text(str(exc.request_info.real_url))})",
        )
    if isinstance(exc, aiohttp.ClientResponseError):
        # Raised by the response parser: garbage instead of a status line, malformed headers.
        # (ProbeRequest raises the same error when the parser failed before the request went out.)
        return ErrorKind.PROTOCOL, f"invalid HTTP response: {target_text(_one_line(exc.message))}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return ErrorKind.CONNECTION, "server closed the connection without a complete response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        reason = target_text(
            _one_line(cause.message) if isinstance(cause, HttpProcessingError) else _one_line(str(exc))
        )
        if isinstance(cause, ContentEncodingError):
            return ErrorKind.PROTOCOL, f"invalid response body: {reason}"
        return ErrorKind.CONNECTION, f"connection lost while reading the body: {reason}"
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.RedirectClientError):
        return ErrorKind.PROTOCOL, f"invalid redirect target: {target_text(str(exc))}"
    if isinstance(exc, OSError):
        return classify_os_error(exc), describe_os_error(exc)
    return ErrorKind.CONNECTION, target_text(str(exc)) or type(exc).__name__


def _one_line(message: str) -> str:
    # aiohttp's parser errors span several lines and point at the offending byte with a caret.
    return " ".join(part for line in message.splitlines() if (part := line.strip()) and part != "^")
