"""The probe contract, the protocol table, shared resources and the retry wrapper.

A probe is ``async def probe(endpoint, timeout, ctx) -> ProbeResult``. It speaks its protocol and
classifies what it saw; it never raises for the target's behaviour. The scheduler (through
`run_check`) owns the hard timeout, retries and the time budget of a whole check.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ispmon.models import ErrorKind, ProbeResult, Protocol, Status
from ispmon.probes import patterns
from ispmon.probes.coarse_timer import HardTimeout
from ispmon.probes.icmpmux import SharedIcmpSocket
from ispmon.probes.oserrors import resource_errno
from ispmon.probes.patterns import CheckBudget, PatternOutcome, PatternWorkers, check_budget, current_budget
from ispmon.probes.resources import EVENT_LOOP, PATTERN_WORKERS, judge, resource_failure
from ispmon.probes.safetext import ERROR_TEXT_LIMIT, target_text

if TYPE_CHECKING:
    import aiohttp

    from ispmon.availability.endpoints import EndpointSpec

log = structlog.get_logger(__name__)

ProbeFn = Callable[["EndpointSpec", float, "ProbeContext"], Awaitable[ProbeResult]]

# protocol -> module under ispmon.probes that defines `probe`. Resolved lazily so that importing the
# table does not import every protocol's dependencies (the CLI's `version` stays instant).
_MODULES: dict[Protocol, str] = {
    Protocol.HTTP: "http",
    Protocol.HTTPS: "http",
    Protocol.TCP: "tcp",
    Protocol.UDP: "udp",
    Protocol.DNS: "dns",
    Protocol.ICMP: "icmp",
}


class _ProbeTable(dict[Protocol, ProbeFn]):
    def __missing__(self, key: Protocol) -> ProbeFn:
        module = importlib.import_module(f"ispmon.probes.{_MODULES[key]}")
        fn: ProbeFn = module.probe
        self[key] = fn
        return fn


PROBES: dict[Protocol, ProbeFn] = _ProbeTable()


def _ping_group_allows_us() -> bool:
    """True when net.ipv4.ping_group_range covers one of our groups (unprivileged ICMP sockets work)."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as fh:
            low, high = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        return False
    return any(low <= gid <= high for gid in {os.getegid(), *os.getgroups()})


def icmp_privileged_default() -> bool:
    """Prefer unprivileged (datagram) ICMP sockets whenever the kernel allows them, even as root:
    every raw ICMP socket receives every echo reply on the host, so with many probes in flight raw
    sockets cost O(in-flight) per packet (measured: 3.5 ms CPU per probe at 100 in flight, against
    158 µs with datagram sockets). Raw sockets need root or CAP_NET_RAW."""
    if _ping_group_allows_us():
        return False
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 13))  # CAP_NET_RAW is bit 13
    except OSError:
        pass
    return False


