"""The flow collector's UDP socket: a large receive buffer, drained in batches, with the kernel's
own count of datagrams it dropped.

Why not `loop.create_datagram_endpoint`: asyncio's selector transport reads one datagram per
wakeup, and neither transport can set socket options before the first datagram or hand over
ancillary data. Here the socket is made by hand (SO_RCVBUF set before bind, SO_RXQ_OVFL on) and
`loop.add_reader` drains up to `BATCH` datagrams per wakeup with `recvmsg`.

Exporters send in bursts (a router's flow cache expiring), and the event loop pauses now and
then (a flush's COPY, a garbage collection, another process on the core). The kernel's default
buffer (212,992 bytes, about 90 full export datagrams) overflows in such a pause; `FLOW_RCVBUF`
(8 MiB) holds a few seconds of a busy exporter. Linux caps the request at `net.core.rmem_max`
and reports the doubled size it granted, which is what is read back, logged once and shown.

Drops: with SO_RXQ_OVFL every datagram that follows a drop carries the socket's cumulative drop
count (a uint32 control message), so the count costs nothing per datagram and is exact, but a
drop is only seen once a later datagram arrives.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

import structlog

log = structlog.get_logger("ispmon.flows")

BATCH = 64  # datagrams read per wakeup: then the loop runs other work (each costs ~0.7 ms to decode)
MAX_DATAGRAM = 65535
DEFAULT_RCVBUF = 8 << 20
# Not in Python's socket module; the value is Linux's (include/uapi/asm-generic/socket.h).
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
_CMSG_SPACE = socket.CMSG_SPACE(4)
_U32 = struct.Struct("=I")

Handle = Callable[[bytes, str], None]


def _source(addr: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host = addr[0]
    return host[7:] if host.startswith("::ffff:") else host


class FlowReceiver:
    """One bound UDP socket; calls `handle(datagram, source address)` for every datagram."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle
        self.sock: socket.socket | None = None
        self.port: int | None = None
        self.datagrams = 0
        self.wakeups = 0
        self.kernel_drops = 0  # datagrams the kernel dropped (the receive buffer was full)
        self.receive_buffer = 0  # bytes the kernel granted
        self.requested_buffer = 0
        self.handler_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, host: str, port: int, rcvbuf: int = DEFAULT_RCVBUF) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # v4 exporters too
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            except OSError:  # not Linux: no drop count, everything else works
                log.warning("flow_drop_count_unavailable", option="SO_RXQ_OVFL")
            sock.bind((host, port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self.requested_buffer = rcvbuf
        self.receive_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        fields = {"address": host, "port": self.port, "receive_buffer": self.receive_buffer}
        if rcvbuf and self.receive_buffer < rcvbuf:
            # Linux grants twice what it was asked, up to twice net.core.rmem_max.
            fields["requested"] = rcvbuf
            fields["hint"] = (
                f"raise net.core.rmem_max to at least {rcvbuf} (sysctl -w net.core.rmem_max={rcvbuf})"
            )
        log.info("flow_listener_started", **fields)
        return self.port

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recvmsg, handle = sock.recvmsg, self.handle
        ancillary = None
        n = 0
        self.wakeups += 1
        try:
            while n < BATCH:
                data, anc, _flags, addr = recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
                n += 1
                if anc:
                    ancillary = anc
                try:
                    handle(data, _source(addr))
                except Exception as exc:  # the daemon never dies on what a peer sends
                    self.handler_errors += 1
                    if self.handler_errors == 1 or self.handler_errors % 1000 == 0:
                        log.warning(
                            "flow_datagram_failed", source=addr[0], error=repr(exc), count=self.handler_errors
                        )
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:  # e.g. ECONNREFUSED left by an ICMP error: the socket stays usable
            log.debug("flow_receive_error", error=str(exc))
        self.datagrams += n
        if ancillary is not None:
            self._drops(ancillary)

    def _drops(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                total = _U32.unpack_from(data)[0]
                if total > self.kernel_drops:
                    if self.kernel_drops == 0:
                        log.warning(
                            "flow_datagrams_dropped_by_kernel",
                            dropped=total,
                            receive_buffer=self.receive_buffer,
                            hint="the receive buffer overflowed: raise FLOW_RCVBUF (and net.core.rmem_max)",
                        )
                    self.kernel_drops = total

    @staticmethod
    def idle_counters() -> dict[str, int]:
        return {"datagrams": 0, "kernel_drops": 0, "receive_buffer": 0}

    def counters(self) -> dict[str, int]:
        return {
            "datagrams": self.datagrams,
            "kernel_drops": self.kernel_drops,
            "receive_buffer": self.receive_buffer,
        }

    def close(self) -> None:
        if self.sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self.sock = None
