"""Helpers that keep tests apart when several test processes run at once (pytest-xdist workers,
other checkouts' suites on the same machine); see the note at the top of tests/conftest.py."""

from __future__ import annotations

import itertools
import os

_counter = itertools.count(1)


def unique_name(prefix: str, limit: int = 15) -> str:
    """A name no other test process on this machine uses at the same time, for what lives outside
    the process: a network namespace, an interface (`limit` 15: IFNAMSIZ), a file under /run.

    The pid tells apart the processes and a counter the names of one process; the prefix is cut
    to fit `limit`, never the pid or the counter."""
    tail = f"{os.getpid()}x{next(_counter)}"
    if len(tail) >= limit:
        raise ValueError(f"{limit} characters cannot hold a unique name ({tail!r} alone is {len(tail)})")
    return prefix[: limit - len(tail)] + tail


def worker() -> str:
    """pytest-xdist's worker id (gw0, gw1, ...), or "main" when the suite runs in one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")
