"""Accounting-Requests for the RADIUS benchmarks (bench/radius.py, bench/radius_commit.py).

Built by hand so that the load generator spends no time in a codec: an Interim-Update with the
attributes a BRAS sends (status, session id, user name, octets with gigawords, session time),
signed per RFC 2866 3 with `SECRET`.
"""

from __future__ import annotations

import hashlib
import struct

SECRET = b"bench-secret"


def attr(code: int, value: bytes) -> bytes:
    return bytes([code, len(value) + 2]) + value


def request(ident: int, session: int, counter: int, secret: bytes = SECRET) -> bytes:
    """Interim-Update `ident` of session `session`, `counter` octets in (7 times that out)."""
    body = (
        attr(40, (3).to_bytes(4, "big"))
        + attr(44, f"s{session}".encode())
        + attr(1, f"user{session}@isp".encode())
        + attr(42, (counter & 0xFFFFFFFF).to_bytes(4, "big"))
        + attr(52, (counter >> 32).to_bytes(4, "big"))
        + attr(43, (counter * 7 & 0xFFFFFFFF).to_bytes(4, "big"))
        + attr(46, counter.to_bytes(4, "big"))
    )
    header = struct.pack("!BBH", 4, ident, 20 + len(body))
    auth = hashlib.md5(header + bytes(16) + body + secret, usedforsecurity=False).digest()
    return header + auth + body
