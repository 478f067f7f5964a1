"""NetworkService: SNMP devices, polls on demand, interfaces, their samples and the network summary.

Works with the daemon's running `Poller` (changes reach its loops at once, a poll on demand shares
its previous readings) or without one (a Python user or the CLI: the service makes its own poller,
whose samples are written directly). Definitions are shown with their secrets redacted.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import ValidationError

from ispmon.network.devices import DeviceSpec, build_device, restore_redacted
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, editable
from ispmon.store import rollups
from ispmon.store.interfaces import DEVICE_EVENT_LIST
from ispmon.store.listing import ListSpec

if TYPE_CHECKING:
    from ispmon.network.poller import Poller
    from ispmon.store.database import Database

# Fields GET adds to a device; ignored when a client sends them back in a PUT.
READ_ONLY_FIELDS = frozenset({"source", "created_at", "updated_at", "state"})


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def device_dict(row: asyncpg.Record) -> dict[str, Any]:
    """A device as the API shows it: its definition (secrets redacted), bookkeeping and poll state."""
    out = build_device(row["spec"]).public_dict()
    out["source"] = row["source"]
    out["created_at"] = _iso(row["created_at"])
    out["updated_at"] = _iso(row["updated_at"])
    out["state"] = {
        "reachable": row["reachable"],
        "last_error": row["last_error"],
        "sys_name": row["sys_name"],
        "sys_descr": row["sys_descr"],
        "sys_object_id": row["sys_object_id"],
        "sys_uptime": row["sys_uptime"],
        "last_poll_at": _iso(row["last_poll_at"]),
        "last_discovery_at": _iso(row["last_discovery_at"]),
    }
    return out


def interface_dict(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "device_id": row["device_id"],
        "if_index": row["if_index"],
        "name": row["name"],
        "descr": row["descr"],
        "alias": row["alias"],
        "if_type": row["if_type"],
        "speed_bps": (row["high_speed_mbps"] or 0) * 1_000_000 or row["speed_bps"],
        "admin_status": row["admin_status"],
        "oper_status": row["oper_status"],
        "last_change": row["last_change"],
        "polled": row["selected"],
        "present": row["present"],
        "last_sample": row["last_sample"],
    }


class NetworkService:
    def __init__(self, db: Database, poller: Poller | None = None) -> None:
        self.db = db
        self.poller = poller
        self._own_poller: Poller | None = None

    # -- devices -----------------------------------------------------------------------------------
    def _validate(self, data: Any) -> DeviceSpec:
        if not isinstance(data, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        try:
            return build_device(data)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None

    async def _check_parent(self, spec: DeviceSpec) -> None:
        if spec.parent is not None and await self.db.endpoints.get(spec.parent) is None:
            raise InvalidInput([{"field": "parent", "message": f"no endpoint {spec.parent!r}"}])

    async def create_device(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = self._validate(data)
        await self._check_parent(spec)
        row = await self.db.devices.insert(spec, source="api")
        if row is None:
            raise ConflictError(f"a device with id {spec.id!r} already exists", field="id")
        if self.poller is not None:
            self.poller.upsert(spec)
        return device_dict(row)

    async def list_devices(
        self,
        *,
        tag: str | None = None,
        active: bool | None = None,
        reachable: bool | None = None,
        limit: int = 1000,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        rows = await self.db.devices.list(
            tag=tag, active=active, reachable=reachable, limit=limit, offset=offset, after=after
        )
        return [device_dict(r) for r in rows]

    async def get_device(self, device_id: str) -> dict[str, Any]:
        row = await self.db.devices.get(device_id)
        if row is None:
            raise NotFoundError("device", device_id)
        return device_dict(row)

    async def update_device(self, device_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Partial update: the given fields replace the stored ones (REDACTED keeps a stored secret)."""
        if not isinstance(changes, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        row = editable(await self.db.devices.get(device_id), "device", device_id, "change")
        if "id" in changes and changes["id"] != device_id:
            raise InvalidInput([{"field": "id", "message": "cannot be changed (delete and create instead)"}])
        changes = {k: v for k, v in changes.items() if k not in READ_ONLY_FIELDS}
        current = dict(row["spec"])
        if "version" in changes and changes["version"] != current.get("version"):
            # Credentials of another version do not carry over.
            for field in ("community", "username", "auth_protocol", "auth_key", "priv_protocol", "priv_key",
                          "context"):
                current.pop(field, None)
        spec = self._validate({**current, **restore_redacted(changes, row["spec"]), "id": device_id})
        await self._check_parent(spec)
        row = await self.db.devices.upsert(spec, source="api")
        if self.poller is not None:
            self.poller.upsert(spec)
        return device_dict(row)

    async def delete_device(self, device_id: str) -> None:
        editable(await self.db.devices.get(device_id), "device", device_id, "remove")
        await self.db.devices.delete(device_id)
        if self.poller is not None:
            self.poller.remove(device_id)

    # -- polling -----------------------------------------------------------------------------------
    def _poller(self) -> Poller:
        if self.poller is not None:
            return self.poller
        if self._own_poller is None:
            from ispmon.network.poller import Poller
            from ispmon.network.snmp import SnmpClient

            self._own_poller = Poller(self.db, SnmpClient(), writer=None)
        return self._own_poller

    async def poll_device(self, device_id: str) -> dict[str, Any]:
        """Poll now: discovery when due, the counters, and rates against the previous reading."""
        row = await self.db.devices.get(device_id)
        if row is None:
            raise NotFoundError("device", device_id)
        return await self._poller().poll_now(build_device(row["spec"]))

    async def close(self) -> None:
        """Close the SNMP engine this service made for itself (none when the daemon's is used)."""
        if self._own_poller is not None:
            self._own_poller.client.close()
            self._own_poller = None

    # -- interfaces --------------------------------------------------------------------------------
    async def list_interfaces(self, device_id: str) -> list[dict[str, Any]]:
        if await self.db.devices.get(device_id) is None:
            raise NotFoundError("device", device_id)
        return [interface_dict(r) for r in await self.db.interfaces.for_device(device_id)]

    async def get_interface(self, interface_id: int) -> dict[str, Any]:
        row = await self.db.interfaces.get(interface_id)
        if row is None:
            raise NotFoundError("interface", interface_id)
        return interface_dict(row)

    async def interface_metrics(
        self,
        interface_id: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        step: str = "raw",
        limit: int = 10_000,
    ) -> dict[str, Any]:
        """Samples in [since, until) (default: the last hour), oldest first: the raw samples
        (``step=raw``) or the buckets of the 5m / 1h / 1d rollup, each rate's average with its min,
        max and 95th percentile beside it."""
        if await self.db.interfaces.get(interface_id) is None:
            raise NotFoundError("interface", interface_id)
        until = until or datetime.now(UTC)
        since = since or until - timedelta(hours=1)
        if step == "raw":
            rows = await self.db.interfaces.metrics(interface_id, since, until, limit)
            items = [{**dict(r), "at": r["at"].isoformat()} for r in rows]
        else:
            found = await rollups.rollup_rows(self.db.pool, interface_id, rollups.STEPS[step], since, until, limit)
            items = [rollups.rollup_dict(r) for r in found]
        return {
            "interface_id": interface_id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "step": step,
            "items": items,
            "count": len(items),
        }

    async def interface_percentile(
        self,
        interface_id: int,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        percentile: float = 95.0,
        bucket: int = 300,
    ) -> dict[str, Any]:
        """The 95th (or any) percentile of an interface's traffic, in, out, and the billable
        max(in, out), over [since, until) (default: the last 30 days), from `bucket`-second averages
        (5 minutes, as carriers bill), nearest rank."""
        if await self.db.interfaces.get(interface_id) is None:
            raise NotFoundError("interface", interface_id)
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=30)
        row, sources = await rollups.percentile_finest(self.db.pool, interface_id, since, until, percentile, bucket)
        values = [v for v in (row["in_bps"], row["out_bps"]) if v is not None]
        return {
            "interface_id": interface_id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "percentile": percentile,
            "bucket_s": bucket,
            "buckets": row["buckets"],
            "sources": sources,
            "in_bps": row["in_bps"],
            "out_bps": row["out_bps"],
            "billable_bps": max(values) if values else None,
            "in_max_bps": row["in_max_bps"],
            "out_max_bps": row["out_max_bps"],
        }

    async def list_events(self, spec: ListSpec, **query: Any) -> list[dict[str, Any]]:
        """Device and interface state changes (`spec`: all of them, or one device's), newest first."""
        if spec is DEVICE_EVENT_LIST and await self.db.devices.get(query["device_id"]) is None:
            raise NotFoundError("device", query["device_id"])
        rows = await self.db.interfaces.list_events(spec, **query)
        return [{**dict(r), "at": r["at"].isoformat(), "data": r["data"]} for r in rows]

    async def summary(self, top: int = 10) -> dict[str, Any]:
        found = await self.db.interfaces.summary(top)
        counts = found["counts"]
        busiest = [
            {"id": r["id"], "device_id": r["device_id"], "name": r["name"], "utilisation_pct": r["util"],
             "last_sample": r["last_sample"]}
            for r in found["busiest"]
            if r["util"] is not None
        ]
        return {
            "devices": {
                "total": counts["devices"],
                "up": counts["devices_up"],
                "unreachable": counts["devices_unreachable"],
                "unknown": counts["devices_unknown"],
            },
            "interfaces_down": [dict(r) for r in found["down"]],
            "top_utilised": busiest,
            "generated_at": datetime.now(UTC).isoformat(),
        }
