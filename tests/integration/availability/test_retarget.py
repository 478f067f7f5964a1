"""An endpoint whose target changes (API PUT, config file) is a new endpoint as far as its state
goes: status unknown, failures counted afresh, and the old target's open outage resolved by hand
(notes 'target changed'). A change of anything else (a name, a timeout) keeps all of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from ispmon.availability.endpoints import build_endpoint
from ispmon.availability.outages import Phase
from ispmon.config import LoadedConfig, Settings
from ispmon.daemon import restore_monitor, sync_config
from ispmon.models import ProbeResult, Status
from ispmon.services.availability import AvailabilityService
from ispmon.store.history import history_row
from tests.integration.availability.test_monitor import Harness, h, open_outage, target

__all__ = ["h", "target"]  # fixtures, used by name


async def test_a_new_url_through_the_api_resets_status_and_resolves_the_outage(h: Harness) -> None:
    service = AvailabilityService(h.db, h.monitor)
    await service.create_endpoint(h.endpoint("web").stored_dict())
    rt = h.monitor.runtimes["web"]
    outage = await open_outage(h, rt)
    assert (await service.get_status("web"))["status"] == "down"

    h.target.status = 200
    with capture_logs() as logs:
        await service.update_endpoint("web", {"url": h.target.url("web-v2")})
    status = await service.get_status("web")
    assert status["status"] == "unknown" and status["consecutive_failures"] == 0
    assert status["open_outage"] is None and "last_check" not in status
    assert rt.state.phase is Phase.OK and rt.state.outage_id is None
    (row,) = await h.outages("web")
    assert row["id"] == outage["id"] and row["resolved_at"] is not None
    assert (row["resolution"], row["resolution_notes"]) == ("manual", "target changed")
    (changed,) = [e for e in logs if e["event"] == "endpoint_target_changed"]
    assert changed["outage_resolved"] == outage["id"] and changed["new"].endswith("/web-v2")

    # The new target is judged on its own: UP at once, no recovery count carried over.
    await h.check(rt)
    assert rt.state.status is Status.UP and h.target.requests["web-v2"] == 1


async def test_a_change_that_keeps_the_target_keeps_status_and_outage(h: Harness) -> None:
    service = AvailabilityService(h.db, h.monitor)
    await service.create_endpoint(h.endpoint("web").stored_dict())
    rt = h.monitor.runtimes["web"]
    outage = await open_outage(h, rt)
    await service.update_endpoint("web", {"name": "Renamed", "timeout": 0.4, "expected_status_code": 200})
    assert rt.state.status is Status.DOWN and rt.state.outage_id == outage["id"]
    assert (await h.outages("web"))[0]["resolved_at"] is None


async def test_a_result_of_the_old_target_in_flight_is_dropped(h: Harness) -> None:
    rt = h.add("web")
    h.target.status = 500
    h.target.delay = 0.3
    h.target.received.clear()
    in_flight = asyncio.create_task(h.monitor.check(rt))
    await asyncio.wait_for(h.target.received.wait(), 2.0)
    await h.monitor.replace(h.endpoint("web", url=h.target.url("elsewhere")))
    await in_flight
    assert rt.state.status is Status.UNKNOWN and rt.state.consecutive_failures == 0
    assert await h.history_rows("web") == []


async def test_the_config_file_takes_over_api_ids_and_retargets(h: Harness, tmp_path: Path) -> None:
    db = h.db
    now = datetime.now(UTC)
    await db.endpoints.insert(build_endpoint({"id": "web", "name": "Web", "url": h.target.url("web")}), "api")
    old_dns = build_endpoint({"id": "dns", "name": "DNS", "url": "dns://127.0.0.1/a.example"})
    await db.endpoints.sync_config([old_dns])
    h.history.submit(history_row("dns", now, ProbeResult(Status.DOWN)))
    await h.flush()
    outage_id, _ = await db.outages.open(
        "dns",
        started_at=now,
        declared_at=now,
        status="down",
        severity="minor",
        error_kind=None,
        error=None,
        failures=3,
        verified=True,
    )
    settings = Settings(ispmon_state_dir=tmp_path)
    file_endpoints = [
        build_endpoint({"id": "web", "name": "Web", "url": h.target.url("web")}),
        build_endpoint({"id": "dns", "name": "DNS", "url": "dns://127.0.0.1/b.example"}),
    ]
    config = LoadedConfig(settings=settings, endpoints=file_endpoints, path=tmp_path / "ispmon.toml")
    with capture_logs() as logs:
        retargeted = await sync_config(db, config)
        assert await sync_config(db, config) == set()  # nothing changes the second time
    assert retargeted == {"dns"}
    takeovers = [e for e in logs if e["event"] == "config_takes_over_endpoint"]
    assert [(e["endpoint_id"], e["log_level"]) for e in takeovers] == [("web", "warning")]  # once
    assert {r["id"]: r["source"] for r in await db.endpoints.all()} == {"web": "config", "dns": "config"}
    row = await db.outages.get(outage_id)
    assert row is not None and (row["resolution"], row["resolution_notes"]) == ("manual", "target changed")

    # At start, the last status of a retargeted endpoint (about its old target) is not restored.
    restored = h.new_monitor()
    await restore_monitor(db, restored, settings)
    assert restored.runtimes["dns"].state.status is Status.DOWN
    restored = h.new_monitor()
    await restore_monitor(db, restored, settings, retargeted)
    assert restored.runtimes["dns"].state.status is Status.UNKNOWN
