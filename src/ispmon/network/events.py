"""Interface and device state changes as events, pure: the previous state and a reading in, events out.

* ``interface_down``: ifOperStatus leaves ``up`` (down, lowerLayerDown, ...) while ifAdminStatus is
  ``up``. An interface shut by an operator (admin down) is not an outage.
* ``interface_up``: it is ``up`` again; ``duration_s`` since it went down.
* ``device_unreachable`` / ``device_reachable`` (with ``duration_s``): one event for the device,
  never one per interface; an unreachable device's interfaces are not read, so they are never
  reported down because of it.

``now`` is passed in (Unix seconds); no clock and no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INTERFACE_DOWN = "interface_down"
INTERFACE_UP = "interface_up"
DEVICE_UNREACHABLE = "device_unreachable"
DEVICE_REACHABLE = "device_reachable"


@dataclass(frozen=True, slots=True)
class NetEvent:
    kind: str
    at: float
    device_id: str
    interface_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)


def interface_transition(
    device_id: str,
    interface_id: int,
    name: str,
    admin: str | None,
    oper: str | None,
    down_since: float | None,
    now: float,
) -> tuple[list[NetEvent], float | None]:
    """Events for one interface's statuses in a poll, and its new ``down_since`` (None while up)."""
    if oper is None or admin is None:
        return [], down_since  # not read this time: no change either way
    is_down = admin == "up" and oper != "up"
    if is_down and down_since is None:
        return [NetEvent(INTERFACE_DOWN, now, device_id, interface_id, {"name": name, "oper_status": oper})], now
    if not is_down and down_since is not None:
        data = {"name": name, "oper_status": oper, "admin_status": admin, "duration_s": round(now - down_since, 3)}
        return [NetEvent(INTERFACE_UP, now, device_id, interface_id, data)], None
    return [], down_since


def device_transition(
    device_id: str, reachable: bool, unreachable_since: float | None, now: float, error: str | None = None
) -> tuple[list[NetEvent], float | None]:
    """Events for a device answering (or not) a poll, and its new ``unreachable_since``."""
    if not reachable and unreachable_since is None:
        return [NetEvent(DEVICE_UNREACHABLE, now, device_id, None, {"error": error})], now
    if reachable and unreachable_since is not None:
        data = {"duration_s": round(now - unreachable_since, 3)}
        return [NetEvent(DEVICE_REACHABLE, now, device_id, None, data)], None
    return [], unreachable_since
