"""Socket-level failures mapped to an `ErrorKind` in one place, shared by every probe, so alerts
route the same way whatever the protocol (a refused TCP connect and an ICMP port-unreachable for
UDP are both `refused`)."""

from __future__ import annotations

import errno
import re
import socket
import ssl

from ispmon.models import ErrorKind

_ERRNO_KINDS: dict[int, ErrorKind] = {
    errno.ECONNREFUSED: ErrorKind.REFUSED,
    errno.ENETUNREACH: ErrorKind.UNREACHABLE,
    errno.EHOSTUNREACH: ErrorKind.UNREACHABLE,
    errno.ENETDOWN: ErrorKind.UNREACHABLE,
    errno.EHOSTDOWN: ErrorKind.UNREACHABLE,
    # No local address of the target's family (e.g. ::1 on a host without IPv6).
    errno.EADDRNOTAVAIL: ErrorKind.UNREACHABLE,
    errno.ECONNRESET: ErrorKind.CONNECTION,
    errno.ECONNABORTED: ErrorKind.CONNECTION,
    errno.EPIPE: ErrorKind.CONNECTION,
    errno.ETIMEDOUT: ErrorKind.TIMEOUT,
    # A local firewall rule or a broadcast target: this host's policy, not the target's answer.
    errno.EACCES: ErrorKind.PERMISSION,
    errno.EPERM: ErrorKind.PERMISSION,
}

# When several addresses of one host failed differently, report the one closest to the target:
# a refusal proves the host is there, an unreachable route says nothing about it.
_KIND_PRIORITY = (
    ErrorKind.REFUSED,
    ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION,
    ErrorKind.UNREACHABLE,
    ErrorKind.PERMISSION,
)
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")


def classify_os_error(exc: BaseException) -> ErrorKind:
    """The `ErrorKind` of a socket-level exception (connect, send, receive, resolve)."""
    if isinstance(exc, socket.gaierror):
        return ErrorKind.DNS
    if isinstance(exc, ssl.SSLError):
        return ErrorKind.TLS
    if isinstance(exc, TimeoutError):
        return ErrorKind.TIMEOUT
    code = getattr(exc, "errno", None)
    if code is not None:
        return _ERRNO_KINDS.get(code, ErrorKind.CONNECTION)
    # Python 3.11's create_connection (and uvloop's) folds the errors of a multi-address host into
    # one OSError("Multiple exceptions: [Errno 111] ..., [Errno 99] ...") without an errno.
    kinds = {_ERRNO_KINDS.get(int(n)) for n in _ERRNO_IN_TEXT.findall(str(exc))}
    for kind in _KIND_PRIORITY:
        if kind in kinds:
            return kind
    return ErrorKind.CONNECTION


def describe_os_error(exc: BaseException) -> str:
    """Short human text for a socket-level exception, without Python class names."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verification failed: {exc.verify_message}"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


def host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
