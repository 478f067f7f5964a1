"""Giving freed heap memory back to the system after a burst of start-up or reload work.

Loading a config file of 10,000 endpoints builds the parsed TOML, a validated model per endpoint
and the rows written to the database; all of it is freed once the database holds the endpoints,
but glibc keeps freed chunks inside its heap, so the daemon's RSS stayed about a kilobyte per
endpoint above what it uses (bench/idle_rss.py). `malloc_trim(0)` returns whole free pages
anywhere in the heap (glibc >= 2.8). Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

_trim: Any = None


def release_free_memory() -> bool:
    """Return free heap pages to the system; False when the C library cannot."""
    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            _trim.argtypes, _trim.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            _trim = False
    if _trim is False:
        return False
    _trim(0)
    return True
