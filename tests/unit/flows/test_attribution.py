"""The integer longest-prefix match and /24-/48 naming agree with ipaddress on every case."""

from __future__ import annotations

import ipaddress
import random

from ispmon.flows.aggregate import Aggregator
from ispmon.flows.attribution import PrefixTable, prefix_of
from ispmon.flows.decode import FlowRecord

PREFIXES = [
    ("10.0.0.0/8", "big"),
    ("10.1.0.0/16", "mid"),
    ("10.1.2.0/24", "small"),
    ("10.1.2.128/25", "tiny"),
    ("192.0.2.7/32", "host"),
    ("2001:db8::/32", "v6big"),
    ("2001:db8:1::/48", "v6small"),
    ("::ffff:0:0/96", "mapped"),
]


def reference(address: str) -> str | None:
    ip = ipaddress.ip_address(address)
    best = None
    for prefix, customer in PREFIXES:
        net = ipaddress.ip_network(prefix)
        if ip.version == net.version and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, customer)
    return None if best is None else best[1]


def addresses() -> list[str]:
    rng = random.Random(7)
    fixed = ["10.1.2.129", "10.1.2.127", "10.1.3.1", "10.2.0.0", "11.0.0.0", "192.0.2.7", "192.0.2.8",
             "0.0.0.0", "255.255.255.255", "2001:db8:1::1", "2001:db8:2::1", "2001:db9::", "::",
             "::ffff:10.1.2.3", "::ffff:c0a8:10a", "fe80::1"]  # fmt: skip
    rand = [str(ipaddress.IPv4Address(0x0A010000 | rng.getrandbits(16))) for _ in range(500)]
    rand += [str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96))) for _ in range(500)]
    return fixed + rand


def test_longest_match_agrees_with_ipaddress() -> None:
    table = PrefixTable(PREFIXES)
    for address in addresses():
        assert table.lookup(address) == reference(address), address


def test_prefix_names_agree_with_ipaddress() -> None:
    for address in addresses():
        ip = ipaddress.ip_address(address)
        want = str(ipaddress.ip_network((ip, 24 if ip.version == 4 else 48), strict=False))
        assert prefix_of(address) == want, address


def test_bad_addresses_are_other_and_unattributed() -> None:
    table = PrefixTable(PREFIXES)
    for bad in ["", "10.1.2", "10.1.2.300", "010.1.2.3", "2001:db8::g", "nonsense"]:
        assert table.lookup(bad) is None, bad
        assert prefix_of(bad) == "other", bad


def test_aggregate_keys_and_buckets() -> None:
    agg = Aggregator(PrefixTable(PREFIXES))
    rec = FlowRecord("r1", 119.5, 1, 2, "10.1.2.200", "2001:db8:1::5", 6, 40000, 443, 100, 2)
    agg.add([rec, rec._replace(end=120.0), rec._replace(src="bogus", end=59.0)])
    assert sorted(agg.buckets) == [0, 60, 120]
    key = ("r1", 1, 2, "10.1.2.0/24", "2001:db8:1::/48", "tiny", "v6small", 6, 443)
    assert agg.buckets[60].counts == {key: [100, 2, 1]}
    assert agg.buckets[120].counts == {key: [100, 2, 1]}
    other = ("r1", 1, 2, "other", "2001:db8:1::/48", None, "v6small", 6, 443)
    assert agg.buckets[0].counts == {other: [100, 2, 1]}
