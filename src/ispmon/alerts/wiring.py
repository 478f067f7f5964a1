"""`Alerting`: the channel registry, the engine, the outbox sender and the service, built from the
config and the database, started after the monitor is restored and stopped before the pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from ispmon.alerts.channels import ChannelRegistry
from ispmon.alerts.config import AlertConfig
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.notifier import AppriseNotifier
from ispmon.alerts.sender import DeliveryPolicy, Sender
from ispmon.services.alerts import AlertService
from ispmon.store.alerts import AlertRepo
from ispmon.store.notifications import NotificationRepo

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor
    from ispmon.config import LoadedConfig, Settings
    from ispmon.store.database import Database

log = structlog.get_logger("ispmon.alerts")


def delivery_policy(settings: Settings) -> DeliveryPolicy:
    return DeliveryPolicy(
        max_attempts=settings.alert_max_attempts,
        retry_base=settings.alert_retry_base_seconds,
        retry_max=max(settings.alert_retry_max_seconds, settings.alert_retry_base_seconds),
        rate_per_minute=settings.alert_channel_rate_limit,
        timeout=settings.alert_send_timeout,
        lease_floor=settings.alert_send_lease_seconds,
    )


@dataclass
class Alerting:
    registry: ChannelRegistry
    engine: AlertEngine
    sender: Sender
    service: AlertService

    @classmethod
    async def build(cls, db: Database, config: LoadedConfig, monitor: Monitor) -> Alerting:
        settings = config.settings
        alert_config: AlertConfig = config.alerting or AlertConfig()
        registry = ChannelRegistry(alert_config.channels)
        notifier = AppriseNotifier(timeout=settings.alert_send_timeout)
        outbox = NotificationRepo(db.pool)
        sender = Sender(outbox, registry, notifier, delivery_policy(settings))
        engine = AlertEngine(
            pool=db.pool,
            alerts=AlertRepo(db.pool),
            notifications=outbox,
            channels=registry,
            default_channels=settings.notification_channels,
            link_base=settings.link_base,
            wake_sender=sender.wake,
        )
        service = AlertService(
            db,
            registry=registry,
            engine=engine,
            notifier=notifier,
            config_rules=alert_config.rules,
            policies=alert_config.policies,
            wake_sender=sender.wake,
        )
        await service.load_channels()
        engine.monitor = monitor
        monitor.alerts = engine
        engine.configure(await service.all_rules(), alert_config.policies)
        engine.endpoints_changed()
        alerting = cls(registry, engine, sender, service)
        alerting.report()
        return alerting

    def report(self) -> None:
        undefined = self.engine.undefined_channels()
        if undefined:
            log.warning(
                "alert_channels_undefined",
                channels=undefined,
                effect="notifications to these channels are dead-lettered until they are defined "
                "([channels] in the config file or POST /channels/)",
            )
        log.info(
            "alerting_configured",
            channels=self.registry.names(),
            rules=sorted(self.engine.rules),
            escalation_policies=sorted(self.engine.policies),
            canaries=sorted(self.engine.guard.canaries),
            open_alerts=len(self.engine.open),
        )

    async def start(self, *, singleton: bool = True) -> None:
        """The engine; with `singleton`, also its paging tick and the sender (False: they run only
        on the singleton lease's holder, `ispmon.agents.singletons`, which turns them on)."""
        self.engine.leading = singleton
        await self.engine.start()
        if singleton:
            self.sender.start()

    async def reload(self, config: LoadedConfig) -> None:
        """SIGHUP: the file's channels, rules and policies, and the alert settings, take effect."""
        settings = config.settings
        alert_config: AlertConfig = config.alerting or AlertConfig()
        self.registry.replace_source("config", alert_config.channels)
        self.service.config_rules = {r.id: r for r in alert_config.rules}
        self.service.policies = alert_config.policies
        self.engine.default_channels = settings.notification_channels
        self.engine.link_base = settings.link_base
        self.engine.configure(await self.service.all_rules(), alert_config.policies)
        self.engine.endpoints_changed()
        self.sender.policy = delivery_policy(settings)
        self.report()

    async def close(self) -> None:
        await self.engine.close()
        await self.sender.close()
