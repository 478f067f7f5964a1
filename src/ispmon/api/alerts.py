"""``/alerts/``, ``/channels/``, ``/alert-rules/``, ``/escalation-policies/``, ``/notifications/``.

Thin handlers over `AlertService`. Channel URLs are credentials: they are accepted here and never
returned (GET shows apprise's privacy form, e.g. ``json://user:****@host/path``).
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ispmon.alerts.channels import MAX_URLS
from ispmon.alerts.rules import AlertRule
from ispmon.api.errors import json_response, list_response
from ispmon.api.listing import list_page, list_params
from ispmon.api.responses import (
    ALERT,
    ALERT_RULE,
    CHANNEL_TEST,
    CHANNEL_VIEW,
    ESCALATION_POLICY,
    NOTIFICATION,
)
from ispmon.api.responses_views import ALERT_SUMMARY
from ispmon.api.spec import Body, Call, Param, PathParam, Route
from ispmon.availability.endpoints import SLUG_SCHEMA
from ispmon.services.errors import InvalidInput
from ispmon.store.alerts import ALERT_LIST
from ispmon.store.notifications import NOTIFICATION_LIST

ALERT_ID = PathParam("alert_id", "integer", "Alert id (a positive integer)")
CHANNEL = PathParam("name", "slug", "Channel name (a slug)")
RULE_ID = PathParam("rule_id", "slug", "Alert rule id (a slug)")
NOTIFICATION_ID = PathParam("notification_id", "integer", "Notification id (a positive integer)")


class AcknowledgeBody(BaseModel):
    """Who takes the alert; escalation and reminders stop."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    by: str = Field(min_length=1, max_length=200, description="Who acknowledges (name or login)")
    note: str | None = Field(default=None, max_length=4000, description="e.g. 'on site, ETA 30 min'")


def _channel_schema(schema: dict[str, Any]) -> None:
    # Exactly one of url / urls, and neither may be null (the service refuses both otherwise); the
    # placeholder defaults below are not values a client may send, so they are not documented.
    schema["oneOf"] = [{"required": ["url"]}, {"required": ["urls"]}]
    for name in ("url", "urls"):
        schema["properties"][name].pop("default", None)


