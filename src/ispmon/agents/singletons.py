"""The work done once (issue 16 §5): what runs only on the agent holding the "leader" lease.

Every agent listens (RADIUS, flows), probes what it owns, opens and resolves its endpoints' alerts
and writes the notifications they cause. One agent at a time also runs, from the moment it gains
the lease to the moment it loses it (any number of times in one process):

* the outbox sender (`alerts.sender.Sender`): fenced by the lease's own clock before each attempt;
* the alert engine's paging tick (escalation steps, reminders, re-suppression): `engine.leading`;
* the Elasticsearch sync (`search.wiring.SearchFeed`; each agent still captures its own logs);
* housekeeping and retention (`daemon.housekeeping`, passed in: the daemon imports this module);
* the endpoint rollups and scheduled reports (`reports.runner`);
* SNMP device polling and the interface rollups (`network.runner.NetworkPolling`);
* the quota pass and the lost-session sweep (`usage.wiring.Accounting`).

`Leadership.start` is the daemon's one call: it makes the first attempt at the lease before the
daemon says READY (a lone agent starts its work at once), then renews in the background; `close`
stops the work and releases the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from ispmon.agents.election import Lease
from ispmon.agents.lease_store import lease_holders
from ispmon.agents.leases import LeaseTimes
from ispmon.reports import runner as report_runner

if TYPE_CHECKING:
    from ispmon.alerts.wiring import Alerting
    from ispmon.config import Settings
    from ispmon.network.runner import NetworkPolling
    from ispmon.reports.schedules import ReportSchedule
    from ispmon.search.wiring import SearchFeed
    from ispmon.store.database import Database
    from ispmon.usage.wiring import Accounting

log = structlog.get_logger("ispmon.agents")

# A notification send in progress at a stop gets this share of the lease's stop margin to finish
# (no new one starts); after that it is cancelled and its row's send lease brings it back, with the
# same idempotency key: at least once. Inside the margin, which keeps two agents from sending at once.
SENDER_STOP_SHARE = 0.5

__all__ = ["Leadership", "SingletonWork", "lease_holders"]


@dataclass
class SingletonWork:
    db: Database
    settings: Settings
    alerting: Alerting
    report_schedules: Sequence[ReportSchedule] = ()
    network: NetworkPolling | None = None
    accounting: Accounting | None = None
    search: SearchFeed | None = None
    housekeeping: Callable[[Database, Settings], Awaitable[None]] | None = None
    sender_grace: float = 0.5
    running: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        engine = self.alerting.engine
        engine.leading = True
        self.alerting.sender.start()
        if self.housekeeping is not None:
            self._tasks.append(
                asyncio.create_task(self.housekeeping(self.db, self.settings), name="housekeeping")
            )
        self._tasks.append(
            report_runner.start(self.db, self.settings, self.report_schedules, self.alerting.sender.wake)
        )
        if self.search is not None:
            self.search.start_sync()
        if self.network is not None:
            await self.network.resume()
        if self.accounting is not None:
            self.accounting.start_periodic()
        self.running = True
        # The open alerts as the database has them (others opened some), and what is due now.
        self._tasks.append(asyncio.create_task(engine.tick(), name="alert-tick-on-gain"))
        log.info("singleton_work_started", agent_id=self.settings.ispmon_agent_id)

    async def stop(self) -> None:
        """Idempotent, and safe after a start cut short: each part stops only what it runs."""
        self.alerting.engine.leading = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.alerting.sender.close(grace=self.sender_grace)
        if self.search is not None:
            await self.search.stop_sync()
        if self.network is not None:
            await self.network.pause()
        if self.accounting is not None:
            await self.accounting.stop_periodic()
        if self.running:
            log.info("singleton_work_stopped", agent_id=self.settings.ispmon_agent_id)
        self.running = False


class Leadership:
    def __init__(self, lease: Lease, work: SingletonWork) -> None:
        self.lease = lease
        self.work = work

    @classmethod
    async def start(cls, db: Database, settings: Settings, work: SingletonWork) -> Leadership:
        times = LeaseTimes.from_dead_after(settings.agent_dead_after)
        lease = Lease(db.pool, settings.ispmon_agent_id, times, on_gain=work.start, on_loss=work.stop)
        work.sender_grace = times.stop_margin * SENDER_STOP_SHARE
        # Fencing by time at the moment of acting, not only when the lease loop gets to run.
        work.alerting.sender.may_send = lease.holds
        work.alerting.engine.fence = lease.holds
        await lease.step()
        lease.start()
        return cls(lease, work)

    def holds(self) -> bool:
        return self.lease.holds()

    async def close(self) -> None:
        await self.lease.close()
