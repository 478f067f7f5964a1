"""Quota crossings and their enforcement, with the audit trail written before anything is sent.

`Enforcer.check_many(customer_ids)` computes the customers' period use from the daily RADIUS
rollups (or, for a customer with ``quota_source = "flow"``, from the flow aggregates) in a few
statements for the whole batch (so a pass over tens of thousands costs a few queries per
thousand, not a few per customer); each threshold reached is inserted into quota_crossings (its
primary key makes it once per customer, period and threshold) and, in the same transaction, at
100 % the policy's actions go into `enforcements` as `pending`: one per active session for
`coa`/`disconnect`. `dispatch()` (ispmon.usage.dispatch) then sends what is pending and records
the outcome. A crash after the audit row and before the outcome leaves the row pending: the next
start sends it again with the same Acct-Session-Id and the same idempotency key — at least once,
never silently twice. Which customers a pass looks at is ispmon.usage.quota_pass's business.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from ispmon.store.usage_flows import FlowUsageRepo
from ispmon.usage.dispatch import Dispatcher
from ispmon.usage.periods import Period, counted, period_at

log = structlog.get_logger("ispmon.usage")
ENFORCED_AT = 100


# (customer id, customer name, this period's use in per cent of the quota) -> whether to feed
# this customer again at the next pass although its use did not change (an alert rule is
# part-way): the alert engine's quota rules, when the daemon wires them in.
QuotaObserver = Callable[[str, str, float], bool | None]


@dataclass(frozen=True)
class Checked:
    """One customer looked at: the thresholds newly crossed, when its period ends (the pass
    looks again then: counters restart, alerts clear, restrictions lift) and whether the
    observer asked to see it again."""

    crossed: list[int]
    period_end: datetime
    again: bool = False


class Enforcer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        timeout: float = 2.0,
        tries: int = 3,
        observer: QuotaObserver | None = None,
        per_nas: int = 4,
        concurrency: int = 64,
    ) -> None:
        self.pool, self.timeout, self.tries = pool, timeout, tries
        self.observer = observer
        self.dispatcher = Dispatcher(
            pool, timeout=timeout, tries=tries, per_nas=per_nas, concurrency=concurrency,
            alerting=observer is not None,
        )  # fmt: skip

    async def check(self, customer_id: str, now: datetime | None = None) -> list[int]:
        """Record the thresholds newly crossed; returns them."""
        checked = await self.check_many([customer_id], now)
        return checked[customer_id].crossed if customer_id in checked else []

    async def check_many(
        self, customer_ids: Sequence[str], now: datetime | None = None
    ) -> dict[str, Checked]:
        """Look at these customers (those without a quota, or gone, are left out of the answer)."""
        now = now or datetime.now(UTC)
        specs = await self.pool.fetch(
            """SELECT id, name, spec FROM customers WHERE id = ANY($1::text[])
               AND spec ? 'quota_bytes' AND spec->'quota_bytes' <> 'null'""",
            list(customer_ids),
        )
        periods: dict[str, tuple[dict[str, Any], str, Period]] = {}
        for r in specs:
            spec = r["spec"]
            periods[r["id"]] = (spec, str(spec.get("name") or r["name"] or r["id"]), period_at(
                spec.get("period", "monthly"), spec.get("reset_day", 1), spec.get("timezone", "UTC"), now
            ))  # fmt: skip
        if not periods:
            return {}
        ids = list(periods)
        starts = [periods[i][2].start for i in ids]
        # LATERAL: one index range per customer (the rollups' primary key), whatever the table's
        # size; a plain join lets the planner hash the whole table for every batch.
        usage = await self.pool.fetch(
            """SELECT w.c, u.i, u.o FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS w(c, s, e)
               CROSS JOIN LATERAL (
                   SELECT coalesce(sum(bytes_in), 0) AS i, coalesce(sum(bytes_out), 0) AS o FROM usage_rollups
                   WHERE customer_id = w.c AND step = 'day' AND start >= w.s AND start < w.e) AS u""",
            ids, starts, [periods[i][2].end for i in ids],
        )  # fmt: skip
        used_of = {r["c"]: (int(r["i"]), int(r["o"])) for r in usage}
        flows = FlowUsageRepo(self.pool)
        for customer_id, (spec, _, period) in periods.items():
            if spec.get("quota_source") == "flow":  # opted in: the flow aggregates count, not RADIUS
                used_of[customer_id] = await flows.used(customer_id, period.start, period.end)
        known = await self.pool.fetch(
            """SELECT w.c AS customer_id, q.threshold FROM unnest($1::text[], $2::timestamptz[]) AS w(c, s)
               CROSS JOIN LATERAL (
                   SELECT threshold FROM quota_crossings WHERE customer_id = w.c AND period_start = w.s) AS q""",
            ids, starts,
        )  # fmt: skip
        recorded = {(r["customer_id"], r["threshold"]) for r in known}
        out: dict[str, Checked] = {}
        for customer_id, (spec, name, period) in periods.items():
            used = counted(spec.get("counts", "total"), *used_of.get(customer_id, (0, 0)))
            out[customer_id] = await self._judge(customer_id, name, spec, period, used, recorded)
        return out

    async def _judge(
        self,
        customer_id: str,
        name: str,
        spec: dict[str, Any],
        period: Period,
        used: int,
        recorded: set[tuple[str, int]],
    ) -> Checked:
        quota = int(spec["quota_bytes"])
        await self.plan_lifts(customer_id, spec, period.start)
        again = False
        if self.observer is not None and quota > 0:
            # Every look, also below every threshold: a new period's low figure clears the alert.
            again = bool(self.observer(customer_id, name, used * 100 / quota))
        crossed: list[int] = []
        for threshold in spec.get("thresholds", [80, 100]):
            if used * 100 < quota * threshold or (customer_id, threshold) in recorded:
                continue
            async with self.pool.acquire() as conn, conn.transaction():
                added = await conn.fetchval(
                    """INSERT INTO quota_crossings (customer_id, period_start, threshold, used_bytes, quota_bytes)
                       VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING threshold""",
                    customer_id, period.start, threshold, used, quota,
                )  # fmt: skip
                if added is None:
                    continue
                crossed.append(threshold)
                if threshold == ENFORCED_AT:
                    await self._plan(conn, customer_id, period.start, threshold, spec.get("enforcement", {}))
            log.info(
                "quota_crossed",
                customer_id=customer_id,
                threshold=threshold,
                used_bytes=used,
                quota_bytes=quota,
            )
        return Checked(crossed, period.end, again)

    @staticmethod
    async def _plan(
        conn: asyncpg.Connection,
        customer_id: str,
        period_start: datetime,
        threshold: int,
        enforcement: dict[str, Any],
    ) -> None:
        policy = enforcement.get("policy", "notify")
        key = f"{customer_id}:{period_start.isoformat()}:{threshold}"
        if policy in ("coa", "disconnect"):
            await conn.execute(
                """INSERT INTO enforcements (customer_id, period_start, threshold, action, target, nas_id,
                       session_key, idempotency_key)
                   SELECT $1, $2, $3, $4, nas_id || '/' || session_key, nas_id, session_key,
                          $5 || ':' || nas_id || '/' || session_key
                   FROM radius_sessions WHERE customer_id = $1 AND closed_at IS NULL
                   ORDER BY nas_id, session_key ON CONFLICT DO NOTHING""",
                customer_id, period_start, threshold, policy, key,
            )  # fmt: skip
        else:
            # notify (the alert), webhook (its URL): recorded here; their delivery is not this module's.
            target = str(enforcement.get("url") or "alert")
            await conn.execute(
                """INSERT INTO enforcements (customer_id, period_start, threshold, action, target, idempotency_key)
                   VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
                customer_id, period_start, threshold, policy, target, key,
            )  # fmt: skip

    async def plan_lifts(self, customer_id: str, spec: dict[str, Any], period_start: datetime) -> int:
        """A new period: the `coa` restrictions of earlier periods that were acked are lifted by a
        CoA with `lift_attributes`, for the sessions still open (a new session is authorised
        afresh by the NAS). One `lift` row per restriction, written before it is sent."""
        enforcement = spec.get("enforcement") or {}
        if enforcement.get("policy") != "coa" or not enforcement.get("lift_attributes"):
            return 0
        result: str = await self.pool.execute(
            """INSERT INTO enforcements (customer_id, period_start, threshold, action, target, nas_id,
                   session_key, idempotency_key)
               SELECT e.customer_id, e.period_start, e.threshold, 'lift', e.target, e.nas_id, e.session_key,
                      e.idempotency_key || ':lift'
               FROM enforcements e JOIN radius_sessions s ON s.nas_id = e.nas_id AND s.session_key = e.session_key
               WHERE e.customer_id = $1 AND e.action = 'coa' AND e.state = 'acked' AND e.period_start < $2
                 AND s.closed_at IS NULL
               ON CONFLICT DO NOTHING""",
            customer_id, period_start,
        )  # fmt: skip
        return int(result.split()[-1])

    async def dispatch(self) -> int:
        """Send what is pending (ispmon.usage.dispatch); returns how many rows were handled."""
        return await self.dispatcher.dispatch()
