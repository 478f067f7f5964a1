"""Socket-level failures mapped to an `ErrorKind` in one place, shared by every probe, so alerts
route the same way whatever the protocol (a refused TCP connect and an ICMP port-unreachable for
UDP are both `refused`).

Some errnos are about this host, not the target: out of descriptors (EMFILE, ENFILE), socket
buffers (ENOBUFS) or memory (ENOMEM). They classify as `internal`, and the probes turn them into
UNKNOWN results (`ispmon.probes.resources`), never DOWN.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl

from ispmon.models import ErrorKind

# This host ran out of something: the check was not made, whatever the target is doing.
RESOURCE_ERRNOS: frozenset[int] = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_ERRNO_KINDS: dict[int, ErrorKind] = {
    **dict.fromkeys(RESOURCE_ERRNOS, ErrorKind.INTERNAL),
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
# a refusal proves the host is there, an unreachable route says nothing about it. Our own
# exhaustion comes first: an address we could not even try might have answered.
_KIND_PRIORITY = (
    ErrorKind.INTERNAL,
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


def resource_errno(exc: BaseException) -> str | None:
    """The errno name (``EMFILE``, ...) when `exc`, or what it wraps, says this host ran out of a
    resource; None otherwise. Follows aiohttp's `os_error`, icmplib's re-raise (``__context__``)
    and the "Multiple exceptions: [Errno 24] ..." text of a multi-address connect."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen or len(seen) > 8:
            continue
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(code, int) and code in RESOURCE_ERRNOS:
            return errno.errorcode[code]
        for number in _ERRNO_IN_TEXT.findall(str(current)):
            if int(number) in RESOURCE_ERRNOS:
                return errno.errorcode[int(number)]
        wrapped = getattr(current, "os_error", None)
        todo.extend(
            [wrapped if isinstance(wrapped, BaseException) else None, current.__cause__, current.__context__]
        )
    return None


def descriptors_exhausted() -> str | None:
    """The errno name when this process cannot open one more socket right now, else None.

    For failures that hide their errno: glibc's resolver reports "Name or service not known" when
    it cannot open /etc/hosts, and c-ares says "Could not contact DNS servers" (refused) when it
    cannot open a socket. One socket() and close(), run only after such a failure.
    """
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        code = exc.errno
        return errno.errorcode[code] if code is not None and code in RESOURCE_ERRNOS else None
    probe.close()
    return None


def describe_os_error(exc: BaseException) -> str:
    """Short human text for a socket-level exception, without Python class names."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verification failed: {exc.verify_message}"
    text = getattr(exc, "strerror", None) or str(exc)
    return text or type(exc).__name__


def host_port(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
