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
