"""ResourceWatch: the monitor's count of checks that failed for its own resources, and one log line
per change of that state (never one per check)."""

from __future__ import annotations

import time

from structlog.testing import capture_logs

from ispmon.availability.resource_watch import ResourceWatch
from ispmon.models import ErrorKind, ProbeResult, Status
from ispmon.probes.resources import resource_failure

OURS = resource_failure("EMFILE", "cannot connect to 192.0.2.1:80: Too many open files")
UP = ProbeResult(Status.UP, 2.0)
THEIRS = ProbeResult.down(ErrorKind.REFUSED, "connection refused by 192.0.2.1:80")
BUG = ProbeResult(Status.UNKNOWN, None, ErrorKind.INTERNAL, "internal error in tcp probe: KeyError()")


def test_one_line_when_it_starts_and_one_when_it_ends() -> None:
    watch = ResourceWatch(quiet=0.05)
    with capture_logs() as logs:
        for n in range(200):
            watch.observe(f"ep-{n}", OURS)
            watch.observe(f"other-{n}", UP)  # checks between them still get a descriptor now and then
        assert watch.stats()["exhausted"] is True
        time.sleep(0.06)
        watch.observe("ep-1", THEIRS)  # a target's own failure says nothing about our resources
        watch.observe("ep-2", UP)
    assert [entry["event"] for entry in logs] == ["monitor_resource_exhausted", "monitor_resource_recovered"]
    started, ended = logs
    assert started["resource"] == "EMFILE" and started["endpoint_id"] == "ep-0"
    assert started["log_level"] == "error" and "LimitNOFILE" in started["hint"]
    assert ended["failures"] == 200 and ended["by_resource"] == {"EMFILE": 200}
    stats = watch.stats()
    assert stats == {"exhausted": False, "since": None, "failures": 200, "by_resource": {"EMFILE": 200}}


def test_recovery_waits_for_the_quiet_period() -> None:
    watch = ResourceWatch(quiet=60.0)
    with capture_logs() as logs:
        watch.observe("a", OURS)
        for _ in range(100):
            watch.observe("b", UP)
    assert [entry["event"] for entry in logs] == ["monitor_resource_exhausted"]
    assert watch.exhausted and watch.stats()["since"] is not None


def test_a_bug_is_not_a_resource_failure() -> None:
    watch = ResourceWatch()
    with capture_logs() as logs:
        watch.observe("a", BUG)
    assert logs == [] and watch.stats()["failures"] == 0
