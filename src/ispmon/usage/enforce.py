"""Quota crossings and their enforcement, with the audit trail written before anything is sent.

`Enforcer.check(customer_id)` computes the period's use from the RADIUS rollups (or, for a customer
with ``quota_source = "flow"``, from the flow aggregates); each threshold reached
is inserted into quota_crossings (its primary key makes it once per customer, period and
threshold) and, in the same transaction, at 100 % the policy's actions go into `enforcements` as
`pending`: one per active session for `coa`/`disconnect`. `dispatch()` then sends what is pending
and records the outcome (acked, nak with its Error-Cause, timeout). A crash after the audit row
and before the outcome leaves the row pending: the next start sends it again with the same
Acct-Session-Id and the same idempotency key — at least once, never silently twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import structlog

from ispmon.store.usage_flows import FlowUsageRepo
from ispmon.usage.coa import send_request
from ispmon.usage.periods import counted, period_at
from ispmon.usage.webhook import post_webhook, webhook_body

log = structlog.get_logger("ispmon.usage")
ENFORCED_AT = 100


# (customer id, customer name, this period's use in per cent of the quota): the alert engine's
# quota rules, when the daemon wires them in.
QuotaObserver = Callable[[str, str, float], None]


class Enforcer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        timeout: float = 2.0,
        tries: int = 3,
        observer: QuotaObserver | None = None,
    ) -> None:
        self.pool, self.timeout, self.tries = pool, timeout, tries
        self.observer = observer

    async def check(self, customer_id: str, now: datetime | None = None) -> list[int]:
        """Record the thresholds newly crossed; returns them."""
        now = now or datetime.now(UTC)
        spec = await self.pool.fetchval("SELECT spec FROM customers WHERE id = $1", customer_id)
        if spec is None or spec.get("quota_bytes") is None:
            return []
        quota = int(spec["quota_bytes"])
        period = period_at(
            spec.get("period", "monthly"), spec.get("reset_day", 1), spec.get("timezone", "UTC"), now
        )
        if spec.get("quota_source") == "flow":
            used_in, used_out = await FlowUsageRepo(self.pool).used(customer_id, period.start, period.end)
        else:
            row = await self.pool.fetchrow(
                """SELECT coalesce(sum(bytes_in), 0) AS i, coalesce(sum(bytes_out), 0) AS o FROM usage_rollups
                   WHERE customer_id = $1 AND step = 'day' AND start >= $2 AND start < $3""",
                customer_id,
                period.start,
                period.end,
            )
            used_in, used_out = int(row["i"]), int(row["o"])
        used = counted(spec.get("counts", "total"), used_in, used_out)
        await self.plan_lifts(customer_id, spec, period.start)
        if self.observer is not None and quota > 0:
            # Every pass, also below every threshold: a new period's low figure clears the alert.
            self.observer(customer_id, str(spec.get("name") or customer_id), used * 100 / quota)
        crossed: list[int] = []
        for threshold in spec.get("thresholds", [80, 100]):
            if used * 100 < quota * threshold:
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
        return crossed

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
        """Send what is pending: CoA/Disconnect-Requests (and lifts), webhooks, and the `notify`
        rows (the alert engine's quota rules page for them). Returns how many were handled."""
        handled = await self._dispatch_others()
        rows = await self.pool.fetch(
            """SELECT e.id, e.action, e.session_key, e.customer_id, c.spec, n.secret, host(n.address) AS host,
                      n.coa_port, s.username, host(s.framed_ip) AS framed_ip
               FROM enforcements e JOIN nas_clients n ON n.id = e.nas_id
               LEFT JOIN customers c ON c.id = e.customer_id
               LEFT JOIN radius_sessions s ON s.nas_id = e.nas_id AND s.session_key = e.session_key
               WHERE e.state = 'pending' AND e.action IN ('coa', 'disconnect', 'lift') ORDER BY e.id"""
        )
        for row in rows:
            attributes: dict[str, str | int] = {"Acct-Session-Id": row["session_key"]}
            if row["username"]:
                attributes["User-Name"] = row["username"]
            if row["action"] in ("coa", "lift") and row["spec"]:
                which = "attributes" if row["action"] == "coa" else "lift_attributes"
                attributes.update(row["spec"].get("enforcement", {}).get(which, {}))
            # The attempt is counted before the send: the audit says it may have gone out.
            await self._count_attempt(row["id"])
            result = await send_request(
                row["host"], row["coa_port"], row["secret"], attributes,
                disconnect=row["action"] == "disconnect", identifier=row["id"] % 256,
                timeout=self.timeout, tries=self.tries,
            )  # fmt: skip
            detail = f"Error-Cause {result.error_cause}" if result.error_cause is not None else None
            await self._record(row["id"], result.state, detail)
            log.info(
                "quota_enforced", customer_id=row["customer_id"], action=row["action"], state=result.state
            )
        return handled + len(rows)

    async def _dispatch_others(self) -> int:
        rows = await self.pool.fetch(
            """SELECT e.id, e.action, e.target, e.customer_id, e.period_start, e.threshold, e.attempts,
                      e.idempotency_key, q.used_bytes, q.quota_bytes
               FROM enforcements e LEFT JOIN quota_crossings q ON q.customer_id = e.customer_id
                    AND q.period_start = e.period_start AND q.threshold = e.threshold
               WHERE e.state = 'pending' AND e.action IN ('notify', 'webhook') ORDER BY e.id"""
        )
        if not rows:
            return 0
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
            for row in rows:
                if row["action"] == "notify":
                    # The quota alert (rules of kind quota) is the notification; without an
                    # alert engine nobody is told, and the audit says so.
                    paged = self.observer is not None
                    await self._record(row["id"], "sent" if paged else "failed",
                                       "quota alert" if paged else "no alert engine")  # fmt: skip
                    continue
                attempts = row["attempts"] + 1
                await self._count_attempt(row["id"])
                body = webhook_body(
                    customer_id=row["customer_id"], period_start=row["period_start"], threshold=row["threshold"],
                    used_bytes=int(row["used_bytes"] or 0), quota_bytes=int(row["quota_bytes"] or 0),
                    key=row["idempotency_key"],
                )  # fmt: skip
                result = await post_webhook(
                    session, row["target"], body, attempts=attempts, timeout=self.timeout
                )
                await self._record(row["id"], result.state, result.detail)
                if result.state != "pending":
                    log.info(
                        "quota_enforced", customer_id=row["customer_id"], action="webhook", state=result.state
                    )
        return len(rows)

    async def _count_attempt(self, row_id: int) -> None:
        await self.pool.execute(
            "UPDATE enforcements SET attempts = attempts + 1, updated_at = now() WHERE id = $1", row_id
        )

    async def _record(self, row_id: int, state: str, detail: str | None) -> None:
        await self.pool.execute(
            "UPDATE enforcements SET state = $2, detail = $3, updated_at = now() WHERE id = $1",
            row_id, state, detail,
        )  # fmt: skip
