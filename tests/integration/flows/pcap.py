"""A tiny pcap writer for the softflowd tests: Ethernet/IPv4 TCP or UDP packets of known sizes."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Packet:
    at: float  # unix seconds
    src: str
    dst: str
    proto: int  # 6 or 17
    sport: int
    dport: int
    payload: int = 0  # payload bytes; the IP length is this plus the headers

    @property
    def ip_length(self) -> int:
        return 20 + (20 if self.proto == 6 else 8) + self.payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(p: Packet) -> bytes:
    if p.proto == 6:
        l4 = struct.pack("!HHIIBBHHH", p.sport, p.dport, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", p.sport, p.dport, 8 + p.payload, 0)
    body = l4 + b"x" * p.payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, p.proto, 0,
        ipaddress.IPv4Address(p.src).packed, ipaddress.IPv4Address(p.dst).packed,
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    return eth + ip + body


def write_pcap(path: Path, packets: list[Packet]) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for p in sorted(packets, key=lambda p: p.at):
        data = frame(p)
        sec = int(p.at)
        usec = round((p.at - sec) * 1e6)
        out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    path.write_bytes(b"".join(out))
