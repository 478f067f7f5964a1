"""The issue's case: the monitor out of file descriptors must not page anyone.

Real exhaustion, in a subprocess (`exhaustion_child`): the open-file limit lowered and every
descriptor left held by sockets, while live HTTP, TCP and UDP servers on 127.0.0.1 are checked
through a Monitor writing to a real PostgreSQL. Before the fix every check there was DOWN
(`connection: Too many open files`, `dns: Name or service not known`) and the endpoints' outages
were declared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]
OURS = {"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"}


def _run_child(dsn: str, loop: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.availability.exhaustion_child", dsn, loop],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_no_descriptor_left_is_unknown_and_opens_no_outage(db_dsn: str, loop: str) -> None:
    out = _run_child(db_dsn, loop)
    assert set(out["healthy"].values()) == {"up"}, out["healthy"]
    assert out["held"] > 100

    for name, results in out["exhausted"].items():
        for result in results:
            # Ours, not the target's: UNKNOWN/internal, naming what ran out; not retried.
            assert (result["status"], result["error_kind"]) == ("unknown", "internal"), (name, result)
            assert result["details"]["resource"] in OURS, (name, result)
            assert result["attempts"] == 1, (name, result)
            assert "not the target's" in result["error"], (name, result)
    # DNS and ICMP too; the silent resolver healthy is the target's timeout (its first check, which
    # imports the probe, included).
    assert out["dns_healthy"]["error_kind"] == "timeout", out["dns_healthy"]  # the silent resolver
    assert out["others"]["dns"]["status"] == "unknown", out["others"]["dns"]
    assert out["others"]["dns"]["details"]["resource"] in OURS
    if out["icmp_healthy"] == "up":  # needs ICMP sockets, which this host may not allow
        # ICMP checks share one socket per address family (probes/icmpmux.py): once it is open
        # they need no descriptor, and keep working while everything else is exhausted...
        assert out["others"]["icmp"]["status"] == "up", out["others"]["icmp"]
        # ...and opening it with none left is ours, not the target's.
        fresh = out["icmp_fresh"]
        assert (fresh["status"], fresh["error_kind"]) == ("unknown", "internal"), fresh
        assert fresh["details"]["resource"] in OURS, fresh

    # The state machine ignored them: no candidate, no verification, no outage, status unchanged.
    assert set(out["phases"].values()) == {"ok"} and set(out["statuses"].values()) == {"up"}
    assert out["outages"] == 0
    checks = sum(len(results) for results in out["exhausted"].values())
    assert out["stats_exhausted"]["exhausted"] is True
    assert out["stats_exhausted"]["failures"] == checks
    assert set(out["stats_exhausted"]["by_resource"]) <= OURS

    # One line when it started, one when it ended; none per check, no status change.
    events = out["log_events"]
    assert events.count("monitor_resource_exhausted") == 1, events
    assert events.count("monitor_resource_recovered") == 1, events
    assert "status_changed" not in events and "probe_crashed" not in events, events
    assert set(out["after"].values()) == {"up"}
    assert out["stats_after"]["exhausted"] is False and out["stats_after"]["failures"] == checks
