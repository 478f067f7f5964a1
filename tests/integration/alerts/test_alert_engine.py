"""The alert engine on real parts: real PostgreSQL, the real monitor, real HTTP targets on loopback.

Outages come from real checks (a target answering 500); escalation time comes from an injected
clock passed to `engine.tick(now)`. What the tests read back is the durable outbox (the
`notifications` table) and the `alerts` rows: what the sender delivers is tested in
test_alert_delivery.py, and the whole path through the daemon in tests/e2e/test_alerting.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from ispmon.alerts.channels import ChannelRegistry, parse_channel
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.escalation import EscalationPolicy
from ispmon.alerts.rules import AlertRule
from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.maintenance import MaintenanceWindowSpec
from ispmon.availability.monitor import EndpointRuntime, Monitor
from ispmon.availability.outages import OutagePolicy, Phase
from ispmon.probes.base import ProbeContext
from ispmon.services.alerts import AlertService
from ispmon.services.outages import OutageService
from ispmon.store.alerts import AlertRepo
from ispmon.store.database import Database
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.notifications import NotificationRepo
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.writer import BatchWriter

POLICY = OutagePolicy(detection_threshold=2, verification_checks=1, recovery_threshold=1)
CHANNELS = ("oncall", "sms", "noc", "manager")
NOC_POLICY = EscalationPolicy.model_validate(
    {
        "id": "noc",
        "steps": [
            {"after_minutes": 0, "channels": ["oncall"]},
            {"after_minutes": 15, "channels": ["sms"]},
            {"after_minutes": 60, "channels": ["noc", "manager"]},
        ],
        "repeat_every_minutes": 30,
    }
)


class Targets:
    """One aiohttp server; each path answers its own status (default 200)."""

    def __init__(self) -> None:
        self.status: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        import asyncio

        name = request.match_info["name"]
        if self.delay.get(name):
            await asyncio.sleep(self.delay[name])
        return web.Response(status=self.status.get(name, 200), text="ok")

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


class World:
    def __init__(self, pool: asyncpg.Pool, targets: Targets) -> None:
        self.pool = pool
        self.db = Database(pool)
        self.targets = targets
        self.clock = Clock()
        self.ctx = ProbeContext()
        self.history = BatchWriter(pool, "status_history", HISTORY_COLUMNS)
        self.events = BatchWriter(pool, "endpoint_events", EVENT_COLUMNS)
        self.monitor = Monitor(
            ctx=self.ctx, policy=POLICY, history=self.history, events=self.events, outages=self.db.outages
        )
        self.registry = ChannelRegistry(
            [parse_channel(name, f"json://127.0.0.1:9/{name}", source="config") for name in CHANNELS]
        )
        self.engine = self.new_engine()

    def new_engine(self) -> AlertEngine:
        engine = AlertEngine(
            pool=self.pool,
            alerts=AlertRepo(self.pool),
            notifications=NotificationRepo(self.pool),
            channels=self.registry,
            default_channels=["oncall"],
            link_base="http://ispmon.example.net:8080",
            clock=self.clock,
        )
        engine.monitor = self.monitor
        self.monitor.alerts = engine
        engine.configure([], {})
        return engine

    def add(self, name: str, **fields: Any) -> EndpointRuntime:
        spec = build_endpoint(
            {
                "id": name,
                "name": f"{name.title()} endpoint",
                "url": f"http://127.0.0.1:{self.targets.port}/{name}",
                "check_interval": 60,
                "timeout": 1,
                "retries": 0,
                **fields,
            }
        )
        self.monitor.upsert(spec)
        return self.monitor.runtimes[name]

    async def fail(self, runtime: EndpointRuntime, status: int = 500) -> None:
        """Fail until an outage is declared (2 checks + 1 verification)."""
        self.targets.status[runtime.spec.id] = status
        for _ in range(POLICY.detection_threshold):
            await self.monitor.check(runtime)
        assert runtime.state.phase is Phase.OUTAGE

    async def recover(self, runtime: EndpointRuntime) -> None:
        self.targets.status[runtime.spec.id] = 200
        await self.monitor.check(runtime)
        assert runtime.state.outage_id is None

    async def outbox(self, **where: Any) -> list[asyncpg.Record]:
        rows = await self.pool.fetch("SELECT * FROM notifications ORDER BY id")
        return [r for r in rows if all(r[k] == v for k, v in where.items())]

    async def alerts(self) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM alerts ORDER BY id")

    async def close(self) -> None:
        await self.engine.close()
        await self.history.close()
        await self.events.close()
        await self.ctx.close()


@pytest.fixture
async def world(pool: asyncpg.Pool) -> AsyncIterator[World]:
    targets = Targets()
    await targets.start()
    w = World(pool, targets)
    try:
        yield w
    finally:
        await w.close()
        await targets.runner.cleanup()


def sent_to(rows: list[asyncpg.Record]) -> list[tuple[str, str]]:
    return [(r["event"], r["channel"]) for r in rows]


async def test_default_rule_pages_default_channels_once_and_resolve_carries_duration(world: World) -> None:
    web1 = world.add("web1")
    await world.fail(web1)
    [alert] = await world.alerts()
    assert alert["kind"] == "outage" and alert["rule_id"] == "default" and alert["state"] == "firing"
    assert alert["outage_id"] == web1.state.outage_id
    rows = await world.outbox()
    assert sent_to(rows) == [("declared", "oncall")]
    assert "Web1 endpoint" in rows[0]["title"] and "500" in rows[0]["body"]
    assert f"http://ispmon.example.net:8080/outages/{alert['outage_id']}" in rows[0]["body"]
    assert len(rows[0]["short_body"]) <= 160
    # A second tick or a repeated declare writes nothing more (idempotency key).
    await world.engine.tick(world.clock.advance(1))
    await world.engine.outage_declared(web1.spec, _declared_event(web1), alert["outage_id"])
    assert len(await world.outbox()) == 1

    await world.recover(web1)
    [alert] = await world.alerts()
    assert alert["state"] == "resolved" and alert["resolved_at"] is not None
    resolved = await world.outbox(event="resolved")
    assert sent_to(resolved) == [("resolved", "oncall")]
    assert "RESOLVED" in resolved[0]["title"] and "after" in resolved[0]["title"]


def _declared_event(runtime: EndpointRuntime) -> Any:
    from ispmon.availability.outage_events import OutageDeclared
    from ispmon.models import Severity, Status

    now = datetime.now(UTC)
    return OutageDeclared(now, now, Status.DOWN, Severity.MINOR, "unexpected_status", "HTTP 500", 2, True)


async def test_escalation_timeline_with_reminders_stops_on_acknowledge(world: World) -> None:
    world.engine.configure(
        [AlertRule(id="core", kind="outage", escalation="noc", tags=["core"])], {"noc": NOC_POLICY}
    )
    router = world.add("router", tags=["core"])
    await world.fail(router)
    [alert] = await world.alerts()
    assert sent_to(await world.outbox()) == [("declared", "oncall")]

    await world.engine.tick(world.clock.advance(14))
    assert len(await world.outbox()) == 1
    await world.engine.tick(world.clock.advance(1))  # 15 min: SMS
    assert sent_to(await world.outbox())[1:] == [("step", "sms")]
    await world.engine.tick(world.clock.advance(45))  # 60 min: NOC and the manager
    assert sent_to(await world.outbox())[2:] == [("step", "noc"), ("step", "manager")]
    await world.engine.tick(world.clock.advance(29))
    assert len(await world.outbox()) == 4
    await world.engine.tick(world.clock.advance(1))  # 90 min: first reminder to the last step
    assert sent_to(await world.outbox())[4:] == [("reminder", "noc"), ("reminder", "manager")]
    await world.engine.tick(world.clock.now)
    assert len(await world.outbox()) == 6

    service = AlertService(world.db, registry=world.registry, engine=world.engine)
    acked = await service.acknowledge(alert["id"], "alice", "on my way")
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "alice"
    assert acked["acknowledged_at"] == world.clock.now.isoformat()
    ack_rows = await world.outbox(event="acknowledged")
    assert sorted(r["channel"] for r in ack_rows) == ["manager", "noc", "oncall", "sms"]
    await world.engine.tick(world.clock.advance(120))  # no more reminders
    assert len(await world.outbox()) == 10
    with pytest.raises(Exception, match="already acknowledged by alice"):
        await service.acknowledge(alert["id"], "bob", None)

    await world.recover(router)
    resolved = await world.outbox(event="resolved")
    assert sorted(r["channel"] for r in resolved) == ["manager", "noc", "oncall", "sms"]


async def test_dependency_child_is_recorded_and_marked_but_not_paged_until_parent_recovers(
    world: World,
) -> None:
    router = world.add("router")
    server = world.add("server", parent="router")
    await world.fail(router)
    await world.fail(server)
    alerts = {a["endpoint_id"]: a for a in await world.alerts()}
    assert alerts["router"]["suppressed_by"] is None
    assert alerts["server"]["suppressed_by"] == "dependency:router"
    outage = await world.db.outages.get(server.state.outage_id)
    assert outage["suppressed_by"] == "dependency:router"
    assert sent_to(await world.outbox()) == [("declared", "oncall")]  # the router's only
    assert (await world.outbox())[0]["endpoint_id"] == "router"

    # The router comes back, the server stays down: a problem of its own, paged now.
    await world.recover(router)
    await world.engine.tick(world.clock.advance(1))
    server_rows = await world.outbox(endpoint_id="server")
    assert sent_to(server_rows) == [("declared", "oncall")]
    assert "parent router" in server_rows[0]["body"]
    [server_alert] = [a for a in await world.alerts() if a["endpoint_id"] == "server"]
    assert server_alert["suppressed_by"] is None and server_alert["was_suppressed"] is True


async def test_child_that_recovers_with_its_parent_pages_nobody(world: World) -> None:
    router = world.add("router")
    server = world.add("server", parent="router")
    await world.fail(router)
    await world.fail(server)
    await world.recover(server)
    await world.recover(router)
    await world.engine.tick(world.clock.advance(1))
    assert [r["endpoint_id"] for r in await world.outbox()] == ["router", "router"]  # declared, resolved
    server_alert = next(a for a in await world.alerts() if a["endpoint_id"] == "server")
    assert server_alert["state"] == "resolved" and server_alert["was_suppressed"]


async def test_self_connectivity_guard_suppresses_everything_but_the_canaries(world: World) -> None:
    gw1 = world.add("gw1", canary=True)
    gw2 = world.add("gw2", canary=True)
    web1 = world.add("web1")
    world.targets.status["gw1"] = 503
    await world.monitor.check(gw1)
    assert not world.engine.guard.isolated  # one canary failing is not the uplink
    await world.fail(gw2)
    assert world.engine.guard.isolated
    await world.fail(web1)
    await world.fail(gw1)
    by_endpoint = {a["endpoint_id"]: a for a in await world.alerts()}
    assert by_endpoint["web1"]["suppressed_by"] == "self_connectivity"
    assert by_endpoint["gw1"]["suppressed_by"] is None and by_endpoint["gw2"]["suppressed_by"] is None
    assert sorted(r["endpoint_id"] for r in await world.outbox()) == ["gw1", "gw2"]
    log = await world.pool.fetch("SELECT isolated, canaries FROM connectivity_events ORDER BY id")
    assert [r["isolated"] for r in log] == [True]
    assert sorted(log[0]["canaries"]) == ["gw1", "gw2"]

    await world.recover(gw1)
    await world.engine.tick(world.clock.advance(1))
    assert not world.engine.guard.isolated
    # web1 is still down with the uplink back: now it is paged.
    assert sent_to(await world.outbox(endpoint_id="web1")) == [("declared", "oncall")]


async def test_maintenance_window_holds_reminders_and_threshold_pages(world: World) -> None:
    world.engine.configure(
        [
            AlertRule(id="core", kind="outage", escalation="noc"),
            AlertRule(
                id="slow",
                kind="threshold",
                metric="response_time_ms",
                above=150,
                for_checks=2,
                channels=["noc"],
            ),
        ],
        {"noc": NOC_POLICY},
    )
    web1 = world.add("web1")
    await world.fail(web1)
    window = MaintenanceWindowSpec.model_validate(
        {
            "id": "mw-fw",
            "name": "firmware",
            "starts_at": world.clock.now,
            "ends_at": world.clock.now + timedelta(days=1),
            "endpoint_ids": ["web1", "web2"],
        }
    )
    world.monitor.set_maintenance([window])
    await world.engine.tick(world.clock.advance(20))
    [alert] = await world.alerts()
    assert alert["suppressed_by"] == "maintenance:mw-fw"
    assert sent_to(await world.outbox()) == [("declared", "oncall")]  # the SMS step was held

    # A threshold breach inside the window is recorded but not paged.
    web2 = world.add("web2")
    world.targets.delay["web2"] = 0.2
    for _ in range(2):
        await world.monitor.check(web2)
    await _settle(world)
    slow = next(a for a in await world.alerts() if a["rule_id"] == "slow")
    assert slow["kind"] == "threshold" and slow["suppressed_by"] == "maintenance:mw-fw"
    assert slow["details"]["value"] >= 150
    assert await world.outbox(endpoint_id="web2") == []

    world.monitor.set_maintenance([])
    await world.engine.tick(world.clock.now)
    # Window over: the outage's escalation resumes where it was (step 2 is due at 20 min).
    assert sent_to(await world.outbox(endpoint_id="web1"))[1:] == [("step", "sms")]
    assert sent_to(await world.outbox(endpoint_id="web2")) == [("breached", "noc")]

    slow_id = next(a["id"] for a in await world.alerts() if a["rule_id"] == "slow")
    await world.engine.acknowledge(slow_id, "alice", None)
    [ack] = await world.outbox(endpoint_id="web2", event="acknowledged")
    assert ack["title"].startswith("[MINOR] ACKNOWLEDGED by alice: ") and "response_time_ms" in ack["title"]

    world.targets.delay["web2"] = 0
    await world.monitor.check(web2)
    await _settle(world)
    assert sent_to(await world.outbox(endpoint_id="web2"))[2:] == [("cleared", "noc")]


async def _settle(world: World) -> None:
    import asyncio

    for _ in range(50):
        if not world.engine._tasks:
            return
        await asyncio.sleep(0.02)


async def test_manual_resolve_and_restart_reconcile(world: World) -> None:
    web1 = world.add("web1")
    # An outage stored without its alert: the crash came between the two writes.
    world.monitor.alerts = None
    await world.fail(web1)
    assert await world.alerts() == []

    restarted = world.new_engine()
    await restarted.load()
    await restarted.reconcile()
    [alert] = await world.alerts()
    assert alert["outage_id"] == web1.state.outage_id
    assert sent_to(await world.outbox()) == [("declared", "oncall")]
    # Another restart: nothing new.
    again = world.new_engine()
    await again.load()
    await again.reconcile()
    assert len(await world.alerts()) == 1 and len(await world.outbox()) == 1

    await OutageService(world.db, world.monitor).resolve_outage(alert["outage_id"], notes="decommissioned")
    [alert] = await world.alerts()
    assert alert["state"] == "resolved" and alert["details"]["resolution"] == "manual"
    assert sent_to(await world.outbox())[1:] == [("resolved", "oncall")]


async def test_escalated_outage_pages_again_and_enters_min_severity_rules(world: World) -> None:
    from ispmon.availability.outage_events import OutageSeverityChanged
    from ispmon.models import Severity

    world.engine.configure(
        [
            AlertRule(id="all", kind="outage", channels=["oncall"]),
            AlertRule(id="bad-only", kind="outage", min_severity=Severity.MAJOR, channels=["manager"]),
            AlertRule(id="fixed", kind="outage", severity=Severity.WARNING, channels=["noc"]),
        ],
        {},
    )
    web1 = world.add("web1")
    await world.fail(web1)
    assert {(a["rule_id"], a["severity"]) for a in await world.alerts()} == {
        ("all", "minor"),
        ("fixed", "warning"),
    }
    now = datetime.now(UTC)
    event = OutageSeverityChanged(Severity.MINOR, Severity.MAJOR, now, "duration")
    await world.engine.outage_escalated(web1.spec, event, web1.state.outage_id)
    await world.engine.outage_escalated(web1.spec, event, web1.state.outage_id)  # a retry: no duplicate
    alerts = {a["rule_id"]: a for a in await world.alerts()}
    assert alerts["all"]["severity"] == "major" and alerts["fixed"]["severity"] == "warning"
    assert alerts["bad-only"]["severity"] == "major"
    rows = sent_to(await world.outbox())
    assert sorted(rows) == sorted(
        [("declared", "oncall"), ("declared", "noc"), ("escalated", "oncall"), ("declared", "manager")]
    )
    escalated = (await world.outbox(event="escalated"))[0]
    assert escalated["title"].startswith("[MAJOR] ESCALATED")


async def test_outages_no_rule_matches_take_the_default_route(world: World) -> None:
    from ispmon.availability.outage_events import OutageSeverityChanged
    from ispmon.models import Severity

    world.engine.configure(
        [
            AlertRule(id="core", kind="outage", tags=["core"], channels=["noc"]),
            AlertRule(id="bad-only", kind="outage", min_severity=Severity.MAJOR, channels=["manager"]),
            AlertRule(id="off", kind="outage", enabled=False, channels=["sms"]),
        ],
        {},
    )
    router = world.add("router", tags=["core"])
    web1 = world.add("web1")  # no rule matches it (bad-only: not at minor; off: disabled)
    await world.fail(router)
    await world.fail(web1)
    alerts = {a["endpoint_id"]: a for a in await world.alerts()}
    assert alerts["router"]["rule_id"] == "core"
    # Paged, not dropped: through the default route, to ALERT_NOTIFICATION_CHANNELS ("oncall" here).
    assert alerts["web1"]["rule_id"] == "default" and alerts["web1"]["outage_id"] == web1.state.outage_id
    assert sent_to(await world.outbox(endpoint_id="router")) == [("declared", "noc")]
    assert sent_to(await world.outbox(endpoint_id="web1")) == [("declared", "oncall")]

    # It escalates into bad-only's range: that rule pages now, and the default route's channels
    # hear of the escalation too (their alert stays open until the outage ends).
    event = OutageSeverityChanged(Severity.MINOR, Severity.MAJOR, datetime.now(UTC), "duration")
    await world.engine.outage_escalated(web1.spec, event, web1.state.outage_id)
    assert sorted(sent_to(await world.outbox(endpoint_id="web1"))) == [
        ("declared", "manager"),
        ("declared", "oncall"),
        ("escalated", "oncall"),
    ]
    await world.recover(web1)
    assert {a["rule_id"]: a["state"] for a in await world.alerts() if a["endpoint_id"] == "web1"} == {
        "default": "resolved",
        "bad-only": "resolved",
    }


async def test_the_default_route_says_once_per_outage_when_its_channels_are_undefined(world: World) -> None:
    from structlog.testing import capture_logs

    world.engine.configure([AlertRule(id="core", kind="outage", tags=["core"], channels=["noc"])], {})
    world.engine.default_channels = ["email", "oncall"]  # "email": the default no one defined
    web1 = world.add("web1")
    with capture_logs() as logs:
        await world.fail(web1)
        await world.engine.tick(world.clock.advance(1))
        await world.engine.outage_declared(web1.spec, _declared_event(web1), web1.state.outage_id)
    [line] = [entry for entry in logs if entry["event"] == "alert_default_channels_undefined"]
    assert line["log_level"] == "warning" and line["outage_id"] == web1.state.outage_id
    assert (line["channels"], line["paged"]) == (["email"], ["oncall"])
    await world.recover(web1)

    # Nothing defined at all (or ALERT_NOTIFICATION_CHANNELS empty): recorded, logged as an error.
    for channels in (["email"], []):
        world.engine.default_channels = channels
        with capture_logs() as logs:
            await world.fail(web1)
        [line] = [entry for entry in logs if entry["event"] == "alert_default_channels_undefined"]
        assert line["log_level"] == "error" and line["paged"] == [] and "nobody is paged" in line["effect"]
        assert not [entry for entry in logs if entry["event"] == "alert_store_failed"]
        alert = next(a for a in await world.alerts() if a["outage_id"] == web1.state.outage_id)
        assert alert["rule_id"] == "default" and alert["state"] == "firing"
        await world.recover(web1)


async def test_resolved_alert_ends_at_the_first_up_check(world: World) -> None:
    world.monitor.policy = OutagePolicy(detection_threshold=2, verification_checks=1, recovery_threshold=2)
    web1 = world.add("web1")
    await world.fail(web1)
    world.targets.status["web1"] = 200
    first_up = datetime.now(UTC)
    await world.monitor.check(web1)
    assert web1.state.phase is Phase.OUTAGE
    second_up = datetime.now(UTC)
    await world.monitor.check(web1)
    assert web1.state.outage_id is None
    outage = (await world.pool.fetch("SELECT * FROM outages"))[0]
    [alert] = await world.alerts()
    # Decided at the second UP check, but over since the first: the alert and its message agree.
    assert first_up <= outage["resolved_at"] < second_up
    assert alert["resolved_at"] == outage["resolved_at"]
    assert alert["details"]["duration_seconds"] == pytest.approx(outage["duration_seconds"])
    from ispmon.alerts.messages import format_duration

    [resolved] = await world.outbox(event="resolved")
    assert resolved["title"].endswith(f"after {format_duration(outage['duration_seconds'])}")


async def test_a_channel_the_default_route_pages_cannot_be_deleted(world: World) -> None:
    from ispmon.services.errors import ConflictError

    service = AlertService(world.db, registry=world.registry, engine=world.engine)
    await service.create_channel({"name": "pager", "url": "json://127.0.0.1:9/pager"})
    world.engine.default_channels = ["pager"]
    with pytest.raises(ConflictError, match=r"the default route \(ALERT_NOTIFICATION_CHANNELS\)"):
        await service.delete_channel("pager")
    world.engine.default_channels = ["oncall"]
    await service.delete_channel("pager")
    assert world.registry.get("pager") is None
