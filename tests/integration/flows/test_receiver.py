"""The collector's socket: the receive buffer the kernel granted, and the datagrams the kernel
dropped when it was full, counted (SO_RXQ_OVFL) and shown in GET /flows/exporters. The datagrams
are softflowd's own v5 export of a pcap written here."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from tests.integration.flows.pcap import write_pcap
from tests.integration.flows.test_softflowd import Rig, customer, softflowd, traffic

BURST = 400


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


async def captured(tmp: Path, t0: float, version: int = 5) -> list[bytes]:
    """What softflowd sends for `traffic(t0)`, caught on a socket of our own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.settimeout(2)
        pcap = tmp / "c.pcap"
        write_pcap(pcap, traffic(t0))
        await asyncio.to_thread(softflowd, tmp, pcap, sink.getsockname()[1], version)
        out = []
        try:
            while True:
                out.append(sink.recv(65535))
        except TimeoutError:
            pass
    return out


async def test_the_receive_buffer_is_what_the_kernel_granted_and_is_shown(rig: Rig) -> None:
    body = await rig.documented("/flows/exporters", "/flows/exporters")
    granted = body["collector"]["receive_buffer"]
    assert rig.collector.receiver is not None and rig.collector.receiver.sock is not None
    assert granted == rig.collector.receiver.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    # Linux grants twice the request, capped at twice net.core.rmem_max; far above its 212,992 default.
    assert granted == min(2 * (8 << 20), 2 * rmem_max())
    assert granted > 2 * 212_992
    assert body["collector"]["kernel_drops"] == 0


@pytest.mark.parametrize("rig", [4096], indirect=True)  # a tiny buffer: the kernel's minimum
async def test_datagrams_the_kernel_dropped_are_counted(rig: Rig, tmp_path: Path) -> None:
    t0 = time.time() // 60 * 60 - 600 + 1
    datagrams = await captured(tmp_path, t0)
    assert len(datagrams) == 1  # v5: softflowd's three flows in one datagram
    assert rig.collector.port is not None
    target = ("127.0.0.1", rig.collector.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # Sent without awaiting: the event loop reads nothing meanwhile, so the small buffer fills
        # and the kernel drops the rest.
        for _ in range(BURST):
            s.sendto(datagrams[0], target)
        await asyncio.sleep(0.3)
        s.sendto(datagrams[0], target)  # the count rides on the next datagram read after a drop
        await asyncio.sleep(0.3)
    stats = (await rig.documented("/flows/exporters", "/flows/exporters"))["collector"]
    assert stats["kernel_drops"] > 0
    assert stats["datagrams"] + stats["kernel_drops"] == BURST + 1
    # What was received is counted once each, and only that.
    assert await rig.collector.flush(everything=True)
    got = stats["datagrams"]
    assert await customer(rig, "c-a", t0) == (234 * got, 400 * got)
