"""DNS probe: one query to one resolver through aiodns 4 (c-ares), checked against the endpoint.

The check passes when the response code equals `expected_rcode` (NOERROR by default) and, for
NOERROR, every `expected_answers` entry is among the answers. c-ares reports the response code as
an error number; `_RCODES` maps them back (NOERROR with an empty answer is c-ares' ENODATA).

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

Two c-ares behaviours matter for a monitor and are handled here:

* c-ares >= 1.31 caches answers for their TTL (up to an hour) unless ``qcache_max_ttl`` is 0, and
  pycares 5 has no argument for that: a cached answer would report a dead resolver as UP. Each
  resolver's channel is therefore rebuilt once, at creation, from its own saved options with the
  cache disabled (`_rebuild_channel`).
* c-ares adapts its per-try wait to the resolver's recent latency: after three answers it gives up
  after max(250 ms, 5 x the average), whatever `timeout` says (ares_metrics.c; this cannot be
  turned off). With ``tries=1`` a resolver that suddenly answers far slower than usual is reported
  as a TIMEOUT before `timeout`; the error text gives the time actually waited.
"""

from __future__ import annotations

import asyncio
import ipaddress
from time import perf_counter
from typing import TYPE_CHECKING, Any

import aiodns
import pycares
from aiodns.error import DNSError

from ispmon.models import ErrorKind, ProbeResult
from ispmon.probes.base import up_or_slow
from ispmon.probes.safetext import target_text

if TYPE_CHECKING:
    from ispmon.availability.endpoints import EndpointSpec
    from ispmon.probes.base import ProbeContext

# ares.h option bits that pycares 5 does not export.
_ARES_OPT_MAXTIMEOUTMS = 1 << 20
_ARES_OPT_QUERY_CACHE = 1 << 21

# c-ares status -> the DNS response code it stands for (ares_query.c maps rcodes to these).
_RCODES: dict[int, str] = {
    pycares.errno.ARES_ENODATA: "NOERROR",  # NOERROR with no answer records (NODATA)
    pycares.errno.ARES_EFORMERR: "FORMERR",
    pycares.errno.ARES_ESERVFAIL: "SERVFAIL",
    pycares.errno.ARES_ENOTFOUND: "NXDOMAIN",
    pycares.errno.ARES_ENOTIMP: "NOTIMP",
    pycares.errno.ARES_EREFUSED: "REFUSED",
}
# c-ares statuses that mean no usable response arrived.
_TRANSPORT_ERRORS: dict[int, tuple[ErrorKind, str]] = {
    pycares.errno.ARES_ETIMEOUT: (ErrorKind.TIMEOUT, "no answer from resolver"),
    # UDP port unreachable, or TCP refused (c-ares retries over TCP after a truncated UDP answer).
    pycares.errno.ARES_ECONNREFUSED: (ErrorKind.REFUSED, "resolver refused the connection"),
    pycares.errno.ARES_EBADRESP: (ErrorKind.PROTOCOL, "malformed DNS response"),
    pycares.errno.ARES_EOF: (ErrorKind.CONNECTION, "resolver closed the connection"),
    pycares.errno.ARES_ECANCELLED: (ErrorKind.CONNECTION, "query cancelled (resolver closed)"),
    pycares.errno.ARES_EDESTRUCTION: (ErrorKind.CONNECTION, "query cancelled (resolver closed)"),
}

_QTYPES: dict[str, int] = {name: getattr(pycares, f"QUERY_TYPE_{name}") for name in aiodns.query_type_map}
_ALIAS_TYPES = frozenset({"MX", "SRV", "SOA"})  # types whose expected entry may be just the host


