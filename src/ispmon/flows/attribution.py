"""Longest-prefix match of addresses to customers (their `prefixes`, which may nest), and the
aggregation prefix (/24, /48) of an address.

Both run once or twice per flow record, so they work on integers: an address string is turned
into (family, int) once with inet_pton (no ipaddress object per record), the match is one masked
dict probe per prefix length in use, and the /24 or /48 strings are cached by network (bounded).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

_V4_MASKS = [((1 << n) - 1) << (32 - n) if n else 0 for n in range(33)]
_V6_MASKS = [((1 << n) - 1) << (128 - n) if n else 0 for n in range(129)]
_PREFIX_CACHE_MAX = 200_000  # network strings kept; cleared when full (a flood of random sources)
_from_bytes = int.from_bytes
_pton = socket.inet_pton
_AF4, _AF6 = socket.AF_INET, socket.AF_INET6


def address_int(address: str) -> tuple[int, int] | None:
    """(4 or 6, the address as an int), or None if it is not an address."""
    try:
        if ":" in address:
            return 6, _from_bytes(_pton(_AF6, address), "big")
        return 4, _from_bytes(_pton(_AF4, address), "big")
    except (OSError, TypeError, ValueError):
        return None


class PrefixTable:
    """Maps an address to the customer whose prefix is the longest match, or None.

    One dict per (family, prefix length), probed longest first: a lookup is at most one masked
    dict probe per length in use, which is a handful for any real customer table.
    """

    def __init__(self, prefixes: Iterable[tuple[str, str]] = ()) -> None:
        self._v4: list[tuple[int, dict[int, str]]] = []
        self._v6: list[tuple[int, dict[int, str]]] = []
        self.load(prefixes)

    def load(self, prefixes: Iterable[tuple[str, str]]) -> None:
        by: dict[tuple[int, int], dict[int, str]] = {}
        for prefix, customer in prefixes:
            net = ipaddress.ip_network(prefix, strict=False)
            by.setdefault((net.version, net.prefixlen), {})[int(net.network_address)] = customer
        v4, v6 = [], []
        for (version, length), table in sorted(by.items(), key=lambda kv: -kv[0][1]):
            if version == 4:
                v4.append((_V4_MASKS[length], table))
            else:
                v6.append((_V6_MASKS[length], table))
        self._v4, self._v6 = v4, v6

    def lookup(self, address: str) -> str | None:
        parsed = address_int(address)
        return None if parsed is None else self.lookup_int(*parsed)

    def lookup_int(self, version: int, value: int) -> str | None:
        for mask, table in self._v4 if version == 4 else self._v6:
            customer = table.get(value & mask)
            if customer is not None:
                return customer
        return None


class PrefixNamer:
    """The aggregation prefix string of an address int ("10.1.2.0/24", "2001:db8::/48"), cached
    by network so that a busy /24 is formatted once, not once per flow."""

    def __init__(self, v4_len: int = 24, v6_len: int = 48) -> None:
        self.v4_len, self.v6_len = v4_len, v6_len
        self.v4_mask, self.v6_mask = _V4_MASKS[v4_len], _V6_MASKS[v6_len]
        self._v4: dict[int, str] = {}
        self._v6: dict[int, str] = {}

    def name(self, version: int, value: int) -> str:
        if version == 4:
            net = value & self.v4_mask
            text = self._v4.get(net)
            if text is None:
                text = self._store(self._v4, net, f"{socket.inet_ntoa(net.to_bytes(4, 'big'))}/{self.v4_len}")
            return text
        net = value & self.v6_mask
        text = self._v6.get(net)
        if text is None:
            # ipaddress's compressed spelling (inet_ntop writes ::ffff:a.b.c.d differently)
            text = self._store(self._v6, net, f"{ipaddress.IPv6Address(net)}/{self.v6_len}")
        return text

    @staticmethod
    def _store(cache: dict[int, str], net: int, text: str) -> str:
        if len(cache) >= _PREFIX_CACHE_MAX:
            cache.clear()
        cache[net] = text
        return text


def prefix_of(address: str, v4_len: int = 24, v6_len: int = 48) -> str:
    """The aggregation prefix of an address (a /24 or /48 by default)."""
    parsed = address_int(address)
    return "other" if parsed is None else PrefixNamer(v4_len, v6_len).name(*parsed)
