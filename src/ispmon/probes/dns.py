"""DNS probe: one query to one resolver, sent and read by this module, checked against the endpoint.

The check passes when the response code equals `expected_rcode` (NOERROR by default) and, for
NOERROR, every `expected_answers` entry is among the answers (NOERROR with no answer records is
NODATA: UP unless answers are expected).

Answers are compared in a normalised text form, built the same way for the records received and
for the endpoint's `expected_answers`: white space collapsed, lower-case, trailing dot stripped
from each word (except TXT, see below). Only records of the queried type count; the CNAME records
of a chain leading to them are skipped. Per record type:

* A, AAAA          the address in canonical form (``192.0.2.10``, ``2001:db8::1``)
* CNAME, NS, PTR   the target name (``mail.example.com``)
* MX               ``"<preference> <exchange>"`` (``10 mail.example.com``); an expected entry
                   without the preference matches the exchange alone
* SRV              ``"<priority> <weight> <port> <target>"``; the target alone also matches
* SOA              ``"<mname> <rname> <serial> <refresh> <retry> <expire> <minimum>"``; the
                   mname alone also matches
* CAA              ``"<flags> <tag> <value>"`` (``0 issue letsencrypt.org``)
* NAPTR            ``'<order> <preference> "<flags>" "<service>" "<regexp>" <replacement>'``
* TXT              the record's strings joined without separator, case and dots kept (tokens
                   and keys are case-sensitive); surrounding double quotes of an expected entry
                   are ignored

The exchange: a query with RD and EDNS0 (1232-byte payload, as c-ares and the DNS Flag Day 2020
advice have it) over a connected UDP socket of its own, so an ICMP port unreachable is seen as
REFUSED at once; a truncated answer is asked again over TCP; a FORMERR without an OPT record (a
resolver that predates EDNS) is asked again without EDNS, as c-ares does. Datagrams that are not
the answer to this query (another ID or question: a late answer to an earlier query on a reused
port) are ignored, as stub resolvers do; one that cannot be parsed is a malformed response.
dnspython is the codec (`dns.message`); the UDP exchange is an asyncio DatagramProtocol and the TCP
one an asyncio stream here (see `_udp` and `_tcp` for why not dnspython's).

Why not a resolver library (aiodns / c-ares, used until issue 9): a monitor must ask the resolver
every time and wait exactly as long as the endpoint says, and keep nothing between checks. c-ares
caches answers for their TTL (1.31+), and adapts its per-try wait to the server's recent latency:
after three answers it gives up after max(250 ms, 5 x their average), whatever the configured
timeout (ares_metrics.c: "always-on"; ARES_OPT_MAXTIMEOUTMS only caps it), so a resolver that
usually answers in 1 ms and once in 600 ms was a false TIMEOUT against a 5 s timeout. Each
channel also holds an event thread and descriptors, and one per (resolver, port, timeout) was
never freed. Here every check owns its sockets for the length of the check and nothing else:
no channel, no thread, no answer cache (only our own queries are built once, `_template`), and
one deadline, the endpoint's timeout, for the whole check (resolving a resolver given by name,
UDP, and a TCP retry after truncation).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import ipaddress
import secrets
import socket
from time import perf_counter
from typing import TYPE_CHECKING, Any

import dns.exception
import dns.inet
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from ispmon.models import ErrorKind, ProbeResult
from ispmon.probes.base import up_or_slow
from ispmon.probes.oserrors import classify_os_error, describe_os_error, resource_errno
from ispmon.probes.resources import resource_failure
from ispmon.probes.safetext import target_text

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext

# The EDNS0 UDP payload size we offer (what c-ares and BIND send; avoids IP fragmentation).
_EDNS_PAYLOAD = 1232
_ALIAS_TYPES = frozenset({"MX", "SRV", "SOA"})  # types whose expected entry may be just the host


class _Failed(Exception):
    """The exchange failed in a way that is the resolver's: (kind, text) for the result."""

    def __init__(self, kind: ErrorKind, text: str) -> None:
        super().__init__(text)
        self.kind = kind
        self.text = text


