"""`Accounting`: the usage domain in the daemon. At start, the file's ``[[customers]]`` and
``[[radius_clients]]`` replace their 'config' rows, the NAS directory is loaded, and the RADIUS
accounting listener binds (``RADIUS_ACCT_ADDRESS``:``RADIUS_ACCT_PORT``; port 0: no listener).
`reload` (SIGHUP) syncs both tables again and swaps the directory under the running listener.
`close` answers what is committed and unbinds, before the pool closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import structlog

from ispmon.alerts.network import customer_subject
from ispmon.errors import StartupError
from ispmon.services.customers import CustomerService
from ispmon.services.errors import ServiceError
from ispmon.services.usage import UsageService
from ispmon.store.usage_accounting import AccountingStore, close_lost
from ispmon.usage.enforce import Enforcer, QuotaObserver
from ispmon.usage.listener import AccountingProtocol, start_listener
from ispmon.usage.nas import NasDirectory
from ispmon.usage.quota_pass import QuotaTracker, enforce_quotas

if TYPE_CHECKING:
    from ispmon.alerts.engine import AlertEngine
    from ispmon.config import LoadedConfig
    from ispmon.store.database import Database

log = structlog.get_logger("ispmon.usage")


LOST_SWEEP_SECONDS = 60.0


async def sweep_lost(pool: asyncpg.Pool, default_interval: int, every: float = LOST_SWEEP_SECONDS) -> None:
    """Every minute: close the sessions no interim has been heard of for twice their interval."""
    while True:
        try:
            closed = await close_lost(pool, default_interval, datetime.now(UTC))
            if closed:
                log.info("radius_sessions_lost", count=closed)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("radius_lost_sweep_failed", error=str(exc))
        await asyncio.sleep(every)


def other_agents_live(pool: asyncpg.Pool, agent_id: str, dead_after: float) -> Callable[[], Awaitable[bool]]:
    """For the quota pass: is another agent live (per the registry), so its listener may commit?"""

    async def live() -> bool:
        found: bool = await pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM agents WHERE id <> $1 AND stopped_at IS NULL
                              AND last_heartbeat > now() - make_interval(secs => $2))""",
            agent_id,
            float(dead_after),
        )
        return found

    return live


def quota_observer(alerts: AlertEngine) -> QuotaObserver:
    """Feeds each customer's quota figure to the alert engine's `quota` rules; True when a rule
    wants to see the customer again next pass (see AlertEngine.observe_quota)."""

    def observe(customer_id: str, name: str, percent: float) -> bool:
        return alerts.observe_quota(customer_subject(customer_id, name), datetime.now(UTC), percent)

    return observe


def quota_rules_changed(alerts: AlertEngine) -> Callable[[], bool]:
    """True once after each change of the quota rules: the quota pass then looks at everyone,
    so a new rule sees the customers already over it."""
    seen = [alerts.quota_rules]

    def changed() -> bool:
        if alerts.quota_rules is seen[0]:
            return False
        seen[0] = alerts.quota_rules
        return True

    return changed


async def sync_usage_config(db: Database, config: LoadedConfig, directory: NasDirectory) -> None:
    """The file's customers, then its NAS clients, replace their 'config' rows (API-created rows
    stay); then `directory` is loaded from the table. Raises ServiceError, with nothing written,
    when a file customer's identity belongs to an API customer. Without a file nothing is synced:
    starting once without --config must not delete what the file declared."""
    usage = UsageService(db, directory)
    if config.path is not None:
        # Customers first: theirs is the only sync that can be refused, and it is all or nothing,
        # so a refused file leaves the NAS clients (and the directory) as they were.
        result = await CustomerService(db).sync_config(config.customers)
        removed = await usage.sync_nas_config(config.radius_clients)
        log.info(
            "usage_config_synced",
            customers=result["synced"],
            customers_removed=result["removed"] or None,
            radius_clients=len(config.radius_clients),
            radius_clients_removed=removed or None,
        )
    await usage.refresh_directory()


@dataclass
class Accounting:
    directory: NasDirectory
    protocol: AccountingProtocol | None = None
    port: int | None = None
    sweeper: asyncio.Task[None] | None = None
    quotas: asyncio.Task[None] | None = None
    tracker: QuotaTracker | None = None
    pool: asyncpg.Pool | None = None
    interim_interval: int = 0
    quota_interval: float = 0.0

    @classmethod
    async def start(
        cls, db: Database, config: LoadedConfig, alerts: AlertEngine | None = None, *, periodic: bool = True
    ) -> Accounting:
        """Sync, load and listen; with `periodic`, also run the quota pass and the lost-session
        sweep (else `start_periodic` does, on the agent that holds the singleton lease)."""
        directory = NasDirectory()
        try:
            await sync_usage_config(db, config, directory)
        except ServiceError as exc:
            raise StartupError(f"{config.path}: {exc.field}: {exc.message}") from None
        accounting = cls(directory)
        settings = config.settings
        observer = quota_observer(alerts) if alerts is not None else None
        tracker = QuotaTracker(
            Enforcer(db.pool, observer=observer),
            rules_changed=quota_rules_changed(alerts) if alerts is not None else None,
            others=other_agents_live(db.pool, settings.ispmon_agent_id, settings.agent_dead_after),
        )
        if settings.radius_acct_port:
            store = AccountingStore(db.pool)
            try:
                accounting.protocol, accounting.port = await start_listener(
                    settings.radius_acct_address,
                    settings.radius_acct_port,
                    directory,
                    tracker.wrap(store.commit),
                )
            except OSError as exc:
                raise StartupError(
                    f"RADIUS_ACCT_ADDRESS/RADIUS_ACCT_PORT: cannot listen on "
                    f"{settings.radius_acct_address}:{settings.radius_acct_port}: {exc.strerror or exc}"
                ) from None
            log.info(
                "radius_listening",
                host=settings.radius_acct_address,
                port=accounting.port,
                nas=len(directory),
            )
        accounting.tracker, accounting.pool = tracker, db.pool
        accounting.interim_interval = settings.radius_interim_interval
        accounting.quota_interval = settings.quota_pass_interval
        if periodic:
            accounting.start_periodic()
        else:
            tracker.tracking = False
        return accounting

    def start_periodic(self) -> None:
        """The quota pass (a full one first: what other agents' listeners committed meanwhile is
        not in this tracker's memory) and the lost-session sweep."""
        assert self.tracker is not None and self.pool is not None
        self.tracker.tracking = True
        self.tracker.full_due()
        if self.sweeper is None:
            self.sweeper = asyncio.create_task(
                sweep_lost(self.pool, self.interim_interval), name="radius-lost-sessions"
            )
        if self.quotas is None:
            self.quotas = asyncio.create_task(
                enforce_quotas(self.tracker, self.quota_interval), name="quota-enforcement"
            )

    async def stop_periodic(self) -> None:
        tasks, self.sweeper, self.quotas = (self.sweeper, self.quotas), None, None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.tracker is not None:
            self.tracker.tracking = False  # no pass reads them here now: do not collect keys

    async def reload(self, db: Database, config: LoadedConfig) -> None:
        """SIGHUP: the new file's customers and NAS clients. The listener keeps its socket; the
        directory it matches packets against is replaced in one assignment, so a NAS added is
        answered from the next packet and one removed is refused from the next packet. Raises
        ServiceError (nothing changed) like `sync_usage_config`."""
        await sync_usage_config(db, config, self.directory)

    async def close(self) -> None:
        await self.stop_periodic()
        if self.protocol is not None:
            await self.protocol.close()
            log.info("radius_stopped", **self.protocol.stats.as_dict())
