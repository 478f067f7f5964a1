"""Quota pass benchmark: 50,000 customers with a quota, 1 % of them with new usage since the last pass.

    python3 bench/quota.py --old-ref main      # about 2 minutes; embedded PostgreSQL in a temp dir

One database is built: the customers (`POST /customers/bulk`'s upsert), one RADIUS session each
with half its quota used (through the real accounting commit, so the rollups are the real ones).
It is cloned twice (CREATE DATABASE ... TEMPLATE), and on each clone the same interims are then
committed for 500 customers (40 of them go past 80 %, 10 past 100 %):

* **before**: the code of `--old-ref` (exported with `git archive` into a temporary directory, or
  `--old-src DIR`), in a subprocess on its clone: one pass as its daemon ran it every 30 s
  (dispatch; `Enforcer.check` for every customer with a quota; dispatch);
* **after**, this tree on the other clone: the first pass after a start (every customer, in
  batched checks), then the pass after the 500 customers' interims went through the tracker's
  commit wrapper (only those are looked at), then passes with nothing new (median of 5).

Both must record the same crossings; the script says so, or fails. Loopback only, bounded loops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from ispmon.store.usage_accounting import AccountingStore
from ispmon.usage.accounting import Received
from ispmon.usage.radius import INTERIM, AcctRecord

CUSTOMERS = 50_000
DIRTY = 500
QUOTA = 10_000
CHUNK = 2_000


def interim(i: int, octets_in: int, octets_out: int, seq: int) -> Received:
    """Customer i's session, an Interim-Update with these counters (`seq` makes the duplicate key)."""
    record = AcctRecord(
        status=INTERIM, session_id=f"s-{i}", unique_id=None, username=f"u{i}", framed_ip=None, nas_ip=None,
        nas_identifier=None, calling_station=None, terminate_cause=None, interim_interval=None,
        session_time=60 * seq, in_octets=octets_in, out_octets=octets_out, delay_time=0,
    )  # fmt: skip
    return Received("bras-1", 40000 + seq, i % 256, i.to_bytes(16, "big"), record, datetime.now(UTC))


