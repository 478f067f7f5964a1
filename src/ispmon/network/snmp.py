"""SNMP I/O: GET and multi-column table walks, v1/v2c on our own codec, v3 with pysnmp 7 (asyncio).

One `SnmpClient` (one pysnmp engine for v3, one UDP socket per address family for v1/v2c) serves
every device; close it at shutdown. Community messages go through `ispmon.network.snmpwire`
because pysnmp's pyasn1 decoding was 70 % of a poll's CPU (profiled); USM stays with pysnmp.
Values come back as plain Python (int, str, or None for noSuchObject/noSuchInstance/endOfMibView),
so nothing above this module sees pysnmp types. Failures raise `SnmpError` with a kind
(``timeout``, ``auth``, ``agent``, ``error``); anything an agent sends that we cannot read is an
``agent`` error, never an exception of another type.

Tables are walked with GETBULK over several columns at once (one request returns that many rows of
every column), GETNEXT for SNMP v1. pysnmp's own bulk_walk_cmd walks one column per request chain.
``lookupMib=False`` everywhere: resolving every varbind through pysnmp's MIB view was more than half
the CPU of a poll (profiled), and we use numeric OIDs only.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
    usmAesBlumenthalCfb192Protocol,
    usmAesBlumenthalCfb256Protocol,
    usmAesCfb128Protocol,
    usmDESPrivProtocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.proto import rfc1902, rfc1905

from ispmon.network import snmpwire as wire
from ispmon.network.devices import DeviceSpec

AUTH = {
    "MD5": usmHMACMD5AuthProtocol,
    "SHA": usmHMACSHAAuthProtocol,
    "SHA-224": usmHMAC128SHA224AuthProtocol,
    "SHA-256": usmHMAC192SHA256AuthProtocol,
    "SHA-384": usmHMAC256SHA384AuthProtocol,
    "SHA-512": usmHMAC384SHA512AuthProtocol,
}
# net-snmp's AES-192/256 are the Blumenthal draft's key extension (what most agents implement).
PRIV = {
    "DES": usmDESPrivProtocol,
    "AES": usmAesCfb128Protocol,
    "AES-192": usmAesBlumenthalCfb192Protocol,
    "AES-256": usmAesBlumenthalCfb256Protocol,
}
MAX_TABLE_ROWS = 200_000  # a walk stops there: a looping or hostile agent cannot exhaust memory
# Per GETBULK response (columns x repetitions): ~3.5 KB of counters. pysnmp's cost per request is
# large, so fewer, bigger responses: 60 -> 120 took a 202-interface walk from 790 to 480 ms CPU.
MAX_VARBINDS = 120
_AUTH_ERRORS = ("WrongDigest", "UnknownUserName", "UnknownSecurityName", "DecryptionError",
                "UnsupportedSecLevel", "NotInTimeWindow", "UnknownEngineID", "AuthenticationError")


# RFC 3416 error-status names, for the message of an agent's error.
ERROR_STATUS = ("noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
                "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
                "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
                "inconsistentName")


class SnmpError(Exception):
    """A failed request: ``kind`` is timeout, auth, agent or error; the message names no secret."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def value_of(value: Any) -> int | str | None:
    """A pysnmp value as plain Python; None for the exceptions (noSuchObject, endOfMibView, ...)."""
    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView | rfc1905.UnSpecified):
        return None
    if isinstance(value, rfc1902.ObjectIdentifier | ObjectIdentity):
        # Without MIBs pysnmp hands OID values back as an unresolved ObjectIdentity.
        try:
            return str(value.getOid()) if isinstance(value, ObjectIdentity) else str(value)
        except Exception:
            return None
    if isinstance(value, rfc1902.IpAddress):
        raw = bytes(value)
        return ".".join(map(str, raw)) if len(raw) == 4 else None
    if isinstance(value, rfc1902.OctetString | rfc1902.Opaque | rfc1902.Bits):
        return bytes(value).decode("utf-8", "replace").replace("\x00", "")
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _raise_for(indication: Any, status: Any, index: Any, what: str) -> None:
    if indication:
        name = type(indication).__name__
        if name == "RequestTimedOut":
            raise SnmpError("timeout", f"{what}: no SNMP response before the timeout")
        if name in _AUTH_ERRORS:
            raise SnmpError("auth", f"{what}: SNMPv3 authentication failed ({indication})")
        raise SnmpError("error", f"{what}: {indication}")
    if status and int(status) != 0:
        raise SnmpError("agent", f"{what}: the agent answered {status.prettyPrint()} at {int(index)}")


