"""The monitor against a real PostgreSQL and a real HTTP target on loopback.

The Monitor is built as `ispmon.daemon` builds it (ProbeContext, one BatchWriter for status_history
and one for endpoint_events, the OutageRepo). Checks are driven by calling `monitor.check(...)`
directly, so every test is deterministic and fast; the target can be switched between answering
200, answering 500 and not listening at all, and counts the requests it receives per path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.availability.maintenance import MaintenanceWindowSpec
from ispmon.availability.monitor import EndpointRuntime, Monitor
from ispmon.availability.outages import OutagePolicy, Phase
from ispmon.config import Settings
from ispmon.daemon import restore_monitor
from ispmon.models import ErrorKind, ProbeResult, Protocol, Status
from ispmon.probes.base import PROBES, ProbeContext
from ispmon.services.outages import OutageService
from ispmon.store.database import Database
from ispmon.store.db import create_pool
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.outages import EVENT_COLUMNS, OutageRepo
from ispmon.store.writer import BatchWriter

# The daemon's defaults: 3 failing checks, then 2 immediate verification re-checks, 2 UPs to resolve.
POLICY = OutagePolicy(detection_threshold=3, verification_checks=2, recovery_threshold=2)


class Target:
    """An aiohttp server on 127.0.0.1: answers `status` (or the next queued one), or is stopped."""

    def __init__(self) -> None:
        self.status = 200
        self.queue: deque[int] = deque()  # statuses for the next requests, before `status` applies
        self.delay = 0.0
        self.requests: Counter[str] = Counter()
        self.received = asyncio.Event()
        self.port = 0
        app = web.Application()
        app.router.add_get("/{name}", self._handle)
        self._runner = web.AppRunner(app)
        self._site: web.TCPSite | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests[request.match_info["name"]] += 1
        self.received.set()
        status = self.queue.popleft() if self.queue else self.status
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=status, text="ok" if status == 200 else "failing")

    async def start(self) -> None:
        if self._site is None and not self._runner.server:
            await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start()` (same port)."""
        assert self._site is not None
        await self._site.stop()
        self._site = None

    async def close(self) -> None:
        await self._runner.cleanup()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


