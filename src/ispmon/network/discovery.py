"""What one device is (discovery) and what its counters say now (a poll), read over SNMP.

Discovery: sysDescr, sysObjectID, sysUpTime, sysName, and the IF-MIB ifTable/ifXTable columns that
describe each interface. A poll: sysUpTime, then the counters of every interface, from ifXTable's
64-bit columns (ifHC*) when the agent has them and the version is not 1, else ifTable's 32-bit ones;
errors and discards (ifTable, 32-bit) and the statuses. OIDs are numeric: Debian ships no MIBs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ispmon.network import counters as c
from ispmon.network.devices import DeviceSpec
from ispmon.network.interfaces import keys_for
from ispmon.network.snmp import SnmpClient, SnmpError

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
IF = "1.3.6.1.2.1.2.2.1"
IFX = "1.3.6.1.2.1.31.1.1.1"
IF_DESCR, IF_TYPE, IF_SPEED = f"{IF}.2", f"{IF}.3", f"{IF}.5"
IF_ADMIN, IF_OPER, IF_LAST_CHANGE = f"{IF}.7", f"{IF}.8", f"{IF}.9"
IF_NAME, IF_HIGH_SPEED, IF_ALIAS, IF_DISCONTINUITY = f"{IFX}.1", f"{IFX}.15", f"{IFX}.18", f"{IFX}.19"
DESCRIBE = (IF_DESCR, IF_TYPE, IF_SPEED, IF_ADMIN, IF_OPER, IF_LAST_CHANGE, IF_NAME, IF_HIGH_SPEED, IF_ALIAS)

HC_COUNTERS = {
    f"{IFX}.6": c.OCTETS_IN,
    f"{IFX}.10": c.OCTETS_OUT,
    f"{IFX}.7": c.PKTS_IN,
    f"{IFX}.11": c.PKTS_OUT,
}
COUNTERS_32 = {
    f"{IF}.10": c.OCTETS_IN,
    f"{IF}.16": c.OCTETS_OUT,
    f"{IF}.11": c.PKTS_IN,
    f"{IF}.17": c.PKTS_OUT,
}
ERROR_COUNTERS = {
    f"{IF}.14": c.ERRORS_IN,
    f"{IF}.20": c.ERRORS_OUT,
    f"{IF}.13": c.DISCARDS_IN,
    f"{IF}.19": c.DISCARDS_OUT,
}
# ifAdminStatus / ifOperStatus values (RFC 2863).
STATUS = {1: "up", 2: "down", 3: "testing", 4: "unknown", 5: "dormant", 6: "notPresent", 7: "lowerLayerDown"}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any, limit: int = 255) -> str:
    return value[:limit] if isinstance(value, str) else ""


@dataclass(slots=True)
class Discovered:
    """A device's system group and interfaces (as rows for InterfaceRepo.upsert_discovered)."""

    system: dict[str, Any]
    interfaces: list[dict[str, Any]]
    hc: bool = True


@dataclass(slots=True)
class Counters:
    """One poll: the agent's uptime and, per ifIndex, raw counters and statuses."""

    at: float
    uptime: int | None
    hc: bool
    counters: dict[int, dict[str, int]] = field(default_factory=dict)
    admin: dict[int, str] = field(default_factory=dict)
    oper: dict[int, str] = field(default_factory=dict)
    discontinuity: dict[int, int] = field(default_factory=dict)


async def system(client: SnmpClient, device: DeviceSpec) -> dict[str, Any]:
    values = await client.get(device, (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME))
    if all(v is None for v in values.values()):
        raise SnmpError("agent", f"{device.id}: the agent has no system group (noSuchObject)")
    return {
        "sys_descr": _text(values[SYS_DESCR], 2000) or None,
        "sys_object_id": values[SYS_OBJECT_ID] if isinstance(values[SYS_OBJECT_ID], str) else None,
        "sys_uptime": _int(values[SYS_UPTIME]),
        "sys_name": _text(values[SYS_NAME]) or None,
    }


async def discover(client: SnmpClient, device: DeviceSpec) -> Discovered:
    """The system group and every interface, each with ``selected`` from the device's selection."""
    sys_values = await system(client, device)
    table = await client.table(device, DESCRIBE)
    indexes = sorted(set(table[IF_DESCR]) | set(table[IF_NAME]))
    keys = keys_for({i: _text(table[IF_NAME].get(i)) or _text(table[IF_DESCR].get(i)) for i in indexes})
    found = []
    for index in indexes:
        name = _text(table[IF_NAME].get(index)) or _text(table[IF_DESCR].get(index))
        descr, alias = _text(table[IF_DESCR].get(index)), _text(table[IF_ALIAS].get(index))
        if_type = _int(table[IF_TYPE].get(index))
        found.append(
            {
                "key": keys[index],
                "if_index": index if index < 2**31 else None,
                "name": name,
                "descr": descr,
                "alias": alias,
                "if_type": if_type,
                "speed_bps": _int(table[IF_SPEED].get(index)),
                "high_speed_mbps": _int(table[IF_HIGH_SPEED].get(index)),
                "admin_status": STATUS.get(_int(table[IF_ADMIN].get(index)) or 0),
                "oper_status": STATUS.get(_int(table[IF_OPER].get(index)) or 0),
                "last_change": _int(table[IF_LAST_CHANGE].get(index)),
                "selected": device.interfaces.selects(name, descr, alias, if_type),
            }
        )
    found = [f for f in found if f["if_index"] is not None]
    hc = device.version != "1" and bool(table[IF_NAME] or table[IF_HIGH_SPEED])
    return Discovered(system=sys_values, interfaces=found, hc=hc)


async def read_counters(client: SnmpClient, device: DeviceSpec, hc: bool, now: Any) -> Counters:
    """One poll of every interface's counters; ``now()`` is the wall clock (Unix seconds).

    Falls back to the 32-bit columns when the 64-bit ones come back empty (an agent without
    ifXTable counters)."""
    uptime = _int((await client.get(device, (SYS_UPTIME,)))[SYS_UPTIME])
    if uptime is None:
        # Every agent has sysUpTime; without it resets cannot be told from traffic.
        raise SnmpError("agent", f"{device.id}: the agent gave no sysUpTime (noSuchObject or garbage)")
    started = now()
    columns = {**(HC_COUNTERS if hc else COUNTERS_32), **ERROR_COUNTERS}
    table = await client.table(device, (*columns, IF_ADMIN, IF_OPER, *((IF_DISCONTINUITY,) if hc else ())))
    if hc and not any(table[o] for o in HC_COUNTERS):
        return await read_counters(client, device, False, now)
    # The counters were read over the walk's requests: stamp them with its middle.
    at = (started + now()) / 2
    out = Counters(at=at, uptime=uptime, hc=hc)
    for oid, name in columns.items():
        for index, value in table[oid].items():
            if isinstance(value, int) and value >= 0:
                out.counters.setdefault(index, {})[name] = value
    for index, value in table[IF_ADMIN].items():
        out.admin[index] = STATUS.get(_int(value) or 0, "unknown")
    for index, value in table[IF_OPER].items():
        out.oper[index] = STATUS.get(_int(value) or 0, "unknown")
    for index, value in table.get(IF_DISCONTINUITY, {}).items():
        if isinstance(value, int):
            out.discontinuity[index] = value
    return out
