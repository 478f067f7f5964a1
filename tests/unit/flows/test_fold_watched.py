"""Past FLOW_MAX_KEYS a minute the tail folds into "other", but keeps the /24 of an address in a
prefix a flow rule watches: a flood from random sources towards it stays measurable."""

from __future__ import annotations

from ispmon.flows.aggregate import OTHER, Aggregator
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.decode import FlowRecord


def flood(n: int) -> list[FlowRecord]:
    return [
        FlowRecord("r1", 600.0, 1, 2, f"10.{i // 256 % 256}.{i % 256}.1", "192.0.2.7",
                   17, 1000 + i % 5000, 53, 100, 1)
        for i in range(n)
    ]  # fmt: skip


def by_dst(agg: Aggregator) -> dict[str, int]:
    out: dict[str, int] = {}
    for bucket in agg.buckets.values():
        for key, (nbytes, _p, _f) in bucket.counts.items():
            out[key[4]] = out.get(key[4], 0) + nbytes
    return out


def test_a_watched_prefix_keeps_its_name_in_the_folded_key() -> None:
    agg = Aggregator(max_keys=100)
    agg.watched = PrefixTable([("192.0.2.0/24", "192.0.2.0/24")])
    agg.add(flood(5000))
    assert agg.folded_total > 0
    assert by_dst(agg) == {"192.0.2.0/24": 500_000}
    assert len(agg.buckets[600].counts) <= 101  # still bounded: one folded key per watched /24


def test_unwatched_the_tail_folds_into_other() -> None:
    agg = Aggregator(max_keys=100)
    agg.add(flood(5000))
    assert by_dst(agg)[OTHER] > 0
