"""A CoA planned for a NAS that is then deleted through the API: `GET /enforcements/` shows it
`unsent` with the reason, as /openapi.json documents (the state filter takes the new value)."""

from __future__ import annotations

from datetime import UTC, datetime

from ispmon.services.context import AppServices
from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.enforce import Enforcer
from tests.integration.api.conftest import Client
from tests.integration.api.documented import assert_documented
from tests.integration.usage.test_rollups import interim


async def test_an_unsendable_row_is_listed_unsent_with_its_reason(
    client: Client, services: AppServices
) -> None:
    customer = {
        "id": "carol", "name": "Carol", "usernames": ["carol"], "quota_bytes": 1000,
        "enforcement": {"policy": "coa", "attributes": {"Filter-Id": "throttled"}},
    }  # fmt: skip
    assert (await client.post("/customers/", json=customer)).status == 201
    nas = {"id": "bras-1", "address": "127.0.0.1", "secret": "s3cret-coa", "coa_port": 9}
    assert (await client.post("/nas/", json=nas)).status == 201
    await AccountingStore(services.db.pool).commit([interim("S-9", 200, 900, 1, datetime.now(UTC))])
    enforcer = Enforcer(services.db.pool, timeout=0.2, tries=1)
    assert await enforcer.check("carol") == [80, 100]
    assert (await client.delete("/nas/bras-1")).status == 204
    assert await enforcer.dispatch() == 1
    resp = await client.get("/enforcements/?state=unsent")
    body = await assert_documented(client, "GET", "/enforcements/", resp)
    assert [(e["state"], e["nas_id"], e["attempts"], e["detail"]) for e in body["items"]] == [
        ("unsent", "bras-1", 0, "NAS bras-1 is not configured any more: nothing was sent")
    ]
    resp = await client.get("/customers/carol/enforcements?state=unsent")
    assert (
        len((await assert_documented(client, "GET", "/customers/{customer_id}/enforcements", resp))["items"])
        == 1
    )
    assert (await (await client.get("/enforcements/?state=pending")).json())["items"] == []