def later_interims() -> list[Received]:
    """The 500 customers' next interims: 450 to 60 %, 40 to 85 %, 10 to 110 % of the quota."""
    out = []
    for n in range(DIRTY):
        i = n * (CUSTOMERS // DIRTY)
        used = 11_000 if n < 10 else 8_500 if n < 50 else 6_000
        out.append(interim(i, used * 2 // 5, used - used * 2 // 5, 2))
    return out


async def commit_all(commit: Any, items: list[Received]) -> None:
    for k in range(0, len(items), CHUNK):
        await commit(items[k : k + CHUNK])


async def crossings(dsn: str) -> list[tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT customer_id, threshold FROM quota_crossings ORDER BY 1, 2")
    finally:
        await conn.close()
    return [(r[0], r[1]) for r in rows]


# -- the old code, in a subprocess whose PYTHONPATH is the old tree -------------------------------
async def old_worker(dsn: str) -> None:
    from ispmon.store.database import Database
    from ispmon.usage.enforce import Enforcer

    db = await Database.connect(dsn, max_size=4)
    try:
        await commit_all(AccountingStore(db.pool).commit, later_interims())
        enforcer = Enforcer(db.pool)
        started = time.perf_counter()
        # The loop body of the old `enforce_quotas` (ispmon.usage.wiring), once.
        await enforcer.dispatch()
        ids = await db.pool.fetch(
            "SELECT id FROM customers WHERE spec ? 'quota_bytes' AND spec->'quota_bytes' <> 'null' ORDER BY id"
        )
        for row in ids:
            await enforcer.check(row["id"])
        await enforcer.dispatch()
        seconds = time.perf_counter() - started
    finally:
        await db.close()
    print(json.dumps({"seconds": seconds, "looked_at": len(ids)}))


# -- this tree ------------------------------------------------------------------------------------
async def build(dsn: str) -> None:
    from ispmon.services.customers import CustomerService
    from ispmon.store.database import Database

    db = await Database.connect(dsn, max_size=4)
    try:
        await CustomerService(db).bulk_upsert(
            [{"id": f"c{i:05d}", "name": f"Customer {i}", "usernames": [f"u{i}"], "quota_bytes": QUOTA}
             for i in range(CUSTOMERS)]
        )  # fmt: skip
        await db.pool.execute(
            "INSERT INTO nas_clients (id, name, address, secret) VALUES ('bras-1', 'B', '127.0.0.1', 'x')"
        )
        await commit_all(
            AccountingStore(db.pool).commit, [interim(i, 2_000, 3_000, 1) for i in range(CUSTOMERS)]
        )
        await db.pool.execute("VACUUM ANALYZE")
    finally:
        await db.close()


async def new_passes(dsn: str) -> dict[str, float]:
    from ispmon.store.database import Database
    from ispmon.usage.enforce import Enforcer
    from ispmon.usage.quota_pass import QuotaTracker

    db = await Database.connect(dsn, max_size=4)
    try:
        enforcer = Enforcer(db.pool)
        tracker = QuotaTracker(enforcer)

        async def one_pass() -> tuple[float, int]:
            started = time.perf_counter()
            await enforcer.dispatch()
            stats = await tracker.run_pass()
            await enforcer.dispatch()
            return time.perf_counter() - started, stats.looked_at

        full, full_n = await one_pass()
        # The customers were just written: the pass looks at them again while they are within the
        # margin for transactions in flight; make them old, as after a real first day.
        await db.pool.execute("UPDATE customers SET updated_at = now() - interval '1 hour'")
        await one_pass()
        await commit_all(tracker.wrap(AccountingStore(db.pool).commit), later_interims())
        dirty, dirty_n = await one_pass()
        idle = [(await one_pass())[0] for _ in range(5)]
    finally:
        await db.close()
    return {
        "full": full,
        "full_n": full_n,
        "dirty": dirty,
        "dirty_n": dirty_n,
        "idle": statistics.median(idle),
    }


def old_tree(args: argparse.Namespace, tmp: Path) -> Path | None:
    if args.old_src:
        return Path(args.old_src)
    if not args.old_ref:
        return None
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", args.old_ref], check=True, capture_output=True
    )
    out = tmp / "old"
    out.mkdir()
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out / "src"


async def main(args: argparse.Namespace) -> None:
    from ispmon.store.embedded import EmbeddedPostgres

    tmp = Path(tempfile.mkdtemp(prefix="ispmon-bench-quota-"))
    server = EmbeddedPostgres(tmp / "pg")
    try:
        base = server.start()
        admin = await asyncpg.connect(base)
        await admin.execute("CREATE DATABASE quota_base")
        started = time.perf_counter()
        await build(_db(base, "quota_base"))
        print(
            f"built {CUSTOMERS:,} customers with a session and usage in {time.perf_counter() - started:.0f} s"
        )
        for name in ("quota_old", "quota_new"):
            await admin.execute(f"CREATE DATABASE {name} TEMPLATE quota_base")
        await admin.close()
        old_dsn, new_dsn = _db(base, "quota_old"), _db(base, "quota_new")
        src = old_tree(args, tmp)
        old: dict[str, Any] | None = None
        if src is not None:
            env = {**os.environ, "PYTHONPATH": str(src)}
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, __file__, "--old-worker", old_dsn], env=env, capture_output=True,
                text=True, check=True, timeout=1800,
            )  # fmt: skip
            old = json.loads(done.stdout.strip().splitlines()[-1])
        new = await new_passes(new_dsn)
        print(
            f"\nquota pass, {CUSTOMERS:,} customers with a quota, {DIRTY} with new interims (embedded PostgreSQL):"
        )
        if old is not None:
            print(f"  before ({args.old_ref or args.old_src}): every customer every pass    "
                  f"{old['seconds']:8.2f} s  ({old['looked_at']:,} looked at, "
                  f"{old['seconds'] / old['looked_at'] * 1e6:.0f} µs each)")  # fmt: skip
        print(
            f"  after, first pass after a start (everyone)   {new['full']:8.2f} s  ({new['full_n']:,} looked at)"
        )
        print(
            f"  after, pass with {DIRTY} customers' new usage   {new['dirty']:8.3f} s  ({new['dirty_n']:,} looked at)"
        )
        print(f"  after, pass with nothing new (median of 5)   {new['idle']:8.3f} s")
        found_new = await crossings(new_dsn)
        if old is not None:
            found_old = await crossings(old_dsn)
            if found_old != found_new:
                raise SystemExit(f"different crossings: before {len(found_old)}, after {len(found_new)}")
            print(f"  both recorded the same {len(found_new)} crossings")
        else:
            print(f"  {len(found_new)} crossings recorded")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _db(dsn: str, name: str) -> str:
    """`dsn` with another database name (the embedded server's URI is postgresql://user@/db?host=...)."""
    head, _, query = dsn.partition("?")
    head = head.rsplit("/", 1)[0] + "/" + name
    return head + ("?" + query if query else "")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-ref", help="git ref of the code to measure before (exported with git archive)")
    parser.add_argument("--old-src", help="or: the src directory of that code")
    parser.add_argument("--old-worker", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.old_worker:
        asyncio.run(old_worker(parsed.old_worker))
    else:
        asyncio.run(main(parsed))
