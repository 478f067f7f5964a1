"""`ispmon snmp-walk`: what discovery finds on a device, printed for an operator checking credentials.

The definition comes from the config file or the database (by device id) or from the command line
(a host and --community or --v3 options); the output is the system group and one line per
interface. Credentials are never printed.
"""

from __future__ import annotations

import json
from typing import Any

from ispmon.network.devices import DeviceSpec
from ispmon.network.discovery import Discovered, discover, read_counters
from ispmon.network.snmp import SnmpClient


async def walk(spec: DeviceSpec) -> tuple[Discovered, str]:
    """Discover the device and read its counters once: (what was found, "64-bit" or "32-bit").
    Raises SnmpError when the device does not answer or refuses the credentials."""
    import time

    client = SnmpClient()
    try:
        found = await discover(client, spec)
        counters = await read_counters(client, spec, found.hc, time.time)
    finally:
        client.close()
    return found, "64-bit" if counters.hc else "32-bit"


def _speed(item: dict[str, Any]) -> str:
    bps = (item.get("high_speed_mbps") or 0) * 1_000_000 or item.get("speed_bps") or 0
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if bps >= size:
            return f"{bps / size:g}{unit}"
    return str(bps) if bps else "-"


def render(spec: DeviceSpec, found: Discovered, width: str, as_json: bool = False) -> str:
    if as_json:
        return json.dumps(
            {"device": spec.public_dict(), "system": found.system, "counters": width, "interfaces": found.interfaces},
            default=str,
        )
    system = found.system
    lines = [
        f"{spec.id} {spec.address} SNMP v{spec.version}"
        + (f" ({spec.security_level})" if spec.security_level else ""),
        f"  sysName:   {system.get('sys_name') or '-'}",
        f"  sysDescr:  {(system.get('sys_descr') or '-').splitlines()[0][:100]}",
        f"  sysObjectID: {system.get('sys_object_id') or '-'}",
        f"  sysUpTime: {(system.get('sys_uptime') or 0) / 100:.0f} s",
        f"  counters:  {width}",
        f"  interfaces: {len(found.interfaces)} ({sum(1 for i in found.interfaces if i['selected'])} polled)",
        f"  {'ifIndex':>8}  {'name':<24} {'type':>5} {'speed':>7}  {'admin':<6} {'oper':<14} {'poll':<4} alias",
    ]
    for item in found.interfaces:
        lines.append(
            f"  {item['if_index']:>8}  {item['name'][:24]:<24} {item['if_type'] or '-':>5} {_speed(item):>7}  "
            f"{item['admin_status'] or '-':<6} {item['oper_status'] or '-':<14} "
            f"{'yes' if item['selected'] else 'no':<4} {item['alias']}"
        )
    return "\n".join(lines)
