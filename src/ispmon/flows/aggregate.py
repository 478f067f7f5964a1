"""In-memory 1-minute buckets of flow records, keyed by (exporter, interfaces, src/dst prefix,
src/dst customer, protocol, port class). Each bucket holds at most `max_keys` keys; the tail
folds into an "other" key (counted), so a flood of random sources cannot exhaust memory. The
folded key keeps the customers, and the /24 (/48) of an address inside a prefix that a flow alert
rule watches (`watched`), so that per-customer figures and watched prefixes stay exact in a flood."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ispmon.flows.attribution import PrefixNamer, PrefixTable, address_int
from ispmon.flows.decode import FlowRecord

BUCKET_SECONDS = 60
OTHER = "other"

# (exporter_id, in_if, out_if, src_prefix, dst_prefix, src_customer, dst_customer, proto, port)
Key = tuple[str, int, int, str, str, str | None, str | None, int, int]


def port_class(src_port: int, dst_port: int) -> int:
    """The service port of a flow: the lower of its two ports if well known (< 1024), else -1."""
    low = min(src_port, dst_port)
    return low if 0 < low < 1024 else -1


@dataclass
class Bucket:
    minute: int  # unix seconds, a multiple of 60
    counts: dict[Key, list[int]] = field(default_factory=dict)  # [bytes, packets, flows]
    folded: int = 0  # flows folded into "other"


class Aggregator:
    def __init__(self, customers: PrefixTable | None = None, max_keys: int = 50_000) -> None:
        self.customers = customers or PrefixTable()
        self.max_keys = max_keys
        self.buckets: dict[int, Bucket] = {}
        self.folded_total = 0
        self.namer = PrefixNamer()
        self.watched: PrefixTable | None = None  # prefixes flow rules watch (`ispmon.flows.alerting`)

    def add(self, records: Iterable[FlowRecord]) -> None:
        # Each address is parsed to an int once and serves both the customer match and the /24.
        lookup = self.customers.lookup_int
        name = self.namer.name
        buckets = self.buckets
        bucket: Bucket | None = None
        bucket_end = -1
        for r in records:
            if not bucket_end - BUCKET_SECONDS <= r.end < bucket_end:
                minute = int(r.end) // BUCKET_SECONDS * BUCKET_SECONDS
                bucket = buckets.get(minute)
                if bucket is None:
                    bucket = buckets[minute] = Bucket(minute)
                bucket_end = minute + BUCKET_SECONDS
            assert bucket is not None
            src, dst = address_int(r.src), address_int(r.dst)
            if src is None:
                src_p, src_c = OTHER, None
            else:
                src_p, src_c = name(*src), lookup(*src)
            if dst is None:
                dst_p, dst_c = OTHER, None
            else:
                dst_p, dst_c = name(*dst), lookup(*dst)
            low = r.src_port if r.src_port < r.dst_port else r.dst_port
            key: Key = (
                r.exporter_id, r.in_if, r.out_if, src_p, dst_p,
                src_c, dst_c, r.proto, low if 0 < low < 1024 else -1,
            )  # fmt: skip
            counts = bucket.counts.get(key)
            if counts is None:
                if len(bucket.counts) >= self.max_keys:
                    # Customers stay in the folded key so per-customer figures stay exact, and
                    # so do watched prefixes (bounded by the rules, not by what arrives).
                    w = self.watched
                    fold_src = src_p if w is not None and src is not None and w.lookup_int(*src) else OTHER
                    fold_dst = dst_p if w is not None and dst is not None and w.lookup_int(*dst) else OTHER
                    key = (r.exporter_id, 0, 0, fold_src, fold_dst, src_c, dst_c, 0, -1)
                    bucket.folded += 1
                    self.folded_total += 1
                    counts = bucket.counts.get(key)
                if counts is None:
                    counts = bucket.counts[key] = [0, 0, 0]
            counts[0] += r.bytes
            counts[1] += r.packets
            counts[2] += 1

    def take(self, before: float | None = None) -> list[Bucket]:
        """Remove and return the buckets whose minute started before `before` (all if None)."""
        ready = [m for m in self.buckets if before is None or m + BUCKET_SECONDS <= before]
        return [self.buckets.pop(m) for m in sorted(ready)]

    def put_back(self, buckets: Iterable[Bucket]) -> None:
        """Merge buckets whose write failed back in, to be written with the next flush."""
        for b in buckets:
            mine = self.buckets.setdefault(b.minute, Bucket(b.minute))
            mine.folded += b.folded
            for key, (nbytes, packets, flows) in b.counts.items():
                c = mine.counts.setdefault(key, [0, 0, 0])
                c[0] += nbytes
                c[1] += packets
                c[2] += flows
