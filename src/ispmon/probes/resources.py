"""Checks that failed because of this host, not the target: UNKNOWN results of kind `internal`.

When the monitor runs out of something of its own it learns nothing about the target, and a DOWN
would page an ISP's on-call for the monitor's exhaustion (seen: 1,000 idle API connections used
up the open-file limit and 200 outages were declared within 3 s). Such a check is UNKNOWN, which
the outage state machine ignores, with error kind `internal` and ``details["resource"]`` naming
what ran out:

* an errno name (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``): the kernel refused us a
  descriptor, a socket buffer or memory (see `ispmon.probes.oserrors.resource_errno`);
* ``event_loop``: one of our own timers fired late, so the loop was starved (see `run_attempt`);
* ``pattern_workers``: every pattern worker stayed busy (see `ispmon.probes.patterns`).

The monitor counts these results and logs once when they start and once when they stop.
"""

from __future__ import annotations

from typing import Any

from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.oserrors import descriptors_exhausted

RESOURCE_KEY = "resource"
EVENT_LOOP = "event_loop"
PATTERN_WORKERS = "pattern_workers"


def resource_failure(
    resource: str, text: str, response_time_ms: float | None = None, details: dict[str, Any] | None = None
) -> ProbeResult:
    """UNKNOWN/internal: the check could not be made because `resource` (ours) ran out."""
    return ProbeResult(
        Status.UNKNOWN,
        response_time_ms,
        ErrorKind.INTERNAL,
        f"{text} (this monitor's own limit, not the target's)",
        {**(details or {}), RESOURCE_KEY: resource},
    )


def resource_of(result: ProbeResult) -> str | None:
    """What ran out, when `result` is a resource failure (also when recorded under maintenance)."""
    if result.error_kind is not ErrorKind.INTERNAL:
        return None
    resource = result.details.get(RESOURCE_KEY)
    return resource if isinstance(resource, str) else None


# How late one of our timers may fire before we call the event loop starved. Normal loop lag is a
# few milliseconds, a busy daemon's tens.
LATE_TIMER_TOLERANCE = 0.1
# Kinds a failing syscall of ours can masquerade as when its errno is lost on the way (resolver
# libraries, c-ares): worth one socket() to ask whether we are out of descriptors.
_MAYBE_OURS = frozenset(
    {ErrorKind.DNS, ErrorKind.REFUSED, ErrorKind.CONNECTION, ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE}
)


def judge(result: ProbeResult, overrun: float) -> ProbeResult:
    """`result`, or an UNKNOWN resource failure when the failure it reports is ours.

    Whose timeout is it? The probe's own timer, set to the endpoint's `timeout` when the exchange
    starts (and stopped while we match patterns), is the target's clock: when it fires on time the
    target had the whole timeout with a loop free to read its answer, and the timeout is the
    target's. It is ours when:

    * it fired late: `overrun` (the attempt's time beyond `timeout`, our pattern work excluded)
      is above LATE_TIMER_TOLERANCE, so the event loop was starved (by our CPU use, a blocking
      call, a stall of the host) and the answer may have been waiting unread in a socket buffer;
    * the hard limit fired instead (see `run_attempt`): the probe's timer did not end the attempt;
    * it is a wait for something of ours: a pattern worker (`PATTERN_WORKERS`).

    Failures whose errno says we ran out (EMFILE, ENFILE, ENOBUFS, ENOMEM) are ours too; the
    probes report them directly, and for the kinds that can hide such an errno (`_MAYBE_OURS`)
    this asks the kernel whether we can open a socket at all.
    """
    kind = result.error_kind
    if kind is ErrorKind.INTERNAL:
        if result.status is Status.UNKNOWN:
            return result
        # Classified ours but reported as a failure: internal is never the target's fault.
        return resource_failure(
            resource_of(result) or "os", result.error or "internal error", None, result.details
        )
    if result.status is not Status.DOWN or kind not in _MAYBE_OURS:
        return result
    text = result.error or str(kind)
    if kind is ErrorKind.TIMEOUT and overrun > LATE_TIMER_TOLERANCE:
        return resource_failure(
            EVENT_LOOP,
            f"{text}, but our timer fired {overrun * 1000:.0f} ms late (event loop starved)",
            None,
            result.details,
        )
    exhausted = descriptors_exhausted()
    if exhausted is not None:
        return resource_failure(
            exhausted, f"{text}; this host cannot open a socket now", None, result.details
        )
    return result