async def probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
    target = endpoint.target
    rrtype = target.rrtype or "A"
    resolver = _resolver(ctx, target.host, target.port or 53, timeout)
    start = perf_counter()
    try:
        # Our own deadline as well: c-ares' timer is adaptive and capped at 5 s, and its answer
        # arrives through another thread; the scheduler's hard limit must never be what fires.
        async with asyncio.timeout(timeout):
            result = await resolver.query_dns(target.qname, rrtype)
        rcode = "NOERROR"
    except TimeoutError:
        return ProbeResult.down(ErrorKind.TIMEOUT, f"no answer from resolver within {timeout:g} s")
    except DNSError as exc:
        code = exc.args[0] if exc.args else -1
        rcode_or_none = _RCODES.get(code)
        if rcode_or_none is None:
            kind, text = _TRANSPORT_ERRORS.get(code, (ErrorKind.CONNECTION, "resolver error"))
            waited = perf_counter() - start
            detail = exc.args[1] if len(exc.args) > 1 else "unknown"
            return ProbeResult.down(kind, f"{text} after {waited * 1000:.0f} ms (c-ares: {detail})")
        rcode, result = rcode_or_none, None
    elapsed = (perf_counter() - start) * 1000.0

    answers: list[str] = []
    ttl_min: int | None = None
    if result is not None:
        qtype = _QTYPES[rrtype]
        for record in result.answer:
            if record.type == qtype:
                answers.append(_format(rrtype, record.data))
                ttl_min = record.ttl if ttl_min is None else min(ttl_min, record.ttl)
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


def _resolver(ctx: ProbeContext, host: str, port: int, timeout: float) -> aiodns.DNSResolver:
    """The shared resolver for (host, port, timeout): one c-ares channel (and event thread) each."""
    key: Any = (host, port, round(timeout, 3))
    resolver: aiodns.DNSResolver | None = ctx.resolvers.get(key)
    if resolver is None:
        resolver = aiodns.DNSResolver(
            nameservers=[host], udp_port=port, tcp_port=port, timeout=timeout, tries=1
        )
        try:
            _rebuild_channel(resolver, timeout)
        except Exception:
            resolver._cleanup()
            raise
        ctx.resolvers[key] = resolver
    return resolver


def _rebuild_channel(resolver: aiodns.DNSResolver, timeout: float) -> None:
    """Replace the resolver's c-ares channel by a copy of it without query cache.

    pycares 5 exposes neither ARES_OPT_QUERY_CACHE nor ARES_OPT_MAXTIMEOUTMS, so the channel's
    options are saved (ares_save_options), amended and used for a new channel. This uses pycares
    internals (`Channel._channel`, `Channel._lock`, the cffi module); the DNS integration tests
    fail if a pycares upgrade changes them. The max timeout stops c-ares from waiting longer than
    we do (its adaptive per-try wait can otherwise grow up to 5 s).
    """
    from pycares import _cares  # type: ignore[attr-defined]

    ffi, lib = _cares.ffi, _cares.lib
    channel = resolver._channel
    servers = channel.servers
    with channel._lock:
        old = channel._channel
        if old is None:
            raise RuntimeError("c-ares channel already closed")
        options = ffi.new("struct ares_options *")
        optmask = ffi.new("int *")
        if lib.ares_save_options(old[0], options, optmask) != lib.ARES_SUCCESS:
            raise RuntimeError("ares_save_options failed")
        try:
            options.qcache_max_ttl = 0
            options.maxtimeout = max(1, int(timeout * 1000))
            new = ffi.new("ares_channel *")
            mask = optmask[0] | _ARES_OPT_QUERY_CACHE | _ARES_OPT_MAXTIMEOUTMS
            status = lib.ares_init_options(new, options, mask)
        finally:
            lib.ares_destroy_options(options)
        if status != lib.ARES_SUCCESS:
            raise RuntimeError(f"ares_init_options failed: {pycares.errno.strerror(status)}")
        channel._channel = new
        # Nothing was ever queried on the old channel, so it can go right away.
        lib.ares_destroy(old[0])
    channel.servers = servers  # saved options keep neither the ports nor IPv6 servers


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
        return str(ipaddress.ip_address(data.addr))
    if rrtype == "TXT":
        raw = data.data
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if rrtype == "CNAME":
        text = data.cname
    elif rrtype == "NS":
        text = data.nsdname
    elif rrtype == "PTR":
        text = data.dname
    elif rrtype == "MX":
        text = f"{data.priority} {data.exchange}"
    elif rrtype == "SRV":
        text = f"{data.priority} {data.weight} {data.port} {data.target}"
    elif rrtype == "SOA":
        numbers = f"{data.serial} {data.refresh} {data.retry} {data.expire} {data.minimum}"
        text = f"{data.mname} {data.rname} {numbers}"
    elif rrtype == "CAA":
        text = f"{data.critical} {data.tag} {data.value}"
    elif rrtype == "NAPTR":
        text = (
            f'{data.order} {data.preference} "{data.flags}" "{data.service}" "{data.regexp}" '
            f"{data.replacement or '.'}"
        )
    else:
        text = str(data)
    return _normalise(text)


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
