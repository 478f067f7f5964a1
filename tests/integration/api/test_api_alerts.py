"""The alerting routes over HTTP against a real PostgreSQL: channels (validation, redaction, config
ownership), alert rules CRUD, acknowledgements and the outbox, with every 4xx naming its field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.escalation import EscalationPolicy
from ispmon.api.app import create_app
from ispmon.config import Settings
from ispmon.services.alerts import AlertService
from ispmon.services.context import AppServices
from ispmon.store.database import Database

PASSWORD = "hunter2-very-secret"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(db_dsn: str) -> AsyncIterator[Client]:
    db = await Database.connect(db_dsn, max_size=4)
    registry = ChannelRegistry([parse_channel("ops", "json://127.0.0.1:9/ops", source="config")])
    policy = EscalationPolicy.model_validate(
        {"id": "core", "steps": [{"after_minutes": 0, "channels": ["ops"]}]}
    )
    # A policy whose second step pages a channel the API has to create first.
    pager_policy = EscalationPolicy.model_validate(
        {
            "id": "pager-later",
            "steps": [
                {"after_minutes": 0, "channels": ["ops"]},
                {"after_minutes": 15, "channels": ["oncall-sms"]},
            ],
        }
    )
    alerts = AlertService(db, registry=registry, policies={"core": policy, "pager-later": pager_policy})
    client: Client = TestClient(TestServer(create_app(AppServices.build(db, Settings(), alerts=alerts))))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await db.close()


def _fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body["errors"]]


async def test_channels_are_validated_redacted_and_owned(client: Client) -> None:
    bad = await client.post(
        "/channels/", json={"name": "pager", "urls": ["json://127.0.0.1/x", "nosuch://a:b@c"]}
    )
    assert bad.status == 422
    body = await bad.json()
    assert _fields(body) == ["urls[1]"] and "b@c" not in body["message"]
    for payload, field in (
        ({"url": "json://127.0.0.1/x"}, "name"),
        ({"name": "Not A Slug", "url": "json://127.0.0.1/x"}, "name"),
        ({"name": "pager"}, "urls"),
        ({"name": "pager", "url": "json://h/x", "urls": ["json://h/y"]}, "urls"),
        ({"name": "pager", "url": "json://h/x", "colour": "red"}, "colour"),
    ):
        resp = await client.post("/channels/", json=payload)
        assert resp.status == 422, payload
        assert _fields(await resp.json()) == [field], payload

    with capture_logs() as logs:
        created = await client.post(
            "/channels/", json={"name": "pager", "url": f"json://noc:{PASSWORD}@127.0.0.1:9/hook"}
        )
    assert created.status == 201
    assert PASSWORD not in await created.text() and PASSWORD not in str(logs)
    listed = await (await client.get("/channels/")).json()
    assert [c["name"] for c in listed["items"]] == ["ops", "pager"]
    assert PASSWORD not in str(listed)
    assert {c["name"]: c["source"] for c in listed["items"]} == {"ops": "config", "pager": "api"}

    assert (await client.delete("/channels/ops")).status == 409
    assert (await client.delete("/channels/nosuch")).status == 404
    assert (await client.delete("/channels/pager")).status == 204
    assert [c["name"] for c in (await (await client.get("/channels/")).json())["items"]] == ["ops"]


async def test_channel_urls_are_shown_in_privacy_form_with_the_host(client: Client) -> None:
    shapes = {
        "hook": (
            f"json://noc:{PASSWORD}@hooks.example.net:8080/path",
            "json://noc:****@hooks.example.net:8080/path",
        ),
        "plain": ("json://127.0.0.1:8080/hook", "json://127.0.0.1:8080/hook"),
        "query": ("json://hooks.example.net/in?-token=t0kenS3cretValue", "json://hooks.example.net/in?"),
        "mail": (f"mailto://noc-bot:{PASSWORD}@smtp.example.net?to=noc@example.net", "@smtp.example.net/"),
    }
    for name, (url, _) in shapes.items():
        created = await client.post("/channels/", json={"name": name, "url": url})
        assert created.status == 201, await created.text()
    response = await client.get("/channels/")
    text = await response.text()
    assert PASSWORD not in text
    assert "t0kenS3cretValue" not in text
    assert "[redacted]" not in text  # every URL in its privacy form, none collapsed to the scheme
    shown = {c["name"]: c["urls"] for c in (await response.json())["items"]}
    assert shown["ops"][0].startswith("json://127.0.0.1:9/ops")  # the config file's channel
    for name, (_, visible) in shapes.items():
        assert visible in shown[name][0], (name, shown[name])


async def test_alert_rules_crud_names_the_field(client: Client) -> None:
    for payload, field in (
        ({"id": "slow", "kind": "threshold", "above": 500}, "metric"),
        ({"id": "slow", "kind": "threshold", "metric": "response_time_ms"}, "above"),
        ({"id": "o", "kind": "outage", "escalation": "nosuch"}, "escalation"),
        ({"id": "o", "kind": "page"}, "kind"),
    ):
        resp = await client.post("/alert-rules/", json=payload)
        assert resp.status == 422, payload
        assert field in _fields(await resp.json()), (payload, await resp.json())
    rule = {"id": "slow", "kind": "threshold", "metric": "response_time_ms", "above": 500, "for_checks": 3}
    created = await client.post("/alert-rules/", json=rule)
    assert created.status == 201 and created.headers["Location"] == "/alert-rules/slow"
    assert (await client.post("/alert-rules/", json=rule)).status == 409
    changed = await client.put("/alert-rules/slow", json={"above": 800})
    assert changed.status == 200 and (await changed.json())["above"] == 800
    assert (await client.put("/alert-rules/slow", json={"for_checks": 0})).status == 422
    # The rules in effect end with the default route, so alerts with rule_id "default" explain themselves.
    assert [r["id"] for r in (await (await client.get("/alert-rules/")).json())["items"]] == [
        "slow",
        "default",
    ]
    policies = await (await client.get("/escalation-policies/")).json()
    assert [p["id"] for p in policies["items"]] == ["core", "pager-later"]
    assert (await client.delete("/alert-rules/slow")).status == 204
    assert (await client.get("/alert-rules/slow")).status == 404


async def test_rules_may_only_page_channels_that_exist(client: Client) -> None:
    rule = {"id": "core", "kind": "outage", "tags": ["core"], "channels": ["ops", "oncall-sms", "ghost"]}
    missing = await client.post("/alert-rules/", json=rule)
    assert missing.status == 422
    body = await missing.json()
    assert _fields(body) == ["channels[1]", "channels[2]"]
    assert "'oncall-sms'" in body["errors"][0]["message"] and "ops" in body["errors"][0]["message"]
    policy_rule = {"id": "later", "kind": "outage", "escalation": "pager-later"}
    via_policy = await client.post("/alert-rules/", json=policy_rule)
    assert via_policy.status == 422
    body = await via_policy.json()
    assert _fields(body) == ["escalation"] and "steps[1].channels[0]" in body["errors"][0]["message"]

    # Once the channel exists (through the API), both are accepted; a PUT is checked the same way.
    sms = await client.post("/channels/", json={"name": "oncall-sms", "url": "json://127.0.0.1:9/sms"})
    assert sms.status == 201
    assert (
        await client.post("/alert-rules/", json={**rule, "channels": ["ops", "oncall-sms"]})
    ).status == 201
    assert (await client.post("/alert-rules/", json=policy_rule)).status == 201
    bad_put = await client.put("/alert-rules/core", json={"channels": ["ghost"]})
    assert bad_put.status == 422 and _fields(await bad_put.json()) == ["channels[0]"]

    # A channel in use cannot be deleted: the 409 names every user and where it names the channel.
    in_use = await client.delete("/channels/oncall-sms")
    assert in_use.status == 409
    body = await in_use.json()
    assert _fields(body) == ["name"]
    assert "alert rule 'core' (channels[1])" in body["message"]
    assert "escalation policy 'pager-later' (steps[1].channels[0])" in body["message"]
    assert (await client.put("/alert-rules/core", json={"channels": ["ops"]})).status == 200
    still = await (await client.delete("/channels/oncall-sms")).json()
    assert "alert rule 'core'" not in still["message"] and "pager-later" in still["message"]
    assert [c["name"] for c in (await (await client.get("/channels/")).json())["items"]] == [
        "oncall-sms",
        "ops",
    ]


async def test_the_default_route_is_shown_and_reserved(client: Client) -> None:
    shown = await client.get("/alert-rules/default")
    assert shown.status == 200
    body = await shown.json()
    assert (body["kind"], body["source"], body["endpoints"], body["tags"]) == ("outage", "default", [], [])
    taken = await client.post("/alert-rules/", json={"id": "default", "kind": "outage", "channels": ["ops"]})
    assert taken.status == 409 and _fields(await taken.json()) == ["id"]
    for response in (
        await client.put("/alert-rules/default", json={"channels": ["ops"]}),
        await client.delete("/alert-rules/default"),
    ):
        assert response.status == 409
        assert _fields(await response.json()) == ["rule_id"]
        assert "ALERT_NOTIFICATION_CHANNELS" in (await response.json())["message"]


async def test_acknowledge_and_the_outbox_views(client: Client, db_dsn: str) -> None:
    assert (await client.post("/alerts/7/acknowledge", json={"by": "alice"})).status == 404
    assert (await client.get("/alerts/0")).status == 400
    db = await Database.connect(db_dsn, apply_schema=False, max_size=1)
    try:
        alert_id = await db.pool.fetchval(
            """INSERT INTO alerts (endpoint_id, rule_id, kind, severity, title, message, started_at, notify_from)
               VALUES ('web', 'default', 'outage', 'major', 't', 'm', $1, $1) RETURNING id""",
            datetime.now(UTC),
        )
        await db.pool.execute(
            """INSERT INTO notifications (idempotency_key, alert_id, event, channel, title, body, short_body,
                                          state, attempts, last_error)
               VALUES ('k1', $1, 'declared', 'ops', 't', 'b', 's', 'dead', 10, 'target 1/1 (webhook): HTTP 500')""",
            alert_id,
        )
    finally:
        await db.close()
    missing = await client.post(f"/alerts/{alert_id}/acknowledge", json={})
    assert missing.status == 422 and _fields(await missing.json()) == ["by"]
    acked = await client.post(f"/alerts/{alert_id}/acknowledge", json={"by": "alice", "note": "on site"})
    assert acked.status == 200
    body = await acked.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"] == "alice"
    [record] = body["notifications"]
    assert record["delivered"] is False and record["state"] == "dead" and record["recipients"] == "ops"
    again = await client.post(f"/alerts/{alert_id}/acknowledge", json={"by": "bob"})
    assert again.status == 409 and "alice" in (await again.json())["message"]

    dead = await (await client.get("/notifications/?state=dead")).json()
    assert dead["count"] == 1 and dead["items"][0]["last_error"].endswith("HTTP 500")
    assert (await client.get("/notifications/?state=lost")).status == 400
    retried = await client.post(f"/notifications/{record['id']}/retry")
    assert retried.status == 200 and (await retried.json())["state"] == "pending"
    assert (await client.post(f"/notifications/{record['id']}/retry")).status == 409

    listed = await (await client.get("/alerts/?state=acknowledged&endpoint=web")).json()
    assert [a["id"] for a in listed["items"]] == [alert_id]
    assert (await client.get("/alerts/?severity=huge")).status == 400
    summary = await (await client.get("/alerts/summary")).json()
    assert summary["acknowledged"] == 1 and summary["notifications"]["pending"] == 1


async def test_parent_must_exist_and_not_form_a_cycle(client: Client) -> None:
    base = {"url": "http://127.0.0.1:9/", "check_interval": 60}
    missing = await client.post("/services/", json={**base, "id": "web", "name": "Web", "parent": "router"})
    assert missing.status == 422 and _fields(await missing.json()) == ["parent"]
    for ident, parent in (("router", None), ("web", "router")):
        resp = await client.post("/services/", json={**base, "id": ident, "name": ident, "parent": parent})
        assert resp.status == 201, await resp.text()
    cycle = await client.put("/services/router", json={"parent": "web"})
    assert cycle.status == 422
    body = await cycle.json()
    assert _fields(body) == ["parent"] and "cycle" in body["message"]