class SnmpClient:
    """The one SnmpEngine of the process, and the credentials and transports of each device."""

    def __init__(self) -> None:
        self.engine = SnmpEngine()
        self._targets: dict[tuple[Any, ...], Any] = {}
        self._addresses: dict[str, tuple[int, tuple[str, int]]] = {}
        self._wire: dict[int, wire.WireTransport] = {}
        self._wire_loop: asyncio.AbstractEventLoop | None = None

    def close(self) -> None:
        self.engine.close_dispatcher()
        for transport in self._wire.values():
            transport.close()
        self._wire.clear()

    # -- v1/v2c: our codec, one socket per address family ------------------------------------------
    async def _resolve(self, device: DeviceSpec) -> tuple[int, tuple[str, int]]:
        # Keyed by the address as written: DeviceSpec.host/port parse it on every access.
        key = device.address
        found = self._addresses.get(key)
        if found is None:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(device.host, device.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise SnmpError("error", f"{device.address}: cannot resolve ({exc})") from None
            family, *_, sockaddr = infos[0]
            found = (family, (sockaddr[0], sockaddr[1]))
            if len(self._addresses) > 100_000:
                self._addresses.clear()
            self._addresses[key] = found
        return found

    async def _wire_request(self, device: DeviceSpec, pdu: int, oids: list[str], repetitions: int = 0) -> wire.Response:
        family, address = await self._resolve(device)
        loop = asyncio.get_running_loop()
        if self._wire_loop is not loop:  # a transport belongs to the loop that made it
            for old in self._wire.values():
                old.close()
            self._wire, self._wire_loop = {}, loop
        transport = self._wire.get(family)
        if transport is None:
            opened = await wire.open_transport(family)
            # Another request may have opened one meanwhile: keep one socket per family.
            transport = self._wire.setdefault(family, opened)
            if transport is not opened:
                opened.close()
        community = device.community or ""

        def build(request_id: int) -> bytes:
            return wire.encode_request(device.version, community, pdu, request_id, oids, max_repetitions=repetitions)

        try:
            data = await transport.request(address, build, device.timeout, device.retries)
        except TimeoutError:
            raise SnmpError("timeout", f"{device.id}: no SNMP response before the timeout") from None
        try:
            response = wire.decode_response(data)
        except wire.WireError as exc:
            raise SnmpError("agent", f"{device.id}: unreadable answer ({exc})") from None
        if response.error_status and not (device.version == "1" and response.error_status == 2 and pdu == wire.GETNEXT):
            status = response.error_status
            name = ERROR_STATUS[status] if 0 <= status < len(ERROR_STATUS) else str(status)
            raise SnmpError("agent", f"{device.id}: the agent answered {name} at {response.error_index}")
        return response

    def _auth(self, device: DeviceSpec) -> CommunityData | UsmUserData:
        if device.version != "3":
            # mpModel 0 is SNMPv1, 1 is v2c.
            return CommunityData(device.community or "", mpModel=0 if device.version == "1" else 1)
        return UsmUserData(
            device.username,
            device.auth_key,
            device.priv_key,
            authProtocol=AUTH[device.auth_protocol] if device.auth_protocol else usmNoAuthProtocol,
            privProtocol=PRIV[device.priv_protocol] if device.priv_protocol else usmNoPrivProtocol,
        )

    async def _target(self, device: DeviceSpec) -> Any:
        key = (device.host, device.port, device.timeout, device.retries)
        target = self._targets.get(key)
        if target is None:
            try:
                ipaddress.IPv6Address(device.host)
                kind: Any = Udp6TransportTarget
            except ValueError:
                kind = UdpTransportTarget
            try:
                target = await kind.create((device.host, device.port), timeout=device.timeout, retries=device.retries)
            except Exception as exc:  # pysnmp raises its own PySnmpError for names that do not resolve
                raise SnmpError("error", f"{device.address}: cannot resolve ({exc})") from None
            if len(self._targets) > 100_000:
                self._targets.clear()
            self._targets[key] = target
        return target

    def _context(self, device: DeviceSpec) -> ContextData:
        return ContextData(contextName=device.context or "")

    async def get(self, device: DeviceSpec, oids: Iterable[str]) -> dict[str, int | str | None]:
        """GET these OIDs; each maps to its value, None when the agent has no such object."""
        names = list(oids)
        if device.version != "3":
            answer = await self._wire_request(device, wire.GET, names)
            found = dict.fromkeys(names)
            for oid, value, _ in answer.varbinds:
                found[oid] = value
            return found
        try:
            indication, status, index, binds = await get_cmd(
                self.engine,
                self._auth(device),
                await self._target(device),
                self._context(device),
                *(ObjectType(ObjectIdentity(o)) for o in names),
                lookupMib=False,
            )
        except SnmpError:
            raise
        except Exception as exc:  # pysnmp decoding an agent's garbage
            raise SnmpError("agent", f"{device.id}: unreadable answer ({type(exc).__name__})") from None
        _raise_for(indication, status, index, device.id)
        out: dict[str, int | str | None] = dict.fromkeys(names)
        for oid, value in binds:
            out[str(oid)] = value_of(value)
        return out

    async def table(self, device: DeviceSpec, columns: Iterable[str]) -> dict[str, dict[int, int | str | None]]:
        """Walk table columns (OIDs of IF-MIB-style columns indexed by one integer) side by side.

        Returns ``{column: {index: value}}``; a column the agent lacks is an empty dict.
        """
        prefixes = [c.strip(".") for c in columns]
        out: dict[str, dict[int, int | str | None]] = {p: {} for p in prefixes}
        cursor = {p: p for p in prefixes}
        active = list(prefixes)
        last: dict[str, int] = {}
        rows = 0
        while active and rows < MAX_TABLE_ROWS:
            binds = await self._next(device, [cursor[p] for p in active], max(1, MAX_VARBINDS // len(active)))
            if not binds:
                break
            # Row after row: column c's varbinds are every width-th from c.
            width = len(active)
            done: set[str] = set()
            for column, prefix in enumerate(active):
                head, cut, values = prefix + ".", len(prefix) + 1, out[prefix]
                previous, reached = last.get(prefix, -1), None
                for text, value, end in binds[column::width]:
                    suffix = text[cut:] if text.startswith(head) else ""
                    if end or not suffix.isdigit():
                        done.add(prefix)
                        break
                    index = int(suffix)
                    if index <= previous:
                        done.add(prefix)  # the agent did not move forward: stop instead of looping
                        break
                    previous = index
                    values[index] = value
                    reached = text
                    rows += 1
                last[prefix] = previous
                if reached is not None:
                    cursor[prefix] = reached
            active = [p for p in active if p not in done]
        return out

    async def _next(self, device: DeviceSpec, oids: list[str], repetitions: int) -> list[wire.Varbind]:
        """One GETBULK (GETNEXT for v1) from these OIDs; a flat list of (oid, value, end), row after row."""
        if device.version != "3":
            if device.version == "1":
                answer = await self._wire_request(device, wire.GETNEXT, oids)
                return [] if answer.error_status == 2 else answer.varbinds  # noSuchName: past the MIB's end
            return (await self._wire_request(device, wire.GETBULK, oids, repetitions)).varbinds
        auth, target, context = self._auth(device), await self._target(device), self._context(device)
        objects = [ObjectType(ObjectIdentity(o)) for o in oids]
        try:
            if device.version == "1":
                indication, status, index, binds = await next_cmd(
                    self.engine, auth, target, context, *objects, lookupMib=False
                )
            else:
                indication, status, index, binds = await bulk_cmd(
                    self.engine, auth, target, context, 0, repetitions, *objects, lookupMib=False
                )
        except SnmpError:
            raise
        except Exception as exc:
            raise SnmpError("agent", f"{device.id}: unreadable answer ({type(exc).__name__})") from None
        if device.version == "1" and status and int(status) == 2:  # noSuchName: past the end of the MIB
            return []
        _raise_for(indication, status, index, device.id)
        return [(str(b[0]), value_of(b[1]), _end(b[1])) for b in binds]


def _end(value: Any) -> bool:
    return isinstance(value, rfc1905.EndOfMibView | rfc1905.NoSuchObject | rfc1905.NoSuchInstance)