def default_pattern_workers() -> int:
    """One pattern thread per core we may run on, less one kept for the event loop (1 to 4): a
    burst of catastrophic patterns then never competes with the loop for the last core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 2
    return max(1, min(4, cores - 1))


@dataclass
class ProbeContext:
    """Resources probes share for the life of the daemon (one HTTP session, ...).

    Nothing for DNS: each DNS check owns its sockets for the length of the check (probes/dns.py
    says why), so endpoints coming, going and changing their timeout leave nothing behind.
    """

    icmp_privileged: bool = field(default_factory=icmp_privileged_default)
    # Largest body read from an HTTP response / TCP stream before we stop reading (endless bodies).
    max_body_bytes: int = 1 << 20
    # The regex time limit for expected_response_pattern: seconds (of the worker's CPU time) per
    # check, shared by all its attempts.
    pattern_timeout: float = 0.1
    _http: aiohttp.ClientSession | None = None
    # Threads for expected_response_pattern searches (off the event loop; see ispmon.probes.patterns),
    # and how long one check may wait in all for a free one before its result says we are saturated
    # (generous: regex's limit counts CPU time, so on a busy host a search takes longer than that).
    pattern_workers: int = field(default_factory=default_pattern_workers)
    pattern_wait: float = 5.0
    _patterns: PatternWorkers | None = None
    # endpoint id -> the probe bug last logged for it, so a bug is logged (with its traceback)
    # once per endpoint until that endpoint's result changes, not once per check.
    _bugs_logged: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    # IP version -> the ICMP socket all ICMP probes share (see ispmon.probes.icmpmux).
    _icmp: dict[int, SharedIcmpSocket] = field(default_factory=dict)

    def icmp_socket(self, version: int) -> SharedIcmpSocket:
        """The shared ICMP socket for IPv4 or IPv6, opened on first use (raises icmplib's errors)."""
        sock = self._icmp.get(version)
        if sock is None or sock.loop is not asyncio.get_running_loop():
            if sock is not None:
                sock.close()
            sock = self._icmp[version] = SharedIcmpSocket(version, self.icmp_privileged)
        return sock

    def http_session(self) -> aiohttp.ClientSession:
        """One session, fresh connection per check (we measure availability, not a warm pool)."""
        if self._http is None:
            import aiohttp

            from ispmon.probes.httpclient import ProbeConnector, ProbeRequest

            connector = ProbeConnector(force_close=True, limit=0, ttl_dns_cache=60)
            self._http = aiohttp.ClientSession(
                connector=connector,
                request_class=ProbeRequest,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "ispmon/0.1 (+availability check)"},
            )
        return self._http

    def pattern_pool(self) -> PatternWorkers:
        """The pattern search threads, started on first use (most endpoints have no pattern)."""
        if self._patterns is None:
            self._patterns = PatternWorkers(self.pattern_workers)
        return self._patterns

    async def close(self) -> None:
        for sock in self._icmp.values():
            sock.close()
        self._icmp.clear()
        if self._patterns is not None:
            self._patterns.close()
            self._patterns = None
        if self._http is not None:
            await self._http.close()
            self._http = None


def pattern_timeout_result(ctx: ProbeContext, rt: float | None, details: dict[str, Any]) -> ProbeResult:
    return ProbeResult(
        Status.DOWN,
        rt,
        ErrorKind.PATTERN_TIMEOUT,
        f"expected_response_pattern took longer than {ctx.pattern_timeout:g} s (the check's budget)",
        details,
    )


def pattern_busy_result(ctx: ProbeContext, rt: float | None, details: dict[str, Any]) -> ProbeResult:
    return resource_failure(
        PATTERN_WORKERS,
        f"no pattern worker became free within {ctx.pattern_wait:g} s ({ctx.pattern_workers} busy)",
        rt,
        details,
    )


async def search_pattern(ctx: ProbeContext, pattern: Any, data: bytes | bytearray) -> PatternOutcome:
    """Search `data` in a pattern worker thread, within the current check's pattern budget."""
    return await patterns.search(ctx.pattern_pool(), pattern, data, ctx.pattern_timeout, ctx.pattern_wait)


async def pattern_failure(
    endpoint: EndpointSpec,
    data: bytes,
    ctx: ProbeContext,
    rt: float | None,
    details: dict[str, Any],
    where: str,
) -> ProbeResult | None:
    """DOWN when the endpoint's expected_response_pattern is not found in `data`; None when it
    matches or is unset. The search runs off the event loop under the check's time budget
    (`search_pattern`), so a catastrophic pattern costs other endpoints nothing."""
    pattern = endpoint.pattern
    if pattern is None:
        return None
    outcome = await search_pattern(ctx, pattern, data)
    if outcome is PatternOutcome.MATCH:
        return None
    if outcome is PatternOutcome.TIMEOUT:
        return pattern_timeout_result(ctx, rt, details)
    if outcome is PatternOutcome.BUSY:
        return pattern_busy_result(ctx, rt, details)
    return ProbeResult(Status.DOWN, rt, ErrorKind.PATTERN_MISMATCH, f"pattern not found in {where}", details)


