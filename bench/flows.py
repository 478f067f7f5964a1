"""Flow records per second decoded (netflume via flows/decode.py) and aggregated on one core.

Builds NetFlow v5 datagrams (30 records each, random addresses in 10.0.0.0/8 and customers'
prefixes) and feeds them to FlowDecoder + Aggregator in a bounded loop; no socket, no database.
Goal: 50,000 records/s. Not yet here: nfcapd side by side, memory at 100,000 keys, time to query.
"""

from __future__ import annotations

import random
import struct
import time

from ispmon.flows.aggregate import Aggregator
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.decode import FlowDecoder

RECORDS = 30
DATAGRAMS = 2000


def v5_datagram(rng: random.Random, seq: int, now: int) -> bytes:
    head = struct.pack("!HHIIIIBBH", 5, RECORDS, 100_000, now, 0, seq, 0, 0, 0)
    body = b"".join(
        struct.pack(
            "!4s4s4sHHIIIIHHBBBBHHBBH",
            struct.pack("!I", 0x0A000000 | rng.getrandbits(24)), struct.pack("!I", 0xC0000200 | rng.getrandbits(8)),
            b"\0\0\0\0", 1, 2, 10, 1500 * 10, 90_000, 99_000, 40000, 443, 0, 0x18, 6, 0, 0, 0, 24, 24, 0,
        )
        for _ in range(RECORDS)
    )
    return head + body


def main() -> None:
    rng = random.Random(1)
    now = int(time.time())
    datagrams = [v5_datagram(rng, i * RECORDS, now) for i in range(DATAGRAMS)]
    customers = PrefixTable((f"10.{a}.{b}.0/24", f"c{a}-{b}") for a in range(0, 256, 4) for b in range(0, 256, 2))
    decoder = FlowDecoder()
    decoder.declare("r1", "192.0.2.1")
    aggregator = Aggregator(customers, max_keys=100_000)
    start = time.process_time()
    for d in datagrams:
        aggregator.add(decoder.decode(d, "192.0.2.1", now=now))
    cpu = time.process_time() - start
    total = DATAGRAMS * RECORDS
    keys = sum(len(b.counts) for b in aggregator.buckets.values())
    print(f"decoded+aggregated {total} v5 records in {cpu:.3f} s CPU: {total / cpu:,.0f} records/s, "
          f"{DATAGRAMS / cpu:,.0f} export packets/s, {keys} keys, folded {aggregator.folded_total}")  # fmt: skip


if __name__ == "__main__":
    main()
