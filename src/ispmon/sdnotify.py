"""systemd service notifications (the sd_notify protocol) without libsystemd.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET`` (a filesystem path, or an abstract-namespace
name written with a leading ``@``) and expects newline-separated ``KEY=VALUE`` datagrams on it:
``READY=1`` once start-up is done, ``STATUS=...`` for ``systemctl status``, ``STOPPING=1`` at
shutdown and, with ``WatchdogSec=``, ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds.

Everything here is best effort: outside systemd each call is a cheap no-op returning False, and a
socket error is logged once and swallowed, because losing a status line must never take the
monitor down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog

log = structlog.get_logger(__name__)

# One warning per process: a broken notify socket would otherwise log on every watchdog ping.
_warned = False


def _warn_once(event: str, **kw: object) -> None:
    global _warned
    if _warned:
        log.debug(event, **kw)
        return
    _warned = True
    log.warning(event, **kw)


def _address(target: str) -> str | None:
    if target.startswith("@"):
        # Abstract namespace: the kernel name starts with a NUL byte, which systemd spells '@'.
        return "\0" + target[1:]
    if target.startswith("/"):
        return target
    # systemd >= 254 may hand a VM a "vsock:..." address; a host service never gets one.
    return None


def notify(message: str) -> bool:
    """Send one notification datagram; True when it was handed to the socket."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = _address(target)
    if address is None:
        _warn_once("sd_notify_unsupported_socket", notify_socket=target)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Called from the event loop: never wait for a full receive queue. systemd drains its
            # socket promptly, so EAGAIN here means something is badly wrong anyway.
            sock.setblocking(False)
            sock.sendto(message.encode("utf-8"), address)
    except OSError as exc:
        _warn_once("sd_notify_failed", notify_socket=target, error=str(exc))
        return False
    return True


def _one_line(text: str) -> str:
    # The protocol is newline-separated assignments; a newline in a value would start a new one.
    return " ".join(text.splitlines())


def ready(status: str | None = None) -> bool:
    """Start-up is complete (systemd moves the unit to 'active' and starts the watchdog)."""
    message = "READY=1"
    if status:
        message += f"\nSTATUS={_one_line(status)}"
    return notify(message)


def stopping() -> bool:
    """Shutdown has begun, so a slow stop shows as 'deactivating' rather than as a hang."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """Free-form one-line status shown by ``systemctl status``."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3)
    recommends), or None when the watchdog is not enabled for this process."""
    raw = os.environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        # Children inherit the environment; only the process systemd watches may feed the watchdog.
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


async def watchdog_loop(stop: asyncio.Event | None = None) -> None:
    """Ping the watchdog from the event loop until `stop` is set (or the task is cancelled).

    Running on the loop, rather than in a thread, is deliberate: a loop blocked by a stuck call
    stops feeding the watchdog and systemd restarts the service, which is the point of it.
    Returns at once when the watchdog is not enabled.
    """
    interval = watchdog_interval()
    if interval is None:
        return
    stop = stop if stop is not None else asyncio.Event()
    log.debug("watchdog_enabled", interval_s=interval)
    while not stop.is_set():
        notify("WATCHDOG=1")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
