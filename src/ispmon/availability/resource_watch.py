"""Counts checks that failed for the monitor's own resources, and says so once per state change.

Such checks are UNKNOWN (`ispmon.probes.resources`): they open no outage, so nobody is paged for
the monitor's exhaustion. But an operator must learn that the monitor is (partly) blind, without
a log line per check: with the open-file limit reached every check fails, thousands a minute.
`ResourceWatch` logs ``monitor_resource_exhausted`` when the first one arrives and
``monitor_resource_recovered`` when checks have run for `quiet` seconds without one, and keeps the
counts `/readyz` shows.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import structlog

from ispmon.models import ProbeResult
from ispmon.probes.resources import resource_of

log = structlog.get_logger("ispmon.availability.monitor")


class ResourceWatch:
    """The monitor's exhaustion state: exhausted from the first resource failure until `quiet`
    seconds pass without one (a fixed hold-off, so a limit that is hit now and then does not
    log a pair of lines per check)."""

    def __init__(self, quiet: float = 30.0) -> None:
        self.quiet = quiet
        self.exhausted = False
        self.total = 0  # resource failures since start
        self.by_resource: Counter[str] = Counter()
        self._since: datetime | None = None  # start of the current episode
        self._episode: Counter[str] = Counter()
        self._last_failure = float("-inf")  # monotonic

    def observe(self, endpoint_id: str, result: ProbeResult) -> None:
        """One check's result (of a probe that ran; a skipped maintenance check is no evidence)."""
        resource = resource_of(result)
        now = time.monotonic()
        if resource is not None:
            self.total += 1
            self.by_resource[resource] += 1
            self._episode[resource] += 1
            self._last_failure = now
            if not self.exhausted:
                self.exhausted = True
                self._since = datetime.now(UTC)
                log.error(
                    "monitor_resource_exhausted",
                    resource=resource,
                    endpoint_id=endpoint_id,
                    error=result.error,
                    hint="checks that fail for this host's own limits are UNKNOWN and open no outage "
                    "until this clears: raise the open-file limit (LimitNOFILE=), or find what holds "
                    "the descriptors or the CPU",
                )
        elif self.exhausted and now - self._last_failure >= self.quiet:
            since = self._since or datetime.now(UTC)
            log.warning(
                "monitor_resource_recovered",
                duration_seconds=round((datetime.now(UTC) - since).total_seconds(), 3),
                failures=sum(self._episode.values()),
                by_resource=dict(self._episode),
            )
            self.exhausted = False
            self._since = None
            self._episode.clear()

    def stats(self) -> dict[str, Any]:
        """For the monitor's figures (`/readyz`)."""
        return {
            "exhausted": self.exhausted,
            "since": self._since.isoformat() if self._since is not None else None,
            "failures": self.total,
            "by_resource": dict(self.by_resource),
        }