class _Ours(Exception):
    """The check could not be made for want of a resource of ours (an errno name, see
    `ispmon.probes.resources`): UNKNOWN, never the resolver's DOWN."""

    def __init__(self, resource: str, text: str) -> None:
        super().__init__(text)
        self.resource = resource
        self.text = text


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    target = endpoint.target
    rrtype = target.rrtype or "A"
    qname = target.qname or ""
    port = target.port or 53
    start = perf_counter()
    try:
        # The one deadline of the check: the endpoint's timeout, whatever the resolver did before.
        async with asyncio.timeout(timeout):
            where = await _address(target.host, port)
            start = perf_counter()  # the response time is the resolver's, not our own look-up's
            response = await _ask(qname, rrtype, where, port)
    except TimeoutError:
        return ProbeResult.down(ErrorKind.TIMEOUT, f"no answer from resolver within {timeout:g} s")
    except _Ours as exc:
        return resource_failure(exc.resource, exc.text)
    except _Failed as exc:
        waited = (perf_counter() - start) * 1000.0
        if exc.kind is ErrorKind.DNS:
            return ProbeResult.down(exc.kind, exc.text)
        return ProbeResult.down(exc.kind, f"{exc.text} after {waited:.0f} ms")
    elapsed = (perf_counter() - start) * 1000.0

    rcode = dns.rcode.to_text(response.rcode())
    answers: list[str] = []
    ttl_min: int | None = None
    qtype = dns.rdatatype.from_text(rrtype)
    for rrset in response.answer:
        if rrset.rdtype == qtype and rrset.rdclass == dns.rdataclass.IN:
            answers.extend(_format(rrtype, rdata) for rdata in rrset)
            ttl_min = rrset.ttl if ttl_min is None else min(ttl_min, rrset.ttl)
    answers.sort()  # resolvers rotate record order; a stable order keeps stored details comparable
    details: dict[str, Any] = {"rcode": rcode, "answers": answers, "ttl_min": ttl_min}

    if rcode != endpoint.expected_rcode:
        return ProbeResult.down(
            ErrorKind.RCODE, f"expected {endpoint.expected_rcode}, got {rcode}", elapsed, **details
        )
    if endpoint.expected_answers and rcode == "NOERROR":
        missing = _missing(rrtype, endpoint.expected_answers, answers)
        if missing:
            got = target_text(", ".join(answers)) if answers else "no answers"  # TXT data is anything
            return ProbeResult.down(
                ErrorKind.UNEXPECTED_ANSWER,
                f"expected {', '.join(missing)} among the answers; got {got}",
                elapsed,
                **details,
            )
    return up_or_slow(endpoint, elapsed, details, "answered in")


async def _address(host: str, port: int) -> str:
    """The resolver's address: `host` itself when it is one, else what the system resolver says."""
    if dns.inet.is_address(host):
        return host
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise _Failed(ErrorKind.DNS, f"cannot resolve the resolver {host}: {describe_os_error(exc)}") from None
    if not infos:
        raise _Failed(ErrorKind.DNS, f"cannot resolve the resolver {host}: no address")
    return str(infos[0][4][0])


async def _ask(qname: str, rrtype: str, where: str, port: int) -> dns.message.Message:
    """The resolver's response: over UDP, over TCP after truncation, without EDNS if it needs that."""
    query, wire = _query(qname, rrtype, True)
    response = await _exchange(query, wire, where, port)
    if response.rcode() == dns.rcode.FORMERR and response.edns < 0:
        # No OPT record in a FORMERR: the resolver does not know EDNS (RFC 6891 section 7).
        query, wire = _query(qname, rrtype, False)
        response = await _exchange(query, wire, where, port)
    return response


def _query(qname: str, rrtype: str, edns: bool) -> tuple[dns.message.Message, bytes]:
    """A query with a fresh random ID, and its wire form."""
    template, wire = _template(qname, rrtype, edns)
    query = copy.copy(template)  # shares the (read-only) question; only the ID differs
    query.id = secrets.randbits(16)
    return query, query.id.to_bytes(2, "big") + wire[2:]


@functools.lru_cache(maxsize=4096)
def _template(qname: str, rrtype: str, edns: bool) -> tuple[dns.message.Message, bytes]:
    """Our own query for (name, type), built once: making and encoding it took ~180 µs a check.
    Only the question is kept here, never an answer."""
    if edns:
        query = dns.message.make_query(qname, rrtype, use_edns=0, payload=_EDNS_PAYLOAD)
    else:
        query = dns.message.make_query(qname, rrtype, use_edns=False)
    return query, query.to_wire()


async def _exchange(
    query: dns.message.Message, wire: bytes, where: str, port: int
) -> dns.message.Message:
    over = "UDP"
    try:
        response = await _udp(query, wire, where, port)
        if response is not None:
            return response
        over = "TCP, after a truncated UDP answer"
        return await _tcp(query, wire, where, port)
    except OSError as exc:
        kind = classify_os_error(exc)
        if kind is ErrorKind.INTERNAL:  # this host is out of descriptors, buffers or memory
            raise _Ours(resource_errno(exc) or "os", f"resolver not asked ({over}: {describe_os_error(exc)})") from None
        if kind is ErrorKind.REFUSED:
            raise _Failed(kind, f"resolver refused the query ({over})") from None
        raise _Failed(kind, f"resolver error ({over}: {describe_os_error(exc)})") from None
    except EOFError:
        raise _Failed(ErrorKind.CONNECTION, f"resolver closed the connection ({over})") from None
    except dns.exception.DNSException as exc:
        # dnspython's parser (FormError and its kin) and its TCP exchange (BadResponse) raise these.
        raise _Failed(ErrorKind.PROTOCOL, f"malformed DNS response ({over}: {exc})") from None


