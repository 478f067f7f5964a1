"""`AlertService`: alerts, acknowledgements, channels, rules and the notification outbox.

The one way in for the REST API, the CLI and Python users. Works with a running engine (the
daemon: acknowledgements stop escalation at once, new channels and rules take effect without a
restart) and without one (a script over the database: reads, and writes that the daemon picks
up at its next start).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import ValidationError

from ispmon.alerts.channels import Channel, ChannelError, ChannelRegistry, parse_channel
from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.messages import test_message
from ispmon.alerts.routing import channel_users, undefined_channel_errors
from ispmon.alerts.rules import DEFAULT_RULE_ID, AlertRule, default_route
from ispmon.availability.redaction import public_check, public_text
from ispmon.models import Severity
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError
from ispmon.store.alerts import ALERT_KINDS, ALERT_STATES, AlertRepo, RuleRepo
from ispmon.store.notifications import STATES as NOTIFICATION_STATES
from ispmon.store.notifications import ChannelRepo, NotificationRepo

if TYPE_CHECKING:
    import asyncpg

    from ispmon.alerts.engine import AlertEngine
    from ispmon.alerts.notifier import Notifier
    from ispmon.store.database import Database

log = structlog.get_logger("ispmon.alerts")


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def alert_dict(row: asyncpg.Record) -> dict[str, Any]:
    out = {k: _iso(v) for k, v in dict(row).items()}
    out["suppressed"] = row["suppressed_by"] is not None
    # The message and details quote the check's error, which may quote a URL with a query secret.
    if isinstance(out.get("message"), str):
        out["message"] = public_text(out["message"])
    if isinstance(out.get("details"), dict):
        out["details"] = public_check(out["details"])
    return out


def notification_dict(row: asyncpg.Record) -> dict[str, Any]:
    """A notification as the seed's ServiceAlert record (plus the outbox's delivery state)."""
    return {
        "id": row["id"],
        "alert_id": row["alert_id"],
        "outage_id": row["outage_id"],
        "endpoint_id": row["endpoint_id"],
        "alert_time": _iso(row["created_at"]),
        "notification_type": row["notification_type"],
        "recipients": row["channel"],  # a channel name: its URLs hold credentials and are never shown
        "channel": row["channel"],
        "event": row["event"],
        "step": row["step"],
        "title": row["title"],  # the messages may quote a URL from the check's error (see alert_dict)
        "message": public_text(row["body"]) if row["body"] else row["body"],
        "short_message": public_text(row["short_body"]) if row["short_body"] else row["short_body"],
        "delivered": row["state"] == "sent",
        "delivery_time": _iso(row["sent_at"]),
        "state": row["state"],
        "attempts": row["attempts"],
        "next_attempt_at": _iso(row["next_attempt_at"]) if row["state"] == "pending" else None,
        "last_error": row["last_error"],
    }


async def send_test(channel: Channel, notifier: Notifier) -> dict[str, Any]:
    """A test message to every URL of `channel`, now; the outcome per URL (errors are redacted)."""
    message = test_message(channel.name, datetime.now(UTC))
    results = []
    for target in channel.targets:
        if target.short:
            error = await notifier.send(target, "", message.short)
        else:
            error = await notifier.send(target, message.title, message.body)
        results.append({"url": target.redacted, "kind": target.kind, "ok": error is None, "error": error})
    ok = all(r["ok"] for r in results)
    log.info("alert_channel_tested", channel=channel.name, ok=ok, failed=sum(not r["ok"] for r in results))
    return {"channel": channel.name, "ok": ok, "targets": results}


def _choice(field: str, value: str | None, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise InvalidInput([{"field": field, "message": f"must be one of {', '.join(allowed)}"}])


def _refuse_default_route(rule_id: str, verb: str) -> None:
    if rule_id == DEFAULT_RULE_ID:
        raise ConflictError(
            f"cannot {verb} the default route: it takes the outages no rule matches and pages "
            "ALERT_NOTIFICATION_CHANNELS (set that, or add rules that match)",
            "rule_id",
        )


class AlertService:
    def __init__(
        self,
        db: Database,
        *,
        registry: ChannelRegistry | None = None,
        engine: AlertEngine | None = None,
        notifier: Notifier | None = None,
        config_rules: list[AlertRule] | None = None,
        policies: dict[str, EscalationPolicy] | None = None,
        wake_sender: Any = None,
    ) -> None:
        self.db = db
        self.alerts = AlertRepo(db.pool)
        self.notifications = NotificationRepo(db.pool)
        self.channel_rows = ChannelRepo(db.pool)
        self.rule_rows = RuleRepo(db.pool)
        self.registry = registry if registry is not None else ChannelRegistry()
        self.engine = engine
        self.notifier = notifier
        self.config_rules = {r.id: r for r in (config_rules or [])}
        self.policies = policies or {}
        self.wake_sender = wake_sender

    # -- alerts -------------------------------------------------------------------------------------
    async def list_alerts(
        self,
        *,
        endpoint_id: str | None = None,
        severity: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        rule_id: str | None = None,
        suppressed: bool | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. `after` is the (started_at, id) of the last alert of the previous page."""
        _choice("severity", severity, tuple(s.value for s in Severity))
        _choice("state", state, ALERT_STATES)
        _choice("kind", kind, ALERT_KINDS)
        rows = await self.alerts.list(
            endpoint_id=endpoint_id,
            severity=severity,
            state=state,
            kind=kind,
            rule_id=rule_id,
            suppressed=suppressed,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            after=after,
        )
        return [alert_dict(r) for r in rows]

    async def get_alert(self, alert_id: int) -> dict[str, Any]:
        row = await self.alerts.get(alert_id)
        if row is None:
            raise NotFoundError("alert", alert_id)
        out = alert_dict(row)
        rows = await self.notifications.list(alert_id=alert_id, limit=1000)
        out["notifications"] = [notification_dict(n) for n in sorted(rows, key=lambda n: n["id"])]
        return out

    async def acknowledge(self, alert_id: int, by: str, note: str | None = None) -> dict[str, Any]:
        """Stops escalation and reminders; the channels already paged are told who took it."""
        if self.engine is not None:
            row = await self.engine.acknowledge(alert_id, by, note)
        else:
            async with self.db.pool.acquire() as conn, conn.transaction():
                row = await self.alerts.acknowledge(conn, alert_id, by, note, datetime.now(UTC))
        if row is None:
            current = await self.alerts.get(alert_id)
            if current is None:
                raise NotFoundError("alert", alert_id)
            if current["state"] == "acknowledged":
                raise ConflictError(
                    f"alert {alert_id} was already acknowledged by {current['acknowledged_by']} "
                    f"at {current['acknowledged_at'].isoformat()}",
                    field="alert_id",
                )
            raise ConflictError(f"alert {alert_id} is {current['state']}", field="alert_id")
        return await self.get_alert(alert_id)

    async def alert_summary(self, hours: float = 24.0) -> dict[str, Any]:
        since = datetime.now(UTC) - timedelta(hours=hours)
        summary = {k: _iso(v) for k, v in (await self.alerts.summary(since)).items()}
        summary["window_hours"] = hours
        summary["since"] = since.isoformat()
        if self.engine is not None:
            summary["monitor_isolated"] = self.engine.guard.isolated
        return summary

    # -- notifications (the outbox) -----------------------------------------------------------------
    async def list_notifications(
        self,
        *,
        state: str | None = None,
        channel: str | None = None,
        alert_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first. `after` is the (created_at, id) of the last notification of the previous page."""
        _choice("state", state, NOTIFICATION_STATES)
        rows = await self.notifications.list(
            alert_id=alert_id,
            state=state,
            channel=channel,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            after=after,
        )
        return [notification_dict(r) for r in rows]

    async def retry_notification(self, notification_id: int) -> dict[str, Any]:
        """A dead-lettered notification goes back to the outbox (after the operator fixed the channel)."""
        row = await self.notifications.get(notification_id)
        if row is None:
            raise NotFoundError("notification", notification_id)
        if row["state"] != "dead":
            raise ConflictError(
                f"notification {notification_id} is {row['state']}; only dead ones are retried",
                field="notification_id",
            )
        row = await self.notifications.retry(notification_id)
        if self.wake_sender is not None:
            self.wake_sender()
        assert row is not None
        return notification_dict(row)

    # -- channels -----------------------------------------------------------------------------------
    async def list_channels(self) -> list[dict[str, Any]]:
        return [c.public_dict() for c in self.registry.all()]

    async def load_channels(self) -> None:
        """Channels registered through the API, from the database into the registry."""
        for name, urls in await self.channel_rows.all():
            try:
                self.registry.set(parse_channel(name, urls, source="api"))
            except ChannelError as exc:
                log.error("alert_channel_invalid_in_database", channel=name, error=str(exc))

    async def create_channel(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str):
            raise InvalidInput([{"field": "name", "message": "required: a channel name (a slug)"}])
        extra = sorted(set(body) - {"name", "url", "urls"})
        if extra:
            raise InvalidInput([{"field": extra[0], "message": "unknown field"}])
        if ("url" in body) == ("urls" in body):
            raise InvalidInput([{"field": "urls", "message": "give url (one apprise URL) or urls (a list)"}])
        urls = body["url"] if "url" in body else body["urls"]
        try:
            channel = parse_channel(name, urls, source="api")
        except ChannelError as exc:
            field, _, message = str(exc).partition(": ")
            raise InvalidInput(
                [{"field": field if message else "urls", "message": message or str(exc)}]
            ) from None
        existing = self.registry.get(channel.name)
        if existing is not None and existing.source == "config":
            raise ConflictError(
                f"channel {channel.name!r} is defined in the config file; change it there", "name"
            )
        await self.channel_rows.upsert(channel.name, channel.urls)
        self.registry.set(channel)
        log.info("alert_channel_saved", channel=channel.name, kinds=channel.kinds)
        return channel.public_dict()

    async def delete_channel(self, name: str) -> None:
        """Delete an API channel. Refused (409, naming them) while a rule, an escalation policy or
        the default route uses it: their outages would page nobody until someone noticed."""
        existing = self.registry.get(name)
        if existing is None:
            raise NotFoundError("channel", name)
        if existing.source == "config":
            raise ConflictError(f"channel {name!r} is defined in the config file; remove it there", "name")
        users = channel_users(name, await self.all_rules(), self.policies, self._default_channels())
        if users:
            raise ConflictError(
                f"channel {name!r} is in use by {'; '.join(users)}; change or delete those first", "name"
            )
        await self.channel_rows.delete(name)
        self.registry.remove(name)
        log.info("alert_channel_deleted", channel=name)

    def _default_channels(self) -> list[str]:
        """ALERT_NOTIFICATION_CHANNELS, as the running engine has it (unknown without one)."""
        return list(self.engine.default_channels) if self.engine is not None else []

    async def test_channel(self, name: str) -> dict[str, Any]:
        """Send a test message to every URL of the channel now (not through the outbox)."""
        channel = self.registry.get(name)
        if channel is None:
            raise NotFoundError("channel", name)
        if self.notifier is None:
            from ispmon.alerts.notifier import AppriseNotifier

            self.notifier = AppriseNotifier()
        return await send_test(channel, self.notifier)

    # -- rules and policies ---------------------------------------------------------------------------
    async def all_rules(self) -> list[AlertRule]:
        """The rules in effect: the config file's, then those created through the API."""
        rules = dict(self.config_rules)
        for row in await self.rule_rows.all():
            try:
                rules.setdefault(row["id"], AlertRule.model_validate(row["spec"]))
            except ValidationError as exc:
                log.error("alert_rule_invalid_in_database", rule_id=row["id"], error=str(exc))
        return list(rules.values())

    def _rule_dict(self, rule: AlertRule) -> dict[str, Any]:
        return {**rule.model_dump(mode="json"), "source": "config" if rule.id in self.config_rules else "api"}

    def _default_route_dict(self) -> dict[str, Any]:
        """The routing root, shown with the rules so that alerts with rule_id "default" explain
        themselves: the outages no rule matches, paging ALERT_NOTIFICATION_CHANNELS."""
        channels = self._default_channels()
        return {**default_route().model_dump(mode="json"), "channels": channels or None, "source": "default"}

    async def list_rules(self) -> list[dict[str, Any]]:
        rules = [self._rule_dict(r) for r in await self.all_rules() if r.id != DEFAULT_RULE_ID]
        return [*rules, self._default_route_dict()]

    async def get_rule(self, rule_id: str) -> dict[str, Any]:
        if rule_id == DEFAULT_RULE_ID:
            return self._default_route_dict()
        for rule in await self.all_rules():
            if rule.id == rule_id:
                return self._rule_dict(rule)
        raise NotFoundError("alert rule", rule_id)

    async def _validate_rule(self, body: dict[str, Any]) -> AlertRule:
        """A rule as the API may store it: valid, and routed only to channels and a policy that
        exist (config file or API), so that its first outage is not dead-lettered for want of one."""
        try:
            rule = AlertRule.model_validate(body)
        except ValidationError as exc:
            raise InvalidInput.from_validation(exc) from None
        if rule.escalation is not None and rule.escalation not in self.policies:
            known = ", ".join(sorted(self.policies)) or "none are declared in the config file"
            raise InvalidInput(
                [{"field": "escalation", "message": f"no escalation policy {rule.escalation!r} ({known})"}]
            )
        errors = undefined_channel_errors(rule, self.policies, await self._defined_channels())
        if errors:
            raise InvalidInput(errors)
        return rule

    async def _defined_channels(self) -> set[str]:
        """Channel names that exist: this service's registry (the daemon's holds the config
        file's and the API's), and the API's from the database (a script may have no registry)."""
        return set(self.registry.names()) | {name for name, _ in await self.channel_rows.all()}

    async def create_rule(self, body: dict[str, Any]) -> dict[str, Any]:
        rule = await self._validate_rule(body)
        if rule.id == DEFAULT_RULE_ID:
            raise ConflictError(
                f"alert rule id {rule.id!r} is the default route's (outages no rule matches); choose another",
                "id",
            )
        if rule.id in self.config_rules:
            raise ConflictError(f"alert rule {rule.id!r} is defined in the config file", "id")
        if any(r["id"] == rule.id for r in await self.rule_rows.all()):
            raise ConflictError(f"alert rule {rule.id!r} already exists", "id")
        await self.rule_rows.upsert(rule.id, rule.model_dump(mode="json"))
        await self._apply_rules()
        return self._rule_dict(rule)

    async def update_rule(self, rule_id: str, body: dict[str, Any]) -> dict[str, Any]:
        _refuse_default_route(rule_id, "change")
        if rule_id in self.config_rules:
            raise ConflictError(
                f"alert rule {rule_id!r} is defined in the config file; change it there", "id"
            )
        current = next((r for r in await self.rule_rows.all() if r["id"] == rule_id), None)
        if current is None:
            raise NotFoundError("alert rule", rule_id)
        if "id" in body and body["id"] != rule_id:
            raise InvalidInput([{"field": "id", "message": "cannot be changed"}])
        rule = await self._validate_rule({**current["spec"], **body, "id": rule_id})
        await self.rule_rows.upsert(rule.id, rule.model_dump(mode="json"))
        await self._apply_rules()
        return self._rule_dict(rule)

    async def delete_rule(self, rule_id: str) -> None:
        if rule_id == DEFAULT_RULE_ID:
            # A row an older version let the API store under the reserved id may still go.
            if await self.rule_rows.delete(rule_id):
                await self._apply_rules()
                return
            _refuse_default_route(rule_id, "delete")
        if rule_id in self.config_rules:
            raise ConflictError(
                f"alert rule {rule_id!r} is defined in the config file; remove it there", "id"
            )
        if not await self.rule_rows.delete(rule_id):
            raise NotFoundError("alert rule", rule_id)
        await self._apply_rules()

    async def _apply_rules(self) -> None:
        if self.engine is not None:
            self.engine.configure(await self.all_rules(), self.policies)

    async def list_policies(self) -> list[dict[str, Any]]:
        return [{**p.model_dump(mode="json"), "source": "config"} for p in self.policies.values()]
