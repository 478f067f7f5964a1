"""The singleton work in one process, started, stopped and started again (a lease gained, lost and
gained back), on the real parts the daemon wires: the outbox sender with a webhook receiver on
127.0.0.1, the alert engine's paging, the Elasticsearch sync against the strict test server,
housekeeping, the report loop, SNMP polling and the quota pass. Stopped, none of them runs (a
notification waits); started again, each picks up from the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from ispmon.agents.singletons import SingletonWork
from ispmon.alerts.wiring import Alerting
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import OutagePolicy
from ispmon.config import LoadedConfig, load_settings
from ispmon.daemon import housekeeping
from ispmon.network.runner import NetworkPolling
from ispmon.probes.base import ProbeContext
from ispmon.search.wiring import SearchFeed
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.notifications import NotificationRepo
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter
from ispmon.usage.wiring import Accounting
from tests.esserver import EsServer
from tests.integration.alerts.test_alert_delivery import Receiver, draft, json_url

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]


async def wait_until(cond: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond() if asyncio.iscoroutinefunction(cond) else cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def es() -> AsyncIterator[EsServer]:
    server = EsServer(major=8)
    await server.start()
    yield server
    await server.stop()


async def test_start_stop_start(
    db: Database, receiver: Receiver, es: EsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "ELASTICSEARCH_URL": es.url,
        "ELASTICSEARCH_SYNC_INTERVAL": "1",
        "RADIUS_ACCT_PORT": "0",
        "ALERT_NOTIFICATION_CHANNELS": "hook",
        "ISPMON_AGENT_ID": "solo",
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    config = LoadedConfig(settings=settings)
    ctx = ProbeContext()
    history = BatchWriter(db.pool, "status_history", HISTORY_COLUMNS)
    events = BatchWriter(db.pool, "endpoint_events", EVENT_COLUMNS)
    monitor = Monitor(ctx=ctx, policy=OutagePolicy.from_settings(settings), history=history, events=events,
                      outages=db.outages)  # fmt: skip
    alerting = await Alerting.build(db, config, monitor)
    await db.pool.execute(
        "INSERT INTO alert_channels (name, urls) VALUES ('hook', $1)", [json_url(receiver.port)]
    )
    await alerting.service.load_channels()
    await alerting.start(singleton=False)
    network = await NetworkPolling.start(db, config, alerting.engine, poll=False)
    accounting = await Accounting.start(db, config, alerting.engine, periodic=False)
    search = SearchFeed.build(db.pool, settings)
    search.start_logs()
    work = SingletonWork(db, settings, alerting, (), network, accounting, search, housekeeping)
    outbox = NotificationRepo(db.pool)
    try:
        assert not alerting.engine.leading and alerting.sender._task is None
        assert network.rollup_task is None and accounting.quotas is None and search._sync_task is None
        await outbox.enqueue([draft("before", "hook")])
        alerting.sender.wake()
        await asyncio.sleep(0.5)
        assert receiver.hits == []  # not the holder: nothing is sent

        for round_ in range(2):
            await work.start()
            assert alerting.engine.leading and alerting.sender._task is not None
            assert network.rollup_task is not None and accounting.quotas is not None
            assert accounting.sweeper is not None and search._sync_task is not None
            assert {t.get_name() for t in work._tasks} >= {"housekeeping", "reports"}
            await wait_until(lambda r=round_: len(receiver.accepted) == r + 1, "the page sent by the holder")
            await wait_until(
                lambda: search.setup_done and search.sync.last_round_at is not None, "a sync round"
            )
            await work.stop()
            await work.stop()  # twice is harmless
            assert not alerting.engine.leading and alerting.sender._task is None
            assert network.rollup_task is None and accounting.quotas is None and accounting.sweeper is None
            assert search._sync_task is None and work._tasks == []
            assert accounting.tracker is not None and accounting.tracker.tracking is False
            search.sync.last_round_at = None
            await outbox.enqueue([draft(f"stopped{round_}", "hook")])
            alerting.sender.wake()
            await asyncio.sleep(0.5)
            assert len(receiver.accepted) == round_ + 1  # stopped: waits for the next holder
        await work.start()
        await wait_until(lambda: len(receiver.accepted) == 3, "the last page")
    finally:
        await work.stop()
        await network.close()
        await accounting.close()
        await alerting.close()
        await search.close()
        await history.close()
        await events.close()
        await ctx.close()
    assert (await outbox.count_by_state())["sent"] == 3
