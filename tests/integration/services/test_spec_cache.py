"""Endpoint reads reuse the validated definition of an unchanged row, and never serve a stale one.

Against a real PostgreSQL: rows are changed through the service, behind its back (another agent,
the config file) and deleted; what the API shows must follow every change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from ispmon.availability.endpoints import REDACTED, build_endpoint
from ispmon.services import AvailabilityService
from ispmon.store.database import Database

DEFINITION = {
    "id": "cached",
    "name": "Cached",
    "url": "http://127.0.0.1:9/health",
    "tags": ["core"],
    "headers": {"Authorization": "Bearer s3cret", "Accept": "text/plain"},
}


@pytest.fixture
async def service(db_dsn: str) -> AsyncIterator[AvailabilityService]:
    db = await Database.connect(db_dsn, max_size=2)
    try:
        yield AvailabilityService(db)
    finally:
        await db.close()


async def listed(service: AvailabilityService) -> dict[str, dict[str, object]]:
    return {e.id: e.to_dict() for e in await service.list_endpoints()}


async def test_an_unchanged_row_is_not_validated_again(service: AvailabilityService) -> None:
    await service.create_endpoint(DEFINITION)
    first = (await service.list_endpoints())[0]
    second = (await service.list_endpoints())[0]
    again = await service.get_endpoint("cached")
    assert first.spec is second.spec is again.spec  # one validation for three reads
    assert first.to_dict() == second.to_dict()


async def test_reads_follow_every_change_of_the_row(service: AvailabilityService) -> None:
    await service.create_endpoint(DEFINITION)
    await service.list_endpoints()
    await service.update_endpoint("cached", {"timeout": 2.5})
    assert (await listed(service))["cached"]["timeout"] == 2.5
    # Behind the service's back: the config file's sync or another agent writing the row.
    await service.db.endpoints.upsert(build_endpoint({**DEFINITION, "name": "Renamed", "timeout": 3}))
    row = (await listed(service))["cached"]
    assert (row["name"], row["timeout"]) == ("Renamed", 3)
    await service.db.pool.execute(
        "UPDATE endpoints SET spec = $1 WHERE id = 'cached'",
        {**json.loads(json.dumps(DEFINITION)), "tags": ["edge"]},
    )
    assert (await listed(service))["cached"]["tags"] == ["edge"]
    await service.delete_endpoint("cached")
    assert await listed(service) == {}
    assert len(service.specs) == 0


async def test_changing_a_returned_dict_does_not_change_the_next_read(service: AvailabilityService) -> None:
    await service.create_endpoint(DEFINITION)
    shown = (await listed(service))["cached"]
    assert shown["headers"] == {"Authorization": REDACTED, "Accept": "text/plain"}
    shown["headers"]["Accept"] = "changed"  # type: ignore[index]
    shown["tags"].append("changed")  # type: ignore[attr-defined]
    shown["name"] = "changed"
    again = (await listed(service))["cached"]
    assert again["headers"] == {"Authorization": REDACTED, "Accept": "text/plain"}
    assert (again["tags"], again["name"]) == (["core"], "Cached")