async def _tcp(query: dns.message.Message, wire: bytes, where: str, port: int) -> dns.message.Message:
    """The response to `query` over TCP (RFC 1035 4.2.2: each message after a 2-byte length).

    Not dns.asyncquery.tcp: its socket's close() returns before the transport lets go of the
    descriptor (a loop iteration later), so the socket outlived the check. Here the check waits
    for that, as `_udp` does.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in where else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (where, port))  # an address: no resolver thread hop (see _udp)
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(len(wire).to_bytes(2, "big") + wire)
        await writer.drain()
        size = int.from_bytes(await reader.readexactly(2), "big")  # IncompleteReadError is an EOFError
        response = dns.message.from_wire(await reader.readexactly(size), ignore_trailing=True)
        if not query.is_response(response):
            raise dns.query.BadResponse
        return response
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            # Shielded: a second cancellation must not skip it (the descriptor would outlive the check).
            await asyncio.shield(writer.wait_closed())


async def _udp(
    query: dns.message.Message, wire: bytes, where: str, port: int
) -> dns.message.Message | None:
    """The UDP response to `query` (sent as `wire`), or None when it was truncated (ask again over TCP).

    Not dns.asyncquery.udp: it fails on the first datagram that is not the answer (or, with
    ignore_errors, also waits past malformed ones), and its socket costs a thread hop (below).
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET6 if ":" in where else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # Connected, so the kernel hands us only the resolver's datagrams, and its ICMP errors (a
        # closed port is REFUSED at once). Connected here rather than by create_datagram_endpoint's
        # remote_addr: uvloop resolves that, even an address, in its thread pool (~3 x the CPU).
        sock.connect((where, port))
        transport, exchange = await loop.create_datagram_endpoint(lambda: _Exchange(query, loop), sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        transport.sendto(wire)
        return await exchange.answer
    finally:
        transport.close()
        # Both loops close the descriptor a loop iteration later, once connection_lost has run:
        # wait for that, so the socket is gone when the check returns (else it outlived the
        # check, and a retry held two). Shielded: a second cancellation must not skip it.
        await asyncio.shield(exchange.closed)


class _Exchange(asyncio.DatagramProtocol):
    """Waits on one connected UDP socket for the answer to one query."""

    def __init__(self, query: dns.message.Message, loop: asyncio.AbstractEventLoop) -> None:
        self.query = query
        # The response; None when it was truncated; an exception for a failure.
        self.answer: asyncio.Future[dns.message.Message | None] = loop.create_future()
        # Done when the transport has let go of the socket (its descriptor is closed by then).
        self.closed: asyncio.Future[None] = loop.create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.answer.done():
            return
        try:
            response = dns.message.from_wire(data, ignore_trailing=True, raise_on_truncation=True)
        except dns.message.Truncated as exc:
            if self.query.is_response(exc.message()):
                self.answer.set_result(None)
            return
        except dns.exception.DNSException as exc:  # unparsable: a malformed response
            self.answer.set_exception(exc)
            return
        if self.query.is_response(response):
            self.answer.set_result(response)
        # Otherwise not ours (an earlier query's late answer on a reused port): keep waiting.

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or EOFError("socket closed"))
        if not self.closed.done():
            self.closed.set_result(None)


def _normalise(text: str, txt: bool = False) -> str:
    if txt:
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
        return text
    return " ".join(word.rstrip(".") if len(word) > 1 else word for word in text.lower().split())


def _format(rrtype: str, data: Any) -> str:
    """The normalised text of one answer record (see the module docstring)."""
    if rrtype == "A" or rrtype == "AAAA":
        return str(ipaddress.ip_address(data.address))
    if rrtype == "TXT":
        return b"".join(data.strings).decode("utf-8", "replace")
    if rrtype in ("CNAME", "NS", "PTR"):
        text = data.target.to_text()
    elif rrtype == "MX":
        text = f"{data.preference} {data.exchange}"
    elif rrtype == "SRV":
        text = f"{data.priority} {data.weight} {data.port} {data.target}"
    elif rrtype == "SOA":
        numbers = f"{data.serial} {data.refresh} {data.retry} {data.expire} {data.minimum}"
        text = f"{data.mname} {data.rname} {numbers}"
    elif rrtype == "CAA":
        text = f"{data.flags} {_text(data.tag)} {_text(data.value)}"
    elif rrtype == "NAPTR":
        text = (
            f'{data.order} {data.preference} "{_text(data.flags)}" "{_text(data.service)}" '
            f'"{_text(data.regexp)}" {data.replacement}'
        )
    else:
        text = data.to_text()
    return _normalise(text)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _expected_form(rrtype: str, expected: str) -> str:
    if rrtype == "A" or rrtype == "AAAA":
        try:
            return str(ipaddress.ip_address(expected.strip()))
        except ValueError:
            pass
    return _normalise(expected, txt=rrtype == "TXT")


def _missing(rrtype: str, expected: list[str], answers: list[str]) -> list[str]:
    """The expected entries (as given) that none of the answers matches."""
    have = set(answers)
    if rrtype in _ALIAS_TYPES:
        # MX/SRV: the host is the last word; SOA: the mname is the first.
        index = 0 if rrtype == "SOA" else -1
        have.update(answer.split()[index] for answer in answers if answer)
    return [entry for entry in expected if _expected_form(rrtype, entry) not in have]
