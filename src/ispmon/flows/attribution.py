"""Longest-prefix match of addresses to customers (their `prefixes`, which may nest)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable


class PrefixTable:
    """Maps an address to the customer whose prefix is the longest match, or None.

    One dict per (family, prefix length), probed longest first: a lookup is at most one masked
    dict probe per length in use, which is a handful for any real customer table.
    """

    def __init__(self, prefixes: Iterable[tuple[str, str]] = ()) -> None:
        self._v4: list[tuple[int, int, dict[int, str]]] = []
        self._v6: list[tuple[int, int, dict[int, str]]] = []
        self.load(prefixes)

    def load(self, prefixes: Iterable[tuple[str, str]]) -> None:
        by: dict[tuple[int, int], dict[int, str]] = {}
        for prefix, customer in prefixes:
            net = ipaddress.ip_network(prefix, strict=False)
            by.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = customer
        v4, v6 = [], []
        for (version, length), table in sorted(by.items(), key=lambda kv: -kv[0][1]):
            bits = 32 if version == 4 else 128
            mask = ((1 << length) - 1) << (bits - length) if length else 0
            (v4 if version == 4 else v6).append((length, mask, table))
        self._v4, self._v6 = v4, v6

    def lookup(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        value = int(ip)
        for _length, mask, table in self._v4 if ip.version == 4 else self._v6:
            customer = table.get(value & mask)
            if customer is not None:
                return customer
        return None


def prefix_of(address: str, v4_len: int = 24, v6_len: int = 48) -> str:
    """The aggregation prefix of an address (a /24 or /48 by default)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "other"
    length = v4_len if ip.version == 4 else v6_len
    return str(ipaddress.ip_network((ip, length), strict=False))
