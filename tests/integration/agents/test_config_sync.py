"""Configuration changes between agents on a real PostgreSQL: the triggers record and announce each
change in the writer's transaction; a second, independent agent (its own pool, monitor and
listener) applies what the first one changed through its services; the poll applies what the
listener missed while its connection was down; the reconnect catches up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from ispmon.agents.config_apply import DaemonTargets
from ispmon.agents.config_sync import ConfigSync, announce_reload
from ispmon.alerts.wiring import Alerting
from ispmon.availability.endpoints import EndpointDefaults
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import OutagePolicy
from ispmon.config import Settings, load_config
from ispmon.daemon import load_specs
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.decode import FlowDecoder
from ispmon.network.poller import Poller
from ispmon.network.snmp import SnmpClient
from ispmon.probes.base import ProbeContext
from ispmon.services.alerts import AlertService
from ispmon.services.availability import AvailabilityService
from ispmon.services.customers import CustomerService
from ispmon.services.flows import FlowService
from ispmon.services.maintenance import MaintenanceService
from ispmon.services.network import NetworkService
from ispmon.services.usage import UsageService
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter
from ispmon.usage.nas import NasDirectory

pytestmark = pytest.mark.timeout(120)


async def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


@dataclass
class Agent:
    """What the daemon wires for the configuration: its own pool (tagged with its id), a monitor
    that is not running (nothing is probed), its services, and its ConfigSync."""

    id: str
    db: Database
    monitor: Monitor
    sync: ConfigSync
    prefixes: PrefixTable

    @property
    def availability(self) -> AvailabilityService:
        return AvailabilityService(self.db, self.monitor)

    @property
    def maintenance(self) -> MaintenanceService:
        return MaintenanceService(self.db, self.monitor)


@pytest.fixture
async def agents(db_dsn: str) -> AsyncIterator[Callable[..., Any]]:
    made: list[Agent] = []
    ctx = ProbeContext()

    async def make(agent_id: str, *, poll_interval: float = 3600.0, reconnect_delay: float = 0.2) -> Agent:
        db = await Database.connect(db_dsn, apply_schema=False, server_settings={"ispmon.agent_id": agent_id})
        monitor = Monitor(
            ctx=ctx,
            policy=OutagePolicy(),
            history=BatchWriter(db.pool, "status_history", HISTORY_COLUMNS),
            events=BatchWriter(db.pool, "endpoint_events", EVENT_COLUMNS),
            outages=db.outages,
        )
        sync = ConfigSync(db_dsn, db.pool, agent_id, poll_interval, reconnect_delay=reconnect_delay)
        await sync.prepare()
        prefixes = PrefixTable()
        settings = Settings()
        targets = DaemonTargets(
            db, EndpointDefaults(), lambda: load_specs(db, settings), monitor, prefixes=prefixes
        )
        sync.start(targets.apply)
        await asyncio.wait_for(sync.listening.wait(), 30)
        agent = Agent(agent_id, db, monitor, sync, prefixes)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.sync.close()
        await agent.db.close()
    await ctx.close()


def endpoint(name: str, port: int = 9) -> dict[str, Any]:
    return {"id": name, "name": name, "url": f"tcp://127.0.0.1:{port}", "check_interval": 30}


async def test_triggers_record_one_change_per_kind_and_transaction_and_announce_on_commit_only(
    db_dsn: str, pool: asyncpg.Pool
) -> None:
    heard: list[str] = []
    listener = await asyncpg.connect(db_dsn)
    await listener.add_listener("ispmon_config", lambda *args: heard.append(args[3]))
    agent = await asyncpg.connect(db_dsn, server_settings={"ispmon.agent_id": "pop-1"})
    try:
        await pool.execute("INSERT INTO maintenance_windows (id, name, spec) VALUES ('w1', 'w', '{}')")
        async with agent.transaction():  # two statements of one kind, one transaction: one change
            await agent.execute(
                "INSERT INTO nas_clients (id, name, address, secret) VALUES ('n1', 'n', '10.0.0.1', 's')"
            )
            await agent.execute(
                "INSERT INTO nas_clients (id, name, address, secret) VALUES ('n2', 'n', '10.0.0.2', 's')"
            )
        with pytest.raises(asyncpg.UniqueViolationError):
            async with agent.transaction():  # rolled back: neither recorded nor announced
                await agent.execute("INSERT INTO alert_rules (id, spec) VALUES ('r1', '{}')")
                await agent.execute("INSERT INTO alert_rules (id, spec) VALUES ('r1', '{}')")
        await agent.execute(
            "INSERT INTO devices (id, name, address, spec) VALUES ('d1', 'd', '192.0.2.1', '{}')"
        )
        # A poll's results are not configuration.
        await agent.execute("UPDATE devices SET reachable = true, last_poll_at = now(), sys_uptime = 5")
        await agent.execute("UPDATE devices SET name = 'core'")
        await agent.execute("UPDATE endpoints SET name = 'x' WHERE false")  # no row: no change
        rows = [
            dict(r) for r in await pool.fetch("SELECT id, kind, key, origin FROM config_changes ORDER BY id")
        ]
        assert [(r["kind"], r["key"], r["origin"]) for r in rows] == [
            ("maintenance", "w1", "external"),
            ("nas_clients", None, "pop-1"),
            ("devices", "d1", "pop-1"),
            ("devices", "d1", "pop-1"),
        ]
        await wait_for(lambda: len(heard) >= 4, "four notifications")
        await asyncio.sleep(0.2)
        assert heard == [str(r["id"]) for r in rows]
    finally:
        await listener.close()
        await agent.close()


async def test_a_bulk_upsert_of_ten_thousand_customers_is_one_change_applied_once(
    agents: Callable[..., Any],
) -> None:
    a, b = await agents("a"), await agents("b")
    items = [
        {"id": f"c{i}", "name": f"C {i}", "prefixes": [f"10.{i // 256}.{i % 256}.0/24"]}
        for i in range(10_000)
    ]
    assert (await CustomerService(a.db).bulk_upsert(items))["created"] == 10_000
    assert await a.db.pool.fetchval("SELECT count(*) FROM config_changes WHERE kind = 'customers'") == 1
    await wait_for(lambda: b.prefixes.lookup("10.39.15.7") == "c9999", "the prefixes on b")
    assert b.sync.stats["plans"] == 1 and b.sync.stats["applied"] == 1
    assert a.sync.stats["plans"] == 0  # its own change: its API path is what updates it


async def test_endpoints_and_windows_changed_through_one_agent_are_applied_by_another(
    agents: Callable[..., Any],
) -> None:
    a, b = await agents("a"), await agents("b")
    await a.availability.create_endpoint(endpoint("web"))
    await wait_for(lambda: "web" in b.monitor.runtimes, "web on b")
    assert b.monitor.runtimes["web"].spec == a.monitor.runtimes["web"].spec

    await a.availability.update_endpoint("web", {"url": "tcp://127.0.0.1:10", "check_interval": 45})
    await wait_for(lambda: b.monitor.runtimes["web"].spec.check_interval == 45, "the new definition on b")
    assert b.monitor.runtimes["web"].spec.url == "tcp://127.0.0.1:10"

    await a.maintenance.create_window(
        {
            "id": "night",
            "name": "Night work",
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": "2099-01-01T00:00:00Z",
            "endpoint_ids": ["web"],
        }
    )
    await wait_for(lambda: [w.id for w in b.monitor.calendar.windows] == ["night"], "the window on b")

    await a.availability.delete_endpoint("web")
    await wait_for(lambda: "web" not in b.monitor.runtimes, "web gone from b")

    # b's own write is not applied by b (its API path would have done it): only a's is.
    await b.db.pool.execute(
        "INSERT INTO endpoints (id, name, protocol, url, spec) VALUES ('own', 'own', 'tcp', 'tcp://127.0.0.1:9', $1)",
        {**endpoint("own"), "protocol": "tcp"},
    )
    await a.availability.create_endpoint(endpoint("after"))
    await wait_for(lambda: "after" in b.monitor.runtimes, "after on b")
    assert "own" not in b.monitor.runtimes
    assert "own" in a.monitor.runtimes  # a applies b's change


async def test_the_poll_applies_a_change_made_while_the_listener_was_down(
    agents: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    a = await agents("a")
    # No reconnect within the test: what b applies, the poll found.
    b = await agents("b", poll_interval=1.0, reconnect_delay=3600.0)
    killed = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'ispmon-listen:b'"
    )
    assert killed == 1
    await wait_for(lambda: not b.sync.listening.is_set(), "b notices its listener is gone")
    await a.availability.create_endpoint(endpoint("missed"))
    await wait_for(lambda: "missed" in b.monitor.runtimes, "the poll applies it", timeout=30)
    assert b.sync.applied_via == {"poll": 1}
    assert not b.sync.listening.is_set()


async def test_a_reconnected_listener_catches_up_at_once(
    agents: Callable[..., Any], pool: asyncpg.Pool
) -> None:
    a = await agents("a")
    b = await agents("b", poll_interval=3600.0, reconnect_delay=5.0)
    await pool.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'ispmon-listen:b'"
    )
    await wait_for(lambda: not b.sync.listening.is_set(), "b notices its listener is gone")
    await a.availability.create_endpoint(endpoint("meanwhile"))
    assert not b.sync.listening.is_set(), "the listener came back before the change: the test saw nothing"
    await wait_for(lambda: "meanwhile" in b.monitor.runtimes, "applied after the reconnect", timeout=60)
    assert b.sync.applied_via == {"reconnect": 1}
    assert b.sync.stats["reconnects"] == 1


async def test_a_reload_elsewhere_re_reads_everything(agents: Callable[..., Any], pool: asyncpg.Pool) -> None:
    b = await agents("b")
    # Rows written behind the triggers' back (as by an older version): only a full re-read finds them.
    await pool.execute("ALTER TABLE endpoints DISABLE TRIGGER USER")
    await pool.execute(
        "INSERT INTO endpoints (id, name, protocol, url, spec)"
        " VALUES ('quiet', 'quiet', 'tcp', 'tcp://127.0.0.1:9', $1)",
        {**endpoint("quiet"), "protocol": "tcp"},
    )
    await pool.execute("ALTER TABLE endpoints ENABLE TRIGGER USER")
    a_db = await Database.connect(b.sync.dsn, apply_schema=False, server_settings={"ispmon.agent_id": "a"})
    try:
        await announce_reload(a_db.pool, "0123456789abcdef")
    finally:
        await a_db.close()
    await wait_for(lambda: "quiet" in b.monitor.runtimes, "the full re-read on b")


async def test_prune_keeps_the_newest_row(agents: Callable[..., Any], pool: asyncpg.Pool) -> None:
    a = await agents("a")
    for name in ("one", "two", "three"):
        await a.availability.create_endpoint(endpoint(name))
    await pool.execute("UPDATE config_changes SET at = now() - interval '2 days'")
    a.sync.keep = timedelta(days=1)
    assert await a.sync.prune() == 2
    assert await pool.fetchval("SELECT count(*) FROM config_changes") == 1


async def test_channels_rules_nas_devices_and_exporters_changed_elsewhere_are_applied(
    db_dsn: str, agents: Callable[..., Any]
) -> None:
    """b holds what the daemon holds of each (built as the daemon builds them, nothing started);
    a changes them through its services."""
    a = await agents("a")
    b_db = await Database.connect(db_dsn, apply_schema=False, server_settings={"ispmon.agent_id": "b"})
    monitor = Monitor(
        ctx=ProbeContext(),
        policy=OutagePolicy(),
        history=BatchWriter(b_db.pool, "status_history", HISTORY_COLUMNS),
        events=BatchWriter(b_db.pool, "endpoint_events", EVENT_COLUMNS),
        outages=b_db.outages,
    )
    alerting = await Alerting.build(b_db, load_config(None), monitor)
    directory = NasDirectory()
    poller = Poller(b_db, SnmpClient(), writer=None)
    decoder = FlowDecoder()
    targets = DaemonTargets(
        b_db,
        EndpointDefaults(),
        lambda: load_specs(b_db, Settings()),
        monitor,
        alerting,
        directory,
        poller,
        decoder,
    )
    sync = ConfigSync(db_dsn, b_db.pool, "b", 3600.0)
    await sync.prepare()
    sync.start(targets.apply)
    try:
        await asyncio.wait_for(sync.listening.wait(), 30)
        alerts = AlertService(a.db)
        await alerts.create_channel({"name": "ops", "url": "json://127.0.0.1:9/hook"})
        await wait_for(lambda: alerting.registry.get("ops") is not None, "the channel on b")
        await alerts.create_rule({"id": "core-down", "kind": "outage", "channels": ["ops"]})
        await wait_for(lambda: "core-down" in alerting.engine.rules, "the rule on b")
        await UsageService(a.db).create_nas(
            {"id": "bras-1", "address": "192.0.2.10", "secret": "s3cret-s3cret"}
        )
        await wait_for(lambda: len(directory) == 1, "the NAS on b")
        await NetworkService(a.db).create_device(
            {"id": "edge-1", "name": "edge", "address": "192.0.2.1", "community": "public"}
        )
        await wait_for(lambda: "edge-1" in poller.devices, "the device on b")
        await NetworkService(a.db).update_device("edge-1", {"address": "192.0.2.2"})
        await wait_for(
            lambda: poller.devices["edge-1"].spec.host == "192.0.2.2", "the device's new address on b"
        )
        await FlowService(a.db).add_exporter({"id": "r1", "address": "192.0.2.20", "sampling": 10})
        await wait_for(lambda: "192.0.2.20" in decoder.exporters, "the exporter on b")
        assert decoder.exporters["192.0.2.20"].sampling == 10

        await alerts.delete_rule("core-down")
        await alerts.delete_channel("ops")
        await UsageService(a.db).delete_nas("bras-1")
        await NetworkService(a.db).delete_device("edge-1")
        await FlowService(a.db).delete_exporter("r1")
        await wait_for(
            lambda: (
                alerting.registry.get("ops") is None
                and "core-down" not in alerting.engine.rules
                and len(directory) == 0
                and not poller.devices
                and not decoder.exporters
            ),
            "every deletion on b",
        )
    finally:
        await sync.close()
        poller.client.close()
        await b_db.close()