class ChannelBody(BaseModel):
    """A named channel: one apprise URL (`url`) or several (`urls`), exactly one of the two.

    Validated by `AlertService.create_channel`; this model is the document's description of it.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_channel_schema)

    name: str = Field(
        description="Channel name (a slug), used by rules and escalation steps",
        json_schema_extra=SLUG_SCHEMA,
    )
    url: str = Field(default="", min_length=1, description="An apprise URL, e.g. mailto://..., slack://...")
    urls: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, min_length=1, max_length=MAX_URLS, description="Several apprise URLs"
    )


async def list_alerts(call: Call) -> web.Response:
    return await list_page(call, ALERT_LIST, call.services.alerts.list_alerts)


async def alert_summary(call: Call) -> web.Response:
    return json_response(await call.services.alerts.alert_summary(call.query["hours"]))


async def get_alert(call: Call) -> web.Response:
    return json_response(await call.services.alerts.get_alert(call.path["alert_id"]))


async def acknowledge_alert(call: Call) -> web.Response:
    try:
        body = AcknowledgeBody.model_validate(call.body or {})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    return json_response(await call.services.alerts.acknowledge(call.path["alert_id"], body.by, body.note))


async def list_channels(call: Call) -> web.Response:
    return list_response(await call.services.alerts.list_channels())


async def create_channel(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.alerts.create_channel(call.body)
    return json_response(item, status=201, headers={"Location": f"/channels/{item['name']}"})


async def delete_channel(call: Call) -> web.Response:
    await call.services.alerts.delete_channel(call.path["name"])
    return web.Response(status=204)


async def test_channel(call: Call) -> web.Response:
    return json_response(await call.services.alerts.test_channel(call.path["name"]))


async def list_rules(call: Call) -> web.Response:
    return list_response(await call.services.alerts.list_rules())


async def create_rule(call: Call) -> web.Response:
    assert call.body is not None
    item = await call.services.alerts.create_rule(call.body)
    return json_response(item, status=201, headers={"Location": f"/alert-rules/{item['id']}"})


async def get_rule(call: Call) -> web.Response:
    return json_response(await call.services.alerts.get_rule(call.path["rule_id"]))


async def update_rule(call: Call) -> web.Response:
    assert call.body is not None
    return json_response(await call.services.alerts.update_rule(call.path["rule_id"], call.body))


async def delete_rule(call: Call) -> web.Response:
    await call.services.alerts.delete_rule(call.path["rule_id"])
    return web.Response(status=204)


async def list_policies(call: Call) -> web.Response:
    return list_response(await call.services.alerts.list_policies())


async def list_notifications(call: Call) -> web.Response:
    return await list_page(call, NOTIFICATION_LIST, call.services.alerts.list_notifications)


async def retry_notification(call: Call) -> web.Response:
    return json_response(await call.services.alerts.retry_notification(call.path["notification_id"]))


ROUTES: tuple[Route, ...] = (
    Route(
        "GET",
        "/alerts/",
        list_alerts,
        "listAlerts",
        "List alerts, newest first",
        "alerts",
        query=list_params(ALERT_LIST),
        response="page",
        also_without_slash=True,
        response_schema=ALERT,
    ),
    Route(
        "GET",
        "/alerts/summary",
        alert_summary,
        "alertSummary",
        "Counts by state and severity, notification outcomes, time to acknowledge",
        "alerts",
        query=(
            Param(
                "hours",
                "number",
                "Window length in hours",
                default=24.0,
                minimum=0,
                maximum=87600,
                exclusive_minimum=True,
            ),
        ),
        response_schema=ALERT_SUMMARY,
    ),
    Route(
        "GET",
        "/alerts/{alert_id}",
        get_alert,
        "getAlert",
        "An alert with its notifications (the seed's ServiceAlert records)",
        "alerts",
        path_params=(ALERT_ID,),
        response_schema=ALERT,
    ),
    Route(
        "POST",
        "/alerts/{alert_id}/acknowledge",
        acknowledge_alert,
        "acknowledgeAlert",
        "Acknowledge a firing alert: records who and when, stops escalation and reminders",
        "alerts",
        path_params=(ALERT_ID,),
        body=Body("AcknowledgeBody", AcknowledgeBody),
        errors=(409,),
        response_schema=ALERT,
    ),
    Route(
        "GET",
        "/channels/",
        list_channels,
        "listChannels",
        "Notification channels (URLs in apprise's privacy form)",
        "channels",
        response="list",
        also_without_slash=True,
        response_schema=CHANNEL_VIEW,
    ),
    Route(
        "POST",
        "/channels/",
        create_channel,
        "createChannel",
        "Register (or replace) a channel: a name and one or more apprise URLs",
        "channels",
        body=Body("ChannelBody", ChannelBody),
        status=201,
        errors=(409,),
        also_without_slash=True,
        response_schema=CHANNEL_VIEW,
    ),
    Route(
        "DELETE",
        "/channels/{name}",
        delete_channel,
        "deleteChannel",
        "Delete a channel registered through the API (409 while a rule, a policy or the default route uses it)",
        "channels",
        path_params=(CHANNEL,),
        status=204,
        errors=(409,),
        response="none",
    ),
    Route(
        "POST",
        "/channels/{name}/test",
        test_channel,
        "testChannel",
        "Send a test message to every URL of the channel now and report each outcome",
        "channels",
        path_params=(CHANNEL,),
        response_schema=CHANNEL_TEST,
        waits_on_target=True,
    ),
    Route(
        "GET",
        "/alert-rules/",
        list_rules,
        "listAlertRules",
        "Alert rules in effect (config file and API), then the default route",
        "alert-rules",
        response="list",
        also_without_slash=True,
        response_schema=ALERT_RULE,
    ),
    Route(
        "POST",
        "/alert-rules/",
        create_rule,
        "createAlertRule",
        "Create an alert rule (its channels and escalation policy must exist)",
        "alert-rules",
        body=Body("AlertRule", AlertRule),
        status=201,
        errors=(409,),
        also_without_slash=True,
        response_schema=ALERT_RULE,
    ),
    Route(
        "GET",
        "/alert-rules/{rule_id}",
        get_rule,
        "getAlertRule",
        "Get an alert rule",
        "alert-rules",
        path_params=(RULE_ID,),
        response_schema=ALERT_RULE,
    ),
    Route(
        "PUT",
        "/alert-rules/{rule_id}",
        update_rule,
        "updateAlertRule",
        "Update an alert rule (partial: given fields replace stored ones)",
        "alert-rules",
        path_params=(RULE_ID,),
        body=Body("AlertRuleUpdate", AlertRule, partial=True),
        errors=(409,),
        response_schema=ALERT_RULE,
    ),
    Route(
        "DELETE",
        "/alert-rules/{rule_id}",
        delete_rule,
        "deleteAlertRule",
        "Delete an alert rule created through the API",
        "alert-rules",
        path_params=(RULE_ID,),
        status=204,
        errors=(409,),
        response="none",
    ),
    Route(
        "GET",
        "/escalation-policies/",
        list_policies,
        "listEscalationPolicies",
        "Escalation policies (declared in the config file)",
        "alert-rules",
        response="list",
        also_without_slash=True,
        response_schema=ESCALATION_POLICY,
    ),
    Route(
        "GET",
        "/notifications/",
        list_notifications,
        "listNotifications",
        "The notification outbox: pending, sent, dead-lettered and cancelled notifications",
        "alerts",
        query=list_params(NOTIFICATION_LIST),
        response="page",
        also_without_slash=True,
        response_schema=NOTIFICATION,
    ),
    Route(
        "POST",
        "/notifications/{notification_id}/retry",
        retry_notification,
        "retryNotification",
        "Put a dead-lettered notification back in the outbox",
        "alerts",
        path_params=(NOTIFICATION_ID,),
        errors=(409,),
        response_schema=NOTIFICATION,
    ),
)