def up_or_slow(endpoint: EndpointSpec, rt: float, details: dict[str, Any], what: str = "took") -> ProbeResult:
    """UP, or DEGRADED/slow when `rt` is above the endpoint's degraded_response_time_ms."""
    limit = endpoint.degraded_response_time_ms
    if limit is not None and rt > limit:
        return ProbeResult(Status.DEGRADED, rt, ErrorKind.SLOW, f"{what} {rt:.1f} ms > {limit:g} ms", details)
    return ProbeResult(Status.UP, rt, details=details)


def elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


# Slack the hard limit gives a probe beyond its own `timeout`, so the probe's own, more specific
# timeout error wins when it fires first.
HARD_LIMIT_SLACK = 0.25
# The hard limit fired this late: the loop, not the probe, held the attempt up. Tighter than
# LATE_TIMER_TOLERANCE because the probe's timer, due HARD_LIMIT_SLACK earlier, was later still.
HARD_LIMIT_LATE = 0.05


async def run_attempt(endpoint: EndpointSpec, ctx: ProbeContext, timeout: float) -> ProbeResult:
    """One attempt under a hard timeout. Never raises for anything but cancellation.

    * An exception out of a probe is a bug in ispmon: UNKNOWN/internal, logged with its traceback.
    * A failure that is ours, not the target's, is UNKNOWN/internal with ``details["resource"]``
      (`ispmon.probes.resources.judge` has the rule, including which timeouts are ours): this
      host out of descriptors or buffers, a timer that fired late because the loop was starved,
      no pattern worker free. The outage state machine ignores UNKNOWN, so none of these pages.
    * The hard limit (`timeout` + HARD_LIMIT_SLACK, plus what pattern work may take) only fires
      when the probe's own timer did not end the attempt: our loop or our code, never the target.

    Pattern work is ours (it happens after, or with the target's clock stopped during, the
    exchange). Called on its own, the attempt is the whole check and has the whole pattern budget.
    """
    budget = current_budget()
    if budget is None:
        with check_budget(ctx.pattern_timeout, ctx.pattern_wait) as own:
            return await _attempt(endpoint, ctx, timeout, own)
    budget.attempt_spent = 0.0
    return await _attempt(endpoint, ctx, timeout, budget)


