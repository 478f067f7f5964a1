"""Flow figures join the usage routes: real flows (Debian's softflowd reading a pcap written here,
into the real collector) and real RADIUS accounting (Debian's radclient into the real listener)
for the same customers, read side by side from GET /customers/{id}/usage and /usage/summary,
each figure labelled with its source. The quota counts RADIUS unless the customer opts in with
``quota_source = "flow"``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ispmon.usage.enforce import Enforcer
from tests.integration.flows.test_softflowd import Rig, export, rig  # noqa: F401
from tests.integration.usage.radclient import listener, packet, radclient


def by_source(sources: list[dict[str, Any]]) -> dict[str, tuple[int, int, int]]:
    return {s["source"]: (s["download_bytes"], s["upload_bytes"], s["total_bytes"]) for s in sources}


async def put(rig: Rig, customer_id: str, body: dict[str, Any]) -> None:  # noqa: F811
    resp = await rig.client.put(f"/customers/{customer_id}", json=body)
    assert resp.status == 200, await resp.text()


async def test_usage_shows_radius_and_flow_side_by_side(rig: Rig, tmp_path: Path) -> None:  # noqa: F811
    await put(rig, "c-a", {"usernames": ["alice@isp"], "quota_bytes": 10**6})
    # Flows: A downloads 234 and uploads 400 (test_softflowd's traffic), B uploads 700, C downloads 400.
    t0 = time.time() - 30
    await export(rig, tmp_path, t0, 9)
    async with listener(rig.db.pool) as (_protocol, port):
        code, out = await radclient(
            port,
            [
                packet(**{"Acct-Status-Type": "Start", "Acct-Session-Id": "A1", "User-Name": "alice@isp"}),
                packet(**{"Acct-Status-Type": "Interim-Update", "Acct-Session-Id": "A1", "User-Name": "alice@isp",
                          "Acct-Input-Octets": 100, "Acct-Output-Octets": 5000, "Acct-Session-Time": 60}),
            ],
        )  # fmt: skip
        assert code == 0, out
    for step in ("hour", "day", "month"):
        usage = await rig.documented(f"/customers/c-a/usage?step={step}", "/customers/{customer_id}/usage")
        # RADIUS figures where they were (in: upload, out: download), both sources beside them.
        assert (usage["bytes_in"], usage["bytes_out"], usage["bytes_total"]) == (100, 5000, 5100)
        assert [s["source"] for s in usage["sources"]] == ["radius", "flow"]
        assert by_source(usage["sources"]) == {"radius": (5000, 100, 5100), "flow": (234, 400, 634)}
        for item in usage["items"]:
            assert [s["source"] for s in item["sources"]] == ["radius", "flow"]
        flow_steps = [by_source(i["sources"])["flow"] for i in usage["items"]]
        assert tuple(map(sum, zip(*flow_steps, strict=True))) == (234, 400, 634)
    summary = await rig.documented("/customers/c-a/usage/summary", "/customers/{customer_id}/usage/summary")
    assert summary["quota_source"] == "radius" and summary["used_bytes"] == 5100
    assert {s["source"]: s["used_bytes"] for s in summary["sources"]} == {"radius": 5100, "flow": 634}
    # A customer with flows and no RADIUS: flow figures only; nothing invented for RADIUS.
    usage_c = await rig.get("/customers/c-c/usage?step=day")
    assert usage_c["bytes_total"] == 0
    assert by_source(usage_c["sources"]) == {"radius": (0, 0, 0), "flow": (400, 0, 400)}


async def test_the_quota_counts_flows_only_for_a_customer_who_opts_in(rig: Rig, tmp_path: Path) -> None:  # noqa: F811
    await put(rig, "c-b", {"quota_bytes": 500, "quota_source": "flow"})  # uploads 700 by flows
    await put(rig, "c-c", {"quota_bytes": 300})  # downloads 400 by flows, nothing by RADIUS
    await export(rig, tmp_path, time.time() - 30, 10)
    enforcer = Enforcer(rig.db.pool)
    assert await enforcer.check("c-b") == [80, 100]
    assert await enforcer.check("c-c") == []  # RADIUS only: the flows do not count against it
    summary_b = await rig.get("/customers/c-b/usage/summary")
    assert (summary_b["quota_source"], summary_b["used_bytes"], summary_b["percent"]) == ("flow", 700, 140.0)
    assert summary_b["quota_reached_at"] is not None
    summary_c = await rig.get("/customers/c-c/usage/summary")
    assert (summary_c["quota_source"], summary_c["used_bytes"], summary_c["percent"]) == ("radius", 0, 0.0)
    bad = await rig.client.put("/customers/c-c", json={"quota_source": "snmp"})
    assert bad.status in (400, 422) and (await bad.json())["errors"][0]["field"] == "quota_source"
