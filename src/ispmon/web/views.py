"""Saved dashboard views: the ``dashboard_views`` rows and `ViewService` (list, get, create,
replace, delete), which the ``/views/`` routes and a Python caller share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from pydantic import ValidationError

from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError
from ispmon.store.listing import Filter, Key, ListSpec
from ispmon.web.view_spec import ViewSpec

_COLUMNS = "id, name, pinned, spec, created_at, updated_at"

VIEW_LIST = ListSpec(
    "views",
    f"SELECT {_COLUMNS} FROM dashboard_views",
    filters=(Filter("pinned", "boolean", "pinned", description="Only pinned (true) or unpinned (false) views"),),
    keyset=(Key("id", "text"),),
)


def view_dict(row: asyncpg.Record) -> dict[str, Any]:
    """The API's shape of a view: its definition plus the row's times."""
    out = ViewSpec.model_validate(row["spec"]).model_dump(mode="json")
    out["created_at"] = row["created_at"].isoformat()
    out["updated_at"] = row["updated_at"].isoformat()
    return out


def validate(data: Any) -> ViewSpec:
    try:
        return ViewSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


class ViewService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def list_views(
        self,
        *,
        pinned: bool | None = None,
        limit: int | None = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        sql, args = VIEW_LIST.query({"pinned": pinned}, limit=limit, offset=offset, after=after)
        return [view_dict(r) for r in await self.pool.fetch(sql, *args)]

    async def get_view(self, view_id: str) -> dict[str, Any]:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM dashboard_views WHERE id = $1", view_id)
        if row is None:
            raise NotFoundError("view", view_id)
        return view_dict(row)

    async def create_view(self, data: dict[str, Any]) -> dict[str, Any]:
        view = validate(data)
        row = await self.pool.fetchrow(
            f"""INSERT INTO dashboard_views (id, name, pinned, spec) VALUES ($1, $2, $3, $4)
                ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}""",
            view.id,
            view.name,
            view.pinned,
            view.model_dump(mode="json"),
        )
        if row is None:
            raise ConflictError(f"a view with id {view.id!r} already exists", field="id")
        return view_dict(row)

    async def update_view(self, view_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Partial: the given fields replace the stored ones; the id stays."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT spec FROM dashboard_views WHERE id = $1 FOR UPDATE", view_id)
            if row is None:
                raise NotFoundError("view", view_id)
            if "id" in data and data["id"] != view_id:
                raise InvalidInput([{"field": "id", "message": "cannot be changed (it is the path's view_id)"}])
            view = validate({**row["spec"], **data, "id": view_id})
            row = await conn.fetchrow(
                f"""UPDATE dashboard_views SET name = $2, pinned = $3, spec = $4, updated_at = now()
                    WHERE id = $1 RETURNING {_COLUMNS}""",
                view_id,
                view.name,
                view.pinned,
                view.model_dump(mode="json"),
            )
        return view_dict(row)

    async def delete_view(self, view_id: str) -> None:
        result: str = await self.pool.execute("DELETE FROM dashboard_views WHERE id = $1", view_id)
        if not result.endswith(" 1"):
            raise NotFoundError("view", view_id)
