"""File descriptors: raise the open-file limit at start and keep a reserve for probing.

Every check in flight holds a socket. A plain shell's soft limit is 1,024; when API clients (or
anything else) took the rest, every TCP check failed with EMFILE and was reported DOWN. So at
start the soft `RLIMIT_NOFILE` is raised to the hard limit, and the API may hold only what is left
after a reserve: one descriptor per check in flight (ISPMON_MAX_CONCURRENCY) plus ISPMON_FD_RESERVE
for the database pool, alert channels and the rest.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

# The API keeps at least this many connections, even when the limit leaves less: an operator can
# still reach /livez and the status routes of a daemon started under a tiny limit.
MIN_API_CONNECTIONS = 8


@dataclass(frozen=True, slots=True)
class NofileLimit:
    before: int  # soft limit at start
    soft: int  # soft limit now
    hard: int
    error: str | None = None  # why it could not be raised, when it could not

    @property
    def raised(self) -> bool:
        return self.soft > self.before


def raise_nofile_limit() -> NofileLimit:
    """Raise the soft limit to the hard one (no privilege needed for that)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        # Linux refuses an infinite soft limit for NOFILE; nr_open is the real ceiling.
        try:
            with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
                hard = int(f.read())
        except (OSError, ValueError):
            hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft >= hard:
        return NofileLimit(soft, soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (OSError, ValueError) as exc:
        return NofileLimit(soft, soft, hard, str(exc))
    return NofileLimit(soft, hard, hard)


def open_descriptors() -> int:
    """Descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself holds
    except OSError:
        return 0


def api_connection_cap(configured: int, soft_limit: int, in_use: int, reserve: int) -> int:
    """API connections allowed: the configured cap, lowered so that `reserve` descriptors stay free
    beyond those already `in_use`; never below MIN_API_CONNECTIONS."""
    available = soft_limit - in_use - reserve
    return max(MIN_API_CONNECTIONS, min(configured, available))
