"""Sending what the enforcement audit trail holds as `pending`, and recording each outcome.

CoA/Disconnect-Requests (and lifts) go out concurrently: at most `per_nas` in flight to one NAS
(a NAS is one box with its own RADIUS process; a burst at period end must not flood it) and
`concurrency` in all. So a NAS that never answers costs the pass one request's timeouts, not one
per session queued behind it, and another NAS's requests are acked meanwhile. Webhooks go the
same way, bounded per URL host. The attempt is counted before each send (the audit says it may
have gone out); the outcome (acked, nak with its Error-Cause, timeout; sent, failed, or pending
for a webhook retried later) after it.

A pending row that can no longer be sent — its NAS was deleted (or renamed in the config file),
or for a CoA its customer was deleted and with it the attributes to send — is set to `unsent`
with the reason in `detail` and logged once (the row is terminal, so it is never looked at
again): an operator sees it in `GET /enforcements/` instead of a row pending for ever.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import structlog

from ispmon.usage.coa import send_request
from ispmon.usage.webhook import post_webhook, webhook_body

log = structlog.get_logger("ispmon.usage")
T = TypeVar("T")


async def run_bounded(
    items: Sequence[T],
    key: Callable[[T], Hashable],
    work: Callable[[T], Awaitable[None]],
    *,
    per_key: int,
    total: int,
) -> None:
    """`work` for every item, at most `per_key` at once for one key and `total` at once in all,
    in the items' order within a key. `total` workers (not one task per item: a period's end can
    plan tens of thousands) take the next item of a key that has a free slot, so items queued
    behind a slow key hold no slot. One item's failure does not cancel the others (a cancelled
    send would leave its row pending with an attempt counted); the first is raised at the end."""
    queues: dict[Hashable, deque[T]] = {}
    for item in items:
        queues.setdefault(key(item), deque()).append(item)
    busy: dict[Hashable, int] = dict.fromkeys(queues, 0)
    freed = asyncio.Condition()
    failures: list[BaseException] = []

    def take() -> tuple[Hashable, T] | None:
        for k, queue in queues.items():
            if queue and busy[k] < per_key:
                busy[k] += 1
                return k, queue.popleft()
        return None

    async def worker() -> None:
        while True:
            async with freed:
                taken = take()
                while taken is None:
                    if not any(queues.values()):
                        return
                    await freed.wait()
                    taken = take()
            k, item = taken
            try:
                await work(item)
            except Exception as exc:  # kept, and raised once all are done
                failures.append(exc)
            finally:
                async with freed:
                    busy[k] -= 1
                    freed.notify_all()

    await asyncio.gather(*(worker() for _ in range(min(total, len(items)))))
    if failures:
        raise failures[0]


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        timeout: float = 2.0,
        tries: int = 3,
        per_nas: int = 4,
        concurrency: int = 64,
        alerting: bool = False,
    ) -> None:
        self.pool, self.timeout, self.tries = pool, timeout, tries
        self.per_nas, self.concurrency = per_nas, concurrency
        self.alerting = alerting  # an alert engine answers `notify` rows
        # One dispatch at a time: two would both read a row as pending and send it twice.
        self._lock = asyncio.Lock()

    async def dispatch(self) -> int:
        """Send what is pending: CoA/Disconnect-Requests (and lifts), webhooks, and the `notify`
        rows (the alert engine's quota rules page for them). Returns how many were handled."""
        async with self._lock:
            return await self._dispatch_others() + await self._dispatch_radius()

    async def _dispatch_radius(self) -> int:
        rows = await self.pool.fetch(
            """SELECT e.id, e.action, e.nas_id, e.session_key, e.customer_id, c.spec, n.id AS nas_known, n.secret,
                      host(n.address) AS host, n.coa_port, s.username
               FROM enforcements e LEFT JOIN nas_clients n ON n.id = e.nas_id
               LEFT JOIN customers c ON c.id = e.customer_id
               LEFT JOIN radius_sessions s ON s.nas_id = e.nas_id AND s.session_key = e.session_key
               WHERE e.state = 'pending' AND e.action IN ('coa', 'disconnect', 'lift') ORDER BY e.id"""
        )
        sendable = []
        for row in rows:
            reason = self._unsendable(row)
            if reason is None:
                sendable.append(row)
                continue
            await self._record(row["id"], "unsent", reason)
            log.warning(
                "quota_enforcement_unsent",
                customer_id=row["customer_id"], action=row["action"], nas_id=row["nas_id"], reason=reason,
            )  # fmt: skip
        await run_bounded(sendable, lambda r: r["nas_id"], self._send_radius, per_key=self.per_nas,
                          total=self.concurrency)  # fmt: skip
        return len(rows)

    @staticmethod
    def _unsendable(row: asyncpg.Record) -> str | None:
        if row["nas_known"] is None:
            if row["nas_id"] is None:
                return "no NAS is known for this session: nothing was sent"
            return f"NAS {row['nas_id']} is not configured any more: nothing was sent"
        if row["action"] in ("coa", "lift") and row["spec"] is None:
            return f"customer {row['customer_id']} was deleted, and with it the attributes to send: nothing was sent"
        return None

    async def _send_radius(self, row: asyncpg.Record) -> None:
        attributes: dict[str, str | int] = {"Acct-Session-Id": row["session_key"]}
        if row["username"]:
            attributes["User-Name"] = row["username"]
        if row["action"] in ("coa", "lift"):
            which = "attributes" if row["action"] == "coa" else "lift_attributes"
            attributes.update(row["spec"].get("enforcement", {}).get(which, {}))
        await self._count_attempt(row["id"])
        # Each request has its own socket (own source port), so two in flight to one NAS never
        # share a (port, Identifier) pair even when their ids agree modulo 256.
        result = await send_request(
            row["host"], row["coa_port"], row["secret"], attributes,
            disconnect=row["action"] == "disconnect", identifier=row["id"] % 256,
            timeout=self.timeout, tries=self.tries,
        )  # fmt: skip
        detail = f"Error-Cause {result.error_cause}" if result.error_cause is not None else None
        await self._record(row["id"], result.state, detail)
        log.info("quota_enforced", customer_id=row["customer_id"], action=row["action"], state=result.state)

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
        hooks = []
        for row in rows:
            if row["action"] == "notify":
                # The quota alert (rules of kind quota) is the notification; without an alert
                # engine nobody is told, and the audit says so.
                await self._record(row["id"], "sent" if self.alerting else "failed",
                                   "quota alert" if self.alerting else "no alert engine")  # fmt: skip
            else:
                hooks.append(row)
        if hooks:
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:

                async def send(row: asyncpg.Record) -> None:
                    await self._send_webhook(session, row)

                await run_bounded(hooks, lambda r: urlsplit(r["target"]).netloc, send, per_key=self.per_nas,
                                  total=self.concurrency)  # fmt: skip
        return len(rows)

    async def _send_webhook(self, session: aiohttp.ClientSession, row: asyncpg.Record) -> None:
        attempts = row["attempts"] + 1
        await self._count_attempt(row["id"])
        body = webhook_body(
            customer_id=row["customer_id"], period_start=row["period_start"], threshold=row["threshold"],
            used_bytes=int(row["used_bytes"] or 0), quota_bytes=int(row["quota_bytes"] or 0),
            key=row["idempotency_key"],
        )  # fmt: skip
        result = await post_webhook(session, row["target"], body, attempts=attempts, timeout=self.timeout)
        await self._record(row["id"], result.state, result.detail)
        if result.state != "pending":
            log.info("quota_enforced", customer_id=row["customer_id"], action="webhook", state=result.state)

    async def _count_attempt(self, row_id: int) -> None:
        await self.pool.execute(
            "UPDATE enforcements SET attempts = attempts + 1, updated_at = now() WHERE id = $1", row_id
        )

    async def _record(self, row_id: int, state: str, detail: str | None) -> None:
        await self.pool.execute(
            "UPDATE enforcements SET state = $2, detail = $3, updated_at = now() WHERE id = $1",
            row_id, state, detail,
        )  # fmt: skip