async def _attempt(
    endpoint: EndpointSpec, ctx: ProbeContext, timeout: float, budget: CheckBudget
) -> ProbeResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    hard_limit = timeout + HARD_LIMIT_SLACK
    if endpoint.pattern is not None:
        hard_limit += ctx.pattern_wait + ctx.pattern_timeout
    limit: HardTimeout | None = None
    try:
        fn = PROBES[endpoint.protocol]  # (the first use imports the module: that can fail too)
        # The clocks start with the probe, after the import: importing dnspython on the first DNS
        # check blocks for 70-350 ms before the probe's own timer is even set, and counting it
        # made a target's on-time timeout look like a starved loop (a false UNKNOWN).
        started = loop.time()
        # A shared coarse timer (ispmon.probes.coarse_timer): one asyncio.timeout per attempt was
        # the costliest line of the per-check bookkeeping, for a limit that almost never fires.
        limit = HardTimeout(started + hard_limit)
        async with limit:
            result = await fn(endpoint, timeout, ctx)
    except TimeoutError:
        # Ours either way. Late, the loop was starved: the probe's own timer, due 0.25 s earlier,
        # could not run either. On time, the probe overran its own timer: a bug. The limit's
        # granule fired when it did, up to GRANULE after the limit itself: late is counted from it.
        due = limit.fires_at if limit is not None and limit.expired() else started + hard_limit
        late = loop.time() - due
        if late > HARD_LIMIT_LATE:
            _new_bug(ctx, endpoint, None)
            return resource_failure(
                EVENT_LOOP,
                f"no result within the {hard_limit:g} s hard limit, which fired {late * 1000:.0f} ms late"
                " (event loop starved)",
            )
        # The probe's own timer should have ended it by now: a probe that overran is our bug.
        if _new_bug(ctx, endpoint, ("overran",)):
            log.error(
                "probe_overran",
                endpoint_id=endpoint.id,
                protocol=endpoint.protocol.value,
                hard_limit=hard_limit,
            )
        return ProbeResult(
            Status.UNKNOWN,
            None,
            ErrorKind.INTERNAL,
            f"the {endpoint.protocol.value} probe did not end within its {hard_limit:g} s hard limit",
            {"hard_limit": True},
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        ours = resource_errno(exc)
        if ours is not None:  # e.g. importing the probe's module needed a descriptor
            _new_bug(ctx, endpoint, None)
            return resource_failure(ours, f"the {endpoint.protocol.value} probe could not run: {exc}")
        # A bug in the probe: record it, keep the daemon alive.
        if _new_bug(ctx, endpoint, _crash_signature(exc)):
            log.error(
                "probe_crashed", endpoint_id=endpoint.id, protocol=endpoint.protocol.value, exc_info=True
            )
        # UNKNOWN, not DOWN: our bug says nothing about the target, so it must not open an outage
        # against a customer's service (the state machine ignores UNKNOWN); the log line above (once
        # per endpoint until its result changes) and the result's error kind make it visible.
        return ProbeResult(
            Status.UNKNOWN,
            None,
            ErrorKind.INTERNAL,
            f"internal error in {endpoint.protocol.value} probe: {target_text(repr(exc))}",
        )
    _new_bug(ctx, endpoint, None)
    result = judge(result, overrun=loop.time() - started - timeout - budget.attempt_spent)
    if result.error is not None:
        # Probes escape and cap what they quote from the target; this catches any text that
        # slipped through (an exception's message, a library's wording) before it is stored,
        # logged or sent.
        result.error = target_text(result.error, ERROR_TEXT_LIMIT)
    return result


def _crash_signature(exc: BaseException) -> tuple[Any, ...]:
    """The same bug, however its message varies: the exception type and where it was raised."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else ()
    return ("crashed", type(exc).__qualname__, *where)


def _new_bug(ctx: ProbeContext, endpoint: EndpointSpec, bug: tuple[Any, ...] | None) -> bool:
    """Whether `bug` (None: this attempt had none) is news for this endpoint and must be logged."""
    logged = ctx._bugs_logged
    if bug is None:
        if logged and logged.pop(endpoint.id, None) is not None:
            log.info("probe_bug_cleared", endpoint_id=endpoint.id, protocol=endpoint.protocol.value)
        return False
    if logged.get(endpoint.id) == bug:
        return False
    logged[endpoint.id] = bug
    return True


async def run_check(endpoint: EndpointSpec, ctx: ProbeContext, budget: float | None = None) -> ProbeResult:
    """One check: up to 1 + `endpoint.retries` attempts while the result is DOWN and time remains.

    `budget` bounds the whole check (the scheduler passes the interval so a check never overlaps its
    successor); a retry only starts when a whole attempt still fits in it.

    Only DOWN is retried. An UNKNOWN attempt (our bug, our exhaustion, a starved loop) ends the
    check as UNKNOWN: retrying would press a host that is out of descriptors harder, and a later
    attempt failing for the same reason must not be what turns our trouble into a DOWN.
    """
    deadline = time.monotonic() + (
        budget if budget is not None else endpoint.timeout * (endpoint.retries + 1)
    )
    attempts = 0
    # One pattern budget for all attempts: a catastrophic pattern costs at most pattern_timeout of
    # a worker per check, however many retries the endpoint has.
    with check_budget(ctx.pattern_timeout, ctx.pattern_wait):
        while True:
            attempts += 1
            result = await run_attempt(endpoint, ctx, endpoint.timeout)
            if result.status is not Status.DOWN or attempts > endpoint.retries:
                break
            if result.error_kind is ErrorKind.PATTERN_TIMEOUT:
                # Not retried: the budget is spent, and the same body would take as long again.
                break
            if time.monotonic() + endpoint.timeout > deadline:
                break
    result.attempts = attempts
    return result
