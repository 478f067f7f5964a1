"""One ICMP socket per address family, shared by every ICMP probe, replies handed out by sequence.

Every raw ICMP socket on a host receives every echo reply, so one raw socket per probe costs
O(probes in flight) per packet (measured: 3.5 ms CPU per probe at 100 in flight). Like fping, we
open one socket per family for the whole process, send every echo with the same identifier and a
sequence number that is unique among the echoes in flight, and hand each reply to the echo that
waits for it: (identifier, sequence) must match, and for an echo reply the source must be the
address that echo went to. Anything else — another process's identifier, a reply whose echo has
already timed out (late) or was already answered (duplicate), a reply from a host we did not
ping — is dropped and counted in `ignored`.

The same code runs over datagram ("unprivileged") ICMP sockets when net.ipv4.ping_group_range
allows them: the kernel then sets the identifier itself and only delivers our own replies.
Packets are built and parsed by icmplib (`_create_packet`, `_parse_reply`), the socket is
icmplib's too (its permission errors stay what they were).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import Counter
from time import perf_counter

from icmplib import ICMPReply, ICMPv4Socket, ICMPv6Socket
from icmplib.utils import unique_identifier

# ICMP types that answer an echo: echo reply, or an error quoting our echo request.
_ECHO_REPLY = {4: 0, 6: 129}
_ERRORS = {4: frozenset({3, 11}), 6: frozenset({1, 3})}
# Large buffers: thousands of echoes in flight answer in bursts.
_BUFFER_BYTES = 4 << 20


class SharedIcmpSocket:
    """The process's ICMP socket for one family; `send` an echo, then await the future it gives."""

    def __init__(self, version: int, privileged: bool) -> None:
        cls = ICMPv6Socket if version == 6 else ICMPv4Socket
        self._icmp = cls(None, privileged)  # raises SocketPermissionError / ICMPSocketError
        self._sock = self._icmp.sock
        self._sock.setblocking(False)
        for option in ("SO_RCVBUF", "SO_SNDBUF"):
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.SOL_SOCKET, getattr(socket, option), _BUFFER_BYTES)
        self.version = version
        self.privileged = privileged
        self._echo_reply = _ECHO_REPLY[version]
        self._errors = _ERRORS[version]
        self.identifier = unique_identifier()
        self._sequence = random.randrange(1 << 16)
        # sequence -> (address the echo went to, future for its ICMPReply)
        self._waiting: dict[int, tuple[str, asyncio.Future[ICMPReply]]] = {}
        self.ignored: Counter[str] = Counter()
        self.delivered = 0
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self._sock.fileno(), self._on_readable)

    @property
    def in_flight(self) -> int:
        return len(self._waiting)

    def send(self, address: str, payload: bytes) -> tuple[int, float, asyncio.Future[ICMPReply]]:
        """Send one echo request; (sequence, send time, future of its reply). Raises OSError."""
        if len(self._waiting) >= 1 << 16:
            raise OSError(105, "no free ICMP sequence number (65,536 echoes in flight)")  # ENOBUFS
        sequence = self._sequence
        while sequence in self._waiting:
            sequence = (sequence + 1) & 0xFFFF
        self._sequence = (sequence + 1) & 0xFFFF
        packet = self._icmp._create_packet(self.identifier, sequence, payload)
        future: asyncio.Future[ICMPReply] = self.loop.create_future()
        sent = perf_counter()
        self._sock.sendto(packet, (address, 0))
        self._waiting[sequence] = (address, future)
        return sequence, sent, future

    def forget(self, sequence: int, future: asyncio.Future[ICMPReply]) -> None:
        """The echo's wait is over (answered or timed out): a later reply to it is ignored."""
        entry = self._waiting.get(sequence)
        if entry is not None and entry[1] is future:
            del self._waiting[sequence]

    def _on_readable(self) -> None:
        recv = self._sock.recvfrom
        parse = self._icmp._parse_reply
        while True:
            try:
                packet, source = recv(65535)
            except BlockingIOError:
                return
            except OSError:  # an ICMP error queued on a datagram socket: no way to tell whose
                self.ignored["socket error"] += 1
                continue
            now = perf_counter()
            reply = parse(packet, source[0], now)
            if reply is None:
                self.ignored["malformed"] += 1
                continue
            if reply.type != self._echo_reply and reply.type not in self._errors:
                continue  # our own echo requests seen on loopback, other ICMP traffic
            if self.privileged and reply.id != self.identifier:
                self.ignored["other identifier"] += 1
                continue
            entry = self._waiting.get(reply.sequence)
            if entry is None:
                self.ignored["late or duplicate"] += 1
                continue
            address, future = entry
            # An error comes from a router on the way; an echo reply must come from the target.
            if reply.type == self._echo_reply and source[0] != address:
                self.ignored["other source"] += 1
                continue
            del self._waiting[reply.sequence]
            if not future.done():
                future.set_result(reply)
                self.delivered += 1

    def close(self) -> None:
        if self._sock.fileno() >= 0 and not self.loop.is_closed():
            self.loop.remove_reader(self._sock.fileno())
        for _, future in self._waiting.values():
            if not future.done():
                future.cancel()
        self._waiting.clear()
        self._icmp.close()
