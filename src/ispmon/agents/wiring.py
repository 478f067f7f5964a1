"""What this agent tells the others (and `/agents/`) in its heartbeat: endpoints owned, checks per
second since the previous heartbeat, scheduler lag."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor


def agent_stats(monitor: Monitor) -> Callable[[], dict[str, Any]]:
    last = [time.monotonic(), monitor.scheduler.stats.completed]

    def stats() -> dict[str, Any]:
        now, completed = time.monotonic(), monitor.scheduler.stats.completed
        elapsed = max(now - last[0], 1e-3)
        rate = (completed - last[1]) / elapsed
        last[0], last[1] = now, completed
        (p99,) = monitor.scheduler.lag_percentiles(0.99)
        return {
            "endpoints_owned": len(monitor.scheduler),
            "checks_per_s": round(rate, 2),
            "scheduler_lag_p99_ms": round(p99 * 1000, 3),
            # Checks skipped rather than run late or on top of a running one (overload), since start.
            "checks_shed": monitor.scheduler.stats.skipped_late + monitor.scheduler.stats.skipped_overrun,
        }

    return stats
