"""Small network helpers shared by the probe tests."""

from __future__ import annotations

import socket


def ipv6_available() -> bool:
    """True when ::1 can be bound (IPv6 loopback exists on this machine)."""
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
