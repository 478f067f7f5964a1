"""An interface's identity: history follows ifName, not ifIndex.

Agents renumber ifIndex after a reboot or a line card swap; ifName is what an operator knows the
port by. The store keys interfaces by ``(device_id, key)`` and keeps the last ifIndex seen as a
mutable column, so a renumbered port keeps its history. Pure functions, no I/O.
"""

from __future__ import annotations


def interface_key(if_index: int, if_name: str | None) -> str:
    """The stable key of an interface: its ifName, or its index when the agent gives no name."""
    name = (if_name or "").strip()
    return name or f"ifIndex.{if_index}"


def keys_for(table: dict[int, str | None]) -> dict[int, str]:
    """Keys for a discovered ``{ifIndex: ifName}`` table; duplicate ifNames get ``name#ifIndex``.

    Some agents give several rows the same ifName (sub-interfaces on cheap switches); the first
    (lowest ifIndex) keeps the plain name so a renumbering of the others cannot steal its history.
    """
    out: dict[int, str] = {}
    seen: set[str] = set()
    for index in sorted(table):
        key = interface_key(index, table[index])
        if key in seen:
            key = f"{key}#{index}"
        seen.add(key)
        out[index] = key
    return out
