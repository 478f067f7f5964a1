"""CustomerService: subscribers (plan, quota, period, enforcement, identities) through the API,
the config file and Python; one at a time or tens of thousands in one bulk upsert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import ValidationError

from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, editable
from ispmon.store.usage_customers import CustomerRepo, CustomerRow, IdentityConflict
from ispmon.usage.customers import CustomerSpec
from ispmon.validation import error_list

if TYPE_CHECKING:
    from ispmon.store.database import Database

MAX_BULK = 100_000


def _row(spec: CustomerSpec) -> CustomerRow:
    return CustomerRow(spec.id, spec.name, spec.model_dump(mode="json"), spec.usernames, spec.prefixes)


def _conflict_error(
    conflicts: list[IdentityConflict], specs: Sequence[CustomerSpec], prefix: str = ""
) -> ConflictError:
    first = conflicts[0]
    index = ""
    for i, spec in enumerate(specs):
        values = spec.usernames if first.kind == "usernames" else spec.prefixes
        if first.value in values:
            index = f"{prefix}[{i}]." if prefix else ""
            position = values.index(first.value)
            break
    else:
        position = 0
    return ConflictError(
        f"{first.value!r} belongs to customer {first.owner!r}"
        + (f" (and {len(conflicts) - 1} more identities are taken)" if len(conflicts) > 1 else ""),
        field=f"{index}{first.kind}[{position}]",
    )


class CustomerService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.repo = CustomerRepo(db.pool)

    @staticmethod
    def validate(data: Any) -> CustomerSpec:
        if not isinstance(data, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        try:
            return CustomerSpec.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None

    @staticmethod
    def _dict(row: asyncpg.Record) -> dict[str, Any]:
        out = dict(row["spec"])
        out["source"] = row["source"]
        out["created_at"] = row["created_at"].isoformat()
        out["updated_at"] = row["updated_at"].isoformat()
        return out

    async def list_customers(
        self,
        *,
        plan: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        return [
            self._dict(r) for r in await self.repo.list(plan=plan, limit=limit, offset=offset, after=after)
        ]

    async def get_customer(self, customer_id: str) -> dict[str, Any]:
        row = await self.repo.get(customer_id)
        if row is None:
            raise NotFoundError("customer", customer_id)
        return self._dict(row)

    async def create_customer(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = self.validate(data)
        created, conflicts = await self.repo.upsert([_row(spec)], create_only=True)
        if conflicts:
            raise _conflict_error(conflicts, [spec])
        if not created:
            raise ConflictError(f"a customer with id {spec.id!r} already exists", field="id")
        return await self.get_customer(spec.id)

    async def update_customer(self, customer_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise InvalidInput([{"field": "(body)", "message": "must be a JSON object"}])
        row = editable(await self.repo.get(customer_id), "customer", customer_id, "change")
        if "id" in changes and changes["id"] != customer_id:
            raise InvalidInput([{"field": "id", "message": "cannot be changed"}])
        spec = self.validate({**row["spec"], **changes, "id": customer_id})
        _, conflicts = await self.repo.upsert([_row(spec)])
        if conflicts:
            raise _conflict_error(conflicts, [spec])
        return await self.get_customer(customer_id)

    async def delete_customer(self, customer_id: str) -> None:
        editable(await self.repo.get(customer_id), "customer", customer_id, "remove")
        await self.repo.delete(customer_id)

    async def bulk_upsert(self, items: Any) -> dict[str, Any]:
        """Create or replace every customer of `items` in one transaction, or none: every invalid
        item is reported (``customers[i].field``) and nothing is written."""
        if not isinstance(items, list):
            raise InvalidInput([{"field": "customers", "message": "must be a list of customers"}])
        if len(items) > MAX_BULK:
            raise InvalidInput([{"field": "customers", "message": f"at most {MAX_BULK} customers per call"}])
        specs, errors = validate_many(items, "customers")
        if errors:
            raise InvalidInput(errors[:100])
        owned = await self.repo.existing([s.id for s in specs])
        config_owned = [i for i, s in enumerate(specs) if owned.get(s.id) == "config"]
        if config_owned:
            i = config_owned[0]
            raise ConflictError(
                f"customer {specs[i].id!r} is defined in the config file; change it there",
                field=f"customers[{i}].id",
            )
        created, conflicts = await self.repo.upsert([_row(s) for s in specs])
        if conflicts:
            raise _conflict_error(conflicts, specs, "customers")
        return {"count": len(specs), "created": len(created), "updated": len(specs) - len(created)}

    async def sync_config(self, specs: list[CustomerSpec]) -> dict[str, Any]:
        """Make the 'config' customers equal to the file's [[customers]] (at start and reload)."""
        created, conflicts = await self.repo.upsert([_row(s) for s in specs], source="config")
        if conflicts:
            raise _conflict_error(conflicts, specs, "customers")
        removed = await self.repo.remove_config_except([s.id for s in specs])
        return {"synced": len(specs), "created": len(created), "removed": removed}


def validate_many(items: list[Any], where: str) -> tuple[list[CustomerSpec], list[dict[str, str]]]:
    """Every item validated; errors name ``<where>[i].field``; ids and identities unique across items."""
    specs: list[CustomerSpec] = []
    errors: list[dict[str, str]] = []
    ids: dict[str, int] = {}
    identities: dict[tuple[str, str], int] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append({"field": f"{where}[{index}]", "message": "must be an object"})
            continue
        try:
            spec = CustomerSpec.model_validate(item)
        except ValidationError as exc:
            errors.extend(error_list(exc, prefix=f"{where}[{index}]"))
            continue
        if spec.id in ids:
            errors.append(
                {
                    "field": f"{where}[{index}].id",
                    "message": f"duplicate id {spec.id!r} (also {where}[{ids[spec.id]}])",
                }
            )
            continue
        ids[spec.id] = index
        for kind, values in (("usernames", spec.usernames), ("prefixes", spec.prefixes)):
            for position, value in enumerate(values):
                other = identities.setdefault((kind, value), index)
                if other != index:
                    errors.append(
                        {
                            "field": f"{where}[{index}].{kind}[{position}]",
                            "message": f"{value!r} is also in {where}[{other}]",
                        }
                    )
        specs.append(spec)
    return specs, errors
