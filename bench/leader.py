"""The singleton lease's cost and failover (issue 16 §5), beside an anchor measured in the same run.

    python bench/leader.py          # about a minute; embedded PostgreSQL in a temporary directory

Figures printed:

* client-side µs per statement of the lease renewal and of the alert engine's per-tick refresh
  (open ids and versions, with 0 and 500 open alerts), each beside `SELECT 1` on the same pool:
  the ratio is what the machine's load cannot move much;
* the coordination statements per second one agent issues for this work at the default
  AGENT_DEAD_AFTER (30 s), from the module constants;
* failover: from a holder's death (its loop stopped, no release, as kill -9) to another contender
  starting the work, at AGENT_DEAD_AFTER=5, over a few runs: median and max beside the setting;
  and from a clean release to the takeover.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from ispmon.agents.election import Lease
from ispmon.agents.lease_store import take_or_renew
from ispmon.agents.leases import LeaseTimes
from ispmon.alerts.engine import TICK_INTERVAL
from ispmon.store.alerts import AlertRepo
from ispmon.store.database import Database
from ispmon.store.db import create_pool
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.usage.quota_pass import QUOTA_PASS_SECONDS

ROUNDS = 2000


async def per_statement(fn, rounds: int = ROUNDS) -> float:  # type: ignore[no-untyped-def]
    for _ in range(50):
        await fn()
    start = time.perf_counter()
    for _ in range(rounds):
        await fn()
    return (time.perf_counter() - start) / rounds * 1e6


async def statement_costs(db: Database) -> None:
    pool = db.pool
    epoch = await take_or_renew(pool, "bench", "me", 30.0, None)

    async def renew() -> None:
        await take_or_renew(pool, "bench", "me", 30.0, epoch)

    async def anchor() -> None:
        await pool.fetchval("SELECT 1")

    repo = AlertRepo(pool)

    async def refresh() -> None:
        await repo.open_versions()

    for open_alerts in (0, 500):
        if open_alerts:
            await pool.execute(
                """INSERT INTO alerts (endpoint_id, rule_id, kind, severity, title, message, started_at)
                   SELECT 'e' || i, 'default', 'outage', 'major', 't', 'm', now() FROM generate_series(1, $1) i""",
                open_alerts,
            )
        a, r, f = await per_statement(anchor), await per_statement(renew), await per_statement(refresh, 500)
        print(
            f"open alerts {open_alerts:>4}: SELECT 1 {a:7.1f} µs | lease renewal {r:7.1f} µs ({r / a:4.2f}x)"
            f" | engine refresh {f:7.1f} µs ({f / a:4.2f}x)"
        )
    times = LeaseTimes.from_dead_after(30.0)
    per_agent = 1 / times.renew_every + 1 / TICK_INTERVAL
    print(
        f"coordination statements per agent at AGENT_DEAD_AFTER=30: {per_agent:.2f}/s "
        f"(lease {1 / times.renew_every:.2f}/s, refresh {1 / TICK_INTERVAL:.2f}/s; "
        f"the holder adds {2 / QUOTA_PASS_SECONDS:.2f}/s for the quota pass with other agents live)"
    )


async def failover(dsn: str, runs: int = 4) -> None:
    times = LeaseTimes.from_dead_after(5.0)
    crash, clean = [], []
    for run in range(runs):
        pools = [await create_pool(dsn, min_size=1, max_size=2) for _ in range(2)]
        gained: dict[str, float] = {}
        b_started = asyncio.Event()

        def hook(name: str, gained: dict[str, float] = gained, event: asyncio.Event = b_started):  # type: ignore[no-untyped-def]
            async def on_gain() -> None:
                gained[name] = time.monotonic()
                if name == "b":
                    event.set()

            return on_gain

        name = f"leader-{run}"
        a = Lease(pools[0], "a", times, name=name, on_gain=hook("a"))
        b = Lease(pools[1], "b", times, name=name, on_gain=hook("b"))
        await a.step()
        a.start()
        b.start()
        await asyncio.sleep(random.uniform(1.0, 2.0))  # the death lands anywhere in a renewal period
        if run % 2 == 0:
            assert a._task is not None
            a._task.cancel()
            died = time.monotonic()
            out = crash
        else:
            died = time.monotonic()
            await a.close()
            out = clean
        await asyncio.wait_for(b_started.wait(), 60)
        out.append(gained["b"] - died)
        a._task = None  # already cancelled; close only releases (nothing: it is b's now)
        await a.close()
        await b.close()
        for p in pools:
            await p.close()
    print(
        f"failover at AGENT_DEAD_AFTER=5: kill -9 -> work on another agent median {statistics.median(crash):.2f} s,"
        f" max {max(crash):.2f} s (bound: 5 s + one 1 s renewal period); clean stop -> takeover"
        f" median {statistics.median(clean):.2f} s, max {max(clean):.2f} s ({len(crash)} + {len(clean)} runs)"
    )


async def main() -> None:
    from ispmon.logging import configure_logging

    configure_logging("error", "console")
    base = Path(tempfile.mkdtemp(prefix="ispmon-bench-leader-"))
    server = EmbeddedPostgres(base)
    dsn = await asyncio.to_thread(server.start)
    db = await Database.connect(dsn)
    try:
        await statement_costs(db)
        await failover(dsn)
    finally:
        await db.close()
        await asyncio.to_thread(server.stop)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