class Harness:
    """The components the daemon wires together, plus helpers to read back what they stored."""

    def __init__(self, pool: asyncpg.Pool, target: Target) -> None:
        self.pool = pool
        self.db = Database(pool)
        self.target = target
        self.ctx = ProbeContext()
        self.history = BatchWriter(pool, "status_history", HISTORY_COLUMNS)
        self.events = BatchWriter(pool, "endpoint_events", EVENT_COLUMNS)
        self.monitors: list[Monitor] = []
        self.monitor = self.new_monitor()

    def new_monitor(self) -> Monitor:
        monitor = Monitor(
            ctx=self.ctx, policy=POLICY, history=self.history, events=self.events, outages=self.db.outages
        )
        self.monitors.append(monitor)
        return monitor

    def endpoint(self, name: str, **fields: Any) -> EndpointSpec:
        data = {
            "id": name,
            "name": name,
            "url": self.target.url(name),
            "check_interval": 1,
            "timeout": 0.5,
            "retries": 0,
            **fields,
        }
        return build_endpoint(data)

    def add(self, name: str, **fields: Any) -> EndpointRuntime:
        spec = self.endpoint(name, **fields)
        self.monitor.upsert(spec)
        return self.monitor.runtimes[spec.id]

    async def check(self, runtime: EndpointRuntime, times: int = 1, monitor: Monitor | None = None) -> None:
        for _ in range(times):
            await (monitor or self.monitor).check(runtime)

    async def flush(self) -> None:
        await self.history.flush()
        await self.events.flush()

    async def outages(self, endpoint_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM outages WHERE endpoint_id = $1 ORDER BY id", endpoint_id)

    async def history_rows(self, endpoint_id: str) -> list[asyncpg.Record]:
        await self.flush()
        return await self.pool.fetch(
            "SELECT * FROM status_history WHERE endpoint_id = $1 ORDER BY checked_at, id", endpoint_id
        )

    async def event_rows(self, endpoint_id: str) -> list[asyncpg.Record]:
        await self.flush()
        return await self.pool.fetch(
            "SELECT * FROM endpoint_events WHERE endpoint_id = $1 ORDER BY at, id", endpoint_id
        )

    async def close(self) -> None:
        for monitor in self.monitors:
            await monitor.close()
        await self.history.close()
        await self.events.close()
        await self.ctx.close()


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    server = Target()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def h(pool: asyncpg.Pool, target: Target) -> AsyncIterator[Harness]:
    harness = Harness(pool, target)
    try:
        yield harness
    finally:
        await harness.close()


async def open_outage(h: Harness, runtime: EndpointRuntime) -> asyncpg.Record:
    """Fail the endpoint's target until an outage is declared; returns its row."""
    h.target.status = 500
    await h.check(runtime, POLICY.detection_threshold)
    assert runtime.state.phase is Phase.OUTAGE
    rows = await h.outages(runtime.spec.id)
    assert len(rows) == 1 and rows[0]["resolved_at"] is None
    assert runtime.state.outage_id == rows[0]["id"]
    return rows[0]


async def test_outage_lifecycle_detection_verification_declaration_resolution(h: Harness) -> None:
    target = h.target
    rt = h.add("web", criticality="high")
    await h.check(rt)
    assert rt.state.status is Status.UP
    assert target.requests["web"] == 1

    target.status = 500
    t_first_failure = datetime.now(UTC)
    await h.check(rt, 2)
    assert rt.state.status is Status.DOWN
    assert rt.state.phase is Phase.OK  # below the threshold: nothing declared, nothing verifying
    assert target.requests["web"] == 3
    assert await h.outages("web") == []

    # The third failure reaches the threshold: two verification re-checks follow at once, within
    # the same check, and only then is the outage declared.
    await h.check(rt)
    assert target.requests["web"] == 6
    rows = await h.outages("web")
    assert len(rows) == 1
    outage = rows[0]
    assert outage["severity"] == "major"  # DOWN on a high-criticality endpoint
    assert outage["status"] == "down"
    assert outage["error_kind"] == ErrorKind.UNEXPECTED_STATUS.value
    assert outage["verified"] is True
    assert outage["failures"] == 5
    assert outage["resolved_at"] is None
    # The outage starts at the first failing check, not when it was declared.
    assert t_first_failure <= outage["started_at"] < outage["declared_at"]
    assert rt.state.outage_id == outage["id"]

    # Still failing (answering 500, then not listening at all): the same outage, no new one, no
    # more verification.
    await h.check(rt, 2)
    await target.stop()
    await h.check(rt, 2)
    assert rt.last is not None and rt.last[1].error_kind is ErrorKind.REFUSED
    assert target.requests["web"] == 8
    assert [r["id"] for r in await h.outages("web")] == [outage["id"]]

    # Back: resolved after recovery_threshold (2) UP checks, not after the first; but it ended at
    # the first, just as it started at the first failing check.
    await target.start()
    target.status = 200
    before_first_up = datetime.now(UTC)
    await h.check(rt)
    after_first_up = datetime.now(UTC)
    assert (await h.outages("web"))[0]["resolved_at"] is None
    await h.check(rt)
    (resolved,) = await h.outages("web")
    assert before_first_up <= resolved["resolved_at"] <= after_first_up
    assert resolved["resolution"] == "auto"
    assert resolved["duration_seconds"] == pytest.approx(
        (resolved["resolved_at"] - resolved["started_at"]).total_seconds(), abs=1e-3
    )
    assert resolved["duration_seconds"] == pytest.approx(
        (after_first_up - t_first_failure).total_seconds(), abs=0.5
    )
    assert rt.state.phase is Phase.OK and rt.state.outage_id is None and rt.state.status is Status.UP

    # Every check is in the history, the verification re-checks marked as such.
    history = await h.history_rows("web")
    assert [r["status"] for r in history] == ["up"] + ["down"] * 9 + ["up"] * 2
    verification = [r for r in history if (r["details"] or {}).get("verification")]
    assert len(verification) == 2
    assert all(r["status"] == "down" and r["error_kind"] == "unexpected_status" for r in verification)
    assert [r["error_kind"] for r in history[8:10]] == ["refused", "refused"]

    events = await h.event_rows("web")
    kinds = [e["kind"] for e in events]
    assert kinds == [
        "status_changed",  # unknown -> up
        "status_changed",  # up -> down
        "verification_requested",
        "outage_declared",
        "status_changed",  # down -> up
        "outage_resolved",
    ]
    changes = [(e["data"]["old"], e["data"]["new"]) for e in events if e["kind"] == "status_changed"]
    assert changes == [("unknown", "up"), ("up", "down"), ("down", "up")]
    declared = events[3]
    assert declared["outage_id"] == outage["id"]
    assert declared["data"]["severity"] == "major" and declared["data"]["verified"] is True
    assert events[5]["outage_id"] == outage["id"]
    assert events[5]["data"]["duration_seconds"] == pytest.approx(resolved["duration_seconds"], abs=1e-3)


@pytest.mark.parametrize(
    ("criticality", "severity"),
    [("critical", "critical"), ("medium", "minor"), ("low", "warning")],
)
async def test_severity_follows_criticality(h: Harness, criticality: str, severity: str) -> None:
    rt = h.add(f"svc-{criticality}", criticality=criticality)
    outage = await open_outage(h, rt)
    assert outage["severity"] == severity
    assert rt.state.severity is not None and rt.state.severity.value == severity


async def test_recovery_during_verification_is_a_false_alarm(h: Harness) -> None:
    rt = h.add("flaky")
    h.target.status = 200
    h.target.queue.extend([500] * POLICY.detection_threshold)  # then 200 from the first re-check on
    await h.check(rt, POLICY.detection_threshold)
    # One verification re-check ran, saw UP and stopped the verification.
    assert h.target.requests["flaky"] == POLICY.detection_threshold + 1
    assert rt.state.phase is Phase.OK and rt.state.status is Status.UP
    assert rt.state.consecutive_failures == 0
    assert await h.outages("flaky") == []
    events = await h.event_rows("flaky")
    kinds = [e["kind"] for e in events]
    assert "outage_declared" not in kinds
    assert kinds.count("false_alarm") == 1
    alarm = next(e for e in events if e["kind"] == "false_alarm")
    assert alarm["data"]["failures"] == POLICY.detection_threshold
    history = await h.history_rows("flaky")
    assert [r["status"] for r in history] == ["down"] * 3 + ["up"]
    assert history[-1]["details"]["verification"] is True


def window(endpoint_id: str, mode: str) -> MaintenanceWindowSpec:
    now = datetime.now(UTC)
    return MaintenanceWindowSpec(
        id=f"mw-{mode}",
        name=f"{mode} window",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        endpoint_ids=[endpoint_id],
        mode=mode,
    )


async def test_mute_window_probes_but_opens_no_outage(h: Harness) -> None:
    rt = h.add("muted")
    other = h.add("unmuted")
    h.monitor.set_maintenance([window("muted", "mute")])
    h.target.status = 500
    await h.check(rt, 6)
    await h.check(other, 3)
    assert h.target.requests["muted"] == 6  # probed, but no verification re-checks either
    assert rt.state.status is Status.MAINTENANCE
    assert rt.state.phase is Phase.OK and rt.state.consecutive_failures == 0
    assert await h.outages("muted") == []
    # The window is per endpoint: the other one, failing the same way, has its outage.
    assert len(await h.outages("unmuted")) == 1
    snapshot = h.monitor.snapshot("muted")
    assert snapshot is not None and snapshot["status"] == "maintenance"
    # Recorded as maintenance (availability leaves the window out); what the probe saw is kept.
    assert snapshot["last_check"]["status"] == "maintenance"
    assert snapshot["last_check"]["details"]["probe_status"] == "down"
    assert snapshot["last_check"]["error_kind"] == "unexpected_status"
    await h.monitor.history.flush()
    muted_rows = await h.history_rows("muted")
    assert [r["status"] for r in muted_rows] == ["maintenance"] * 6
    assert all(r["details"]["probe_status"] == "down" for r in muted_rows)

    # The window ends: failures count again from zero.
    h.monitor.set_maintenance([])
    await h.check(rt, POLICY.detection_threshold - 1)
    assert await h.outages("muted") == []
    await h.check(rt)
    assert len(await h.outages("muted")) == 1


async def test_skip_window_does_not_probe_and_records_maintenance(h: Harness) -> None:
    rt = h.add("skipped")
    h.target.status = 500
    await h.check(rt, 2)
    assert rt.state.consecutive_failures == 2
    h.monitor.set_maintenance([window("skipped", "skip")])
    await h.check(rt, 3)
    assert h.target.requests["skipped"] == 2  # no request during the window
    assert rt.state.status is Status.MAINTENANCE
    assert rt.state.consecutive_failures == 0  # the pending candidate was dropped
    assert await h.outages("skipped") == []
    history = await h.history_rows("skipped")
    assert [r["status"] for r in history] == ["down", "down"] + ["maintenance"] * 3
    assert all(r["details"] == {"maintenance": "skip"} for r in history[2:])
    assert history[-1]["response_time_ms"] is None


async def test_restart_resumes_the_open_outage(h: Harness, db_dsn: str, tmp_path: Path) -> None:
    rt = h.add("core")
    await h.db.endpoints.upsert(rt.spec)
    original = await open_outage(h, rt)
    await h.flush()
    await h.monitor.close()
    requests_before = h.target.requests["core"]

    # A new process: a fresh Monitor restored the way the daemon does it.
    settings = Settings(database_url=db_dsn, ispmon_state_dir=tmp_path)
    monitor = h.new_monitor()
    await restore_monitor(h.db, monitor, settings)
    rt2 = monitor.runtimes["core"]
    assert rt2 is not rt
    assert rt2.state.phase is Phase.OUTAGE
    assert rt2.state.outage_id == original["id"]
    assert rt2.state.status is Status.DOWN  # from the last history row

    await h.check(rt2, 4, monitor=monitor)
    assert h.target.requests["core"] == requests_before + 4  # no verification: already declared
    rows = await h.outages("core")
    assert [r["id"] for r in rows] == [original["id"]]
    assert rows[0]["resolved_at"] is None

    h.target.status = 200
    await h.check(rt2, POLICY.recovery_threshold, monitor=monitor)
    (resolved,) = await h.outages("core")
    assert resolved["id"] == original["id"]
    assert resolved["resolution"] == "auto"
    assert resolved["started_at"] == original["started_at"]  # the duration counts from the original start
    assert resolved["duration_seconds"] == pytest.approx(
        (resolved["resolved_at"] - original["started_at"]).total_seconds(), abs=1e-3
    )
    kinds = [e["kind"] for e in await h.event_rows("core")]
    assert kinds.count("outage_declared") == 1  # nothing re-declared (or re-alerted) after the restart
    assert kinds.count("outage_resolved") == 1


async def _up_checks(h: Harness, endpoint_id: str) -> list[datetime]:
    return [r["checked_at"] for r in await h.history_rows(endpoint_id) if r["status"] == "up"]


async def test_outage_ends_at_the_first_up_of_the_run_across_a_restart(
    h: Harness, db_dsn: str, tmp_path: Path
) -> None:
    # A generous timeout: on a loaded CI machine a 0.5 s one can expire on loopback, and a timed-out
    # check in the middle of the run would void it (the test is about the run, not the timeout).
    rt = h.add("edge", check_interval=10, timeout=5)
    await h.db.endpoints.upsert(rt.spec)
    original = await open_outage(h, rt)
    # UP, DOWN: that run is void. Then one UP, and the daemon restarts before the second one.
    h.target.queue.extend([200, 500])
    await h.check(rt, 2)
    h.target.status = 200
    await h.check(rt)
    first_up = (await _up_checks(h, "edge"))[-1]
    assert rt.state.recovering_since == first_up and rt.state.consecutive_successes == 1
    await h.flush()
    await h.monitor.close()

    monitor = h.new_monitor()
    await restore_monitor(h.db, monitor, Settings(database_url=db_dsn, ispmon_state_dir=tmp_path))
    rt2 = monitor.runtimes["edge"]
    assert rt2.state.phase is Phase.OUTAGE and rt2.state.outage_id == original["id"]
    # The recovering run survived the restart: its count and its first UP time.
    assert (rt2.state.consecutive_successes, rt2.state.recovering_since) == (1, first_up)

    await h.check(rt2, monitor=monitor)  # the second UP in a row: resolved, ended at the first
    assert rt2.last is not None and rt2.last[1].status is Status.UP, rt2.last
    (resolved,) = await h.outages("edge")
    assert resolved["resolved_at"] == first_up and resolved["resolution"] == "auto"
    assert resolved["duration_seconds"] == pytest.approx(
        (first_up - original["started_at"]).total_seconds(), abs=1e-3
    )
    [event] = [e for e in await h.event_rows("edge") if e["kind"] == "outage_resolved"]
    assert event["data"]["resolved_at"] == first_up.isoformat()
    assert event["at"] > first_up  # the event itself is when the resolution was decided


async def test_manual_resolution_then_still_failing_opens_a_new_outage(h: Harness) -> None:
    rt = h.add("manual")
    first = await open_outage(h, rt)
    service = OutageService(h.db, h.monitor)
    resolved = await service.resolve_outage(first["id"], notes="router replaced")
    assert resolved["resolution"] == "manual" and resolved["resolution_notes"] == "router replaced"
    assert rt.state.phase is Phase.OK and rt.state.outage_id is None

    # Still failing: counted afresh, so a new outage opens only after the threshold.
    await h.check(rt, POLICY.detection_threshold - 1)
    assert [r["id"] for r in await h.outages("manual")] == [first["id"]]
    await h.check(rt)
    rows = await h.outages("manual")
    assert len(rows) == 2
    second = rows[1]
    assert second["id"] != first["id"] and second["resolved_at"] is None
    assert second["started_at"] > first["started_at"]
    assert rt.state.outage_id == second["id"]
    assert sum(1 for r in rows if r["resolved_at"] is None) == 1
    # The first keeps its manual resolution; an UP now resolves only the second.
    h.target.status = 200
    await h.check(rt, POLICY.recovery_threshold)
    rows = await h.outages("manual")
    assert [(r["id"], r["resolution"]) for r in rows] == [(first["id"], "manual"), (second["id"], "auto")]


async def test_manual_resolution_during_a_check_is_not_undone(h: Harness) -> None:
    rt = h.add("racy")
    first = await open_outage(h, rt)
    h.target.delay = 0.3
    h.target.received.clear()
    in_flight = asyncio.create_task(h.monitor.check(rt))
    await asyncio.wait_for(h.target.received.wait(), 2.0)
    # The operator resolves the outage while the probe is waiting for the target.
    await OutageService(h.db, h.monitor).resolve_outage(first["id"], notes="resolved by hand")
    await in_flight
    h.target.delay = 0.0
    assert rt.state.outage_id != first["id"]
    assert rt.state.phase is not Phase.OUTAGE
    # The check that was in flight must not have put the resolved outage back: the target keeps
    # failing, so a new outage opens after the threshold.
    await h.check(rt, POLICY.detection_threshold)
    rows = await h.outages("racy")
    assert len(rows) == 2, [dict(r) for r in rows]
    assert rows[1]["resolved_at"] is None and rt.state.outage_id == rows[1]["id"]


async def test_database_down_at_declaration_is_retried_once_it_is_back(h: Harness, db_dsn: str) -> None:
    rt = h.add("nodb")
    broken = await create_pool(db_dsn, min_size=1, max_size=1)
    await broken.close()
    h.monitor.outages = OutageRepo(broken)
    h.target.status = 500
    t_first_failure = datetime.now(UTC)
    await h.check(rt, POLICY.detection_threshold)  # declared, but the row cannot be written
    assert rt.pending_declare is not None
    assert rt.state.phase is Phase.OUTAGE and rt.state.outage_id is None
    await h.check(rt)  # still down, still no database: kept pending, no crash
    assert rt.pending_declare is not None
    assert await h.outages("nodb") == []

    t_database_back = datetime.now(UTC)
    h.monitor.outages = OutageRepo(h.pool)
    await h.check(rt)
    assert rt.pending_declare is None
    rows = await h.outages("nodb")
    assert len(rows) == 1
    assert rt.state.outage_id == rows[0]["id"]
    # The stored outage is the one declared while the database was down, with its original times.
    assert t_first_failure <= rows[0]["started_at"] < rows[0]["declared_at"] < t_database_back
    assert rows[0]["started_at"] == rt.state.outage_started_at
    await h.check(rt, 2)
    assert len(await h.outages("nodb")) == 1
    declared = [e for e in await h.event_rows("nodb") if e["kind"] == "outage_declared"]
    assert [e["outage_id"] for e in declared] == [rows[0]["id"]]

    h.target.status = 200
    await h.check(rt, POLICY.recovery_threshold)
    (resolved,) = await h.outages("nodb")
    assert resolved["resolved_at"] is not None and resolved["resolution"] == "auto"


async def test_database_down_at_resolution_is_retried_once_it_is_back(h: Harness, db_dsn: str) -> None:
    rt = h.add("nodb-resolve")
    outage = await open_outage(h, rt)
    broken = await create_pool(db_dsn, min_size=1, max_size=1)
    await broken.close()
    h.monitor.outages = OutageRepo(broken)
    h.target.status = 200
    before_resolution = datetime.now(UTC)
    await h.check(rt, POLICY.recovery_threshold)  # resolved in memory; the UPDATE fails
    after_resolution = datetime.now(UTC)
    assert rt.state.phase is Phase.OK and rt.state.status is Status.UP
    await h.check(rt)  # no crash while the database stays down
    assert (await h.outages("nodb-resolve"))[0]["resolved_at"] is None

    h.monitor.outages = OutageRepo(h.pool)
    await h.check(rt)
    (resolved,) = await h.outages("nodb-resolve")
    assert resolved["id"] == outage["id"]
    # Closed with the time it was resolved at, not when the database came back.
    assert before_resolution <= resolved["resolved_at"] <= after_resolution
    assert resolved["resolution"] == "auto"
    # A later failure opens a new outage instead of finding the stale one still open.
    h.target.status = 500
    await h.check(rt, POLICY.detection_threshold)
    rows = await h.outages("nodb-resolve")
    assert len(rows) == 2 and rows[1]["resolved_at"] is None and rows[1]["id"] == rt.state.outage_id
    kinds = [e["kind"] for e in await h.event_rows("nodb-resolve")]
    assert kinds.count("outage_resolved") == 1


async def test_outage_over_before_the_database_is_back_is_still_recorded(h: Harness, db_dsn: str) -> None:
    rt = h.add("nodb-whole")
    broken = await create_pool(db_dsn, min_size=1, max_size=1)
    await broken.close()
    h.monitor.outages = OutageRepo(broken)
    h.target.status = 500
    t_first_failure = datetime.now(UTC)
    await h.check(rt, POLICY.detection_threshold)  # declared; the INSERT fails
    h.target.status = 200
    await h.check(rt, POLICY.recovery_threshold)  # over; the UPDATE has nothing to close
    t_recovered = datetime.now(UTC)
    assert rt.state.phase is Phase.OK and await h.outages("nodb-whole") == []

    h.monitor.outages = OutageRepo(h.pool)
    await h.check(rt)  # the database is back: the outage is stored, then closed, once
    (row,) = await h.outages("nodb-whole")
    assert t_first_failure <= row["started_at"] < row["resolved_at"] <= t_recovered
    assert row["resolution"] == "auto" and row["duration_seconds"] > 0
    assert rt.pending_declare is None and rt.pending_resolve is None
    kinds = [e["kind"] for e in await h.event_rows("nodb-whole")]
    assert kinds.count("outage_declared") == 1 and kinds.count("outage_resolved") == 1
    await h.check(rt, 3)
    assert len(await h.outages("nodb-whole")) == 1


async def test_an_escalation_while_the_database_is_down_reaches_the_row_later(
    h: Harness, db_dsn: str
) -> None:
    rt = h.add("escalates", degraded_response_time_ms=20, criticality="high")
    h.target.delay = 0.06  # slow: DEGRADED
    await h.check(rt, POLICY.detection_threshold)
    (row,) = await h.outages("escalates")
    assert (row["status"], row["severity"]) == ("degraded", "minor")

    broken = await create_pool(db_dsn, min_size=1, max_size=1)
    await broken.close()
    h.monitor.outages = OutageRepo(broken)
    h.target.delay = 0.0
    h.target.status = 500  # now DOWN: the outage escalates (status) while its row cannot be written
    await h.check(rt)
    assert rt.state.severity is not None and rt.state.severity.value == "major"
    assert rt.pending_update is not None
    assert (await h.outages("escalates"))[0]["severity"] == "minor"

    h.monitor.outages = OutageRepo(h.pool)
    await h.check(rt)
    (row,) = await h.outages("escalates")
    assert (row["status"], row["severity"]) == ("down", "major")
    assert rt.pending_update is None


@contextlib.contextmanager
def probe_replaced(protocol: Protocol, fn: Any) -> Any:
    saved = dict.get(PROBES, protocol)
    PROBES[protocol] = fn
    try:
        yield
    finally:
        if saved is None:
            PROBES.pop(protocol, None)
        else:
            PROBES[protocol] = saved


async def test_a_probe_that_raises_is_internal_unknown_and_opens_no_outage(h: Harness) -> None:
    calls = 0

    async def broken_probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug in a probe")

    tcp = h.add("tcp-svc", protocol="tcp", url=f"127.0.0.1:{h.target.port}", retries=2)
    web_rt = h.add("web-ok")
    with probe_replaced(Protocol.TCP, broken_probe):
        await h.check(tcp)
        assert tcp.last is not None
        result = tcp.last[1]
        # Our bug says nothing about the target: UNKNOWN, which the outage logic ignores.
        assert result.status is Status.UNKNOWN
        assert result.error_kind is ErrorKind.INTERNAL
        assert "bug in a probe" in (result.error or "")
        assert result.attempts == 1 and calls == 1  # a bug is not retried like a flaky target
        # Other endpoints are unaffected, and the broken one keeps being checked.
        await h.check(web_rt)
        assert web_rt.state.status is Status.UP
        await h.check(tcp, 2 + POLICY.detection_threshold)
        assert tcp.state.status is Status.UNKNOWN and tcp.state.consecutive_failures == 0
        assert await h.outages("tcp-svc") == []
    # The real TCP probe is back (the target's port accepts connections): the endpoint recovers.
    await h.check(tcp, POLICY.recovery_threshold)
    assert tcp.state.status is Status.UP
    history = await h.history_rows("tcp-svc")
    assert [r["error_kind"] for r in history][:3] == ["internal"] * 3
    assert history[-1]["status"] == "up"


async def test_a_probe_bug_is_logged_once_per_endpoint_until_its_result_changes(h: Harness) -> None:
    from structlog.testing import capture_logs

    async def broken_probe(endpoint: EndpointSpec, timeout: float, ctx: ProbeContext) -> ProbeResult:
        raise RuntimeError(f"bug in a probe, checking {endpoint.id} at {asyncio.get_running_loop().time()}")

    one = h.add("tcp-one", protocol="tcp", url=f"127.0.0.1:{h.target.port}")
    two = h.add("tcp-two", protocol="tcp", url=f"127.0.0.1:{h.target.port}")
    with capture_logs() as logs:
        with probe_replaced(Protocol.TCP, broken_probe):
            for _ in range(5):
                await h.check(one)
                await h.check(two)
        await h.check(one)  # the real probe: tcp-one's result changes
        with probe_replaced(Protocol.TCP, broken_probe):
            await h.check(one, 3)
            await h.check(two, 3)
    crashed = [entry for entry in logs if entry["event"] == "probe_crashed"]
    # The message differs every time; the bug (type and place) does not.
    assert [entry["endpoint_id"] for entry in crashed] == ["tcp-one", "tcp-two", "tcp-one"]
    assert all(entry["exc_info"] is True and entry["log_level"] == "error" for entry in crashed)
    cleared = [entry for entry in logs if entry["event"] == "probe_bug_cleared"]
    assert [entry["endpoint_id"] for entry in cleared] == ["tcp-one"]
    assert one.last is not None and one.last[1].error_kind is ErrorKind.INTERNAL


async def test_scheduled_checks_run_through_the_scheduler(h: Harness) -> None:
    """The scheduler path end to end: checks happen on their own, a failing one does not stop it."""
    rt = h.add("scheduled")
    task = asyncio.create_task(h.monitor.run())
    try:
        async with asyncio.timeout(3.5):  # first run within one interval (1 s), the second 1 s later
            while h.target.requests["scheduled"] < 2:
                h.target.received.clear()
                await h.target.received.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert h.target.requests["scheduled"] >= 2
    assert rt.state.status is Status.UP
    stats = h.monitor.stats()
    assert stats["scheduler"]["dispatched"] >= 2
    assert stats["scheduler"]["lag_p99_ms"] < 100


async def test_stats_are_logged_periodically_not_per_check(h: Harness) -> None:
    from structlog.testing import capture_logs

    from ispmon.daemon import log_stats

    rt = h.add("stats")
    with capture_logs() as logs:
        task = asyncio.create_task(log_stats(h.monitor, interval=0.2))
        try:
            await h.check(rt, 3)
            await asyncio.sleep(0.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    lines = [entry for entry in logs if entry["event"] == "monitor_stats"]
    assert 1 <= len(lines) <= 3
    assert lines[0]["endpoints"] >= 1 and "lag_p99_ms" in lines[0] and lines[0]["write_dropped"] == 0
