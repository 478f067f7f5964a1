"""The outbox sender: delivers pending notification rows with backoff and a per-channel rate limit.

Rows are the source of truth: the sender leases what is due, sends to each target of the row's
channel that has not accepted it yet, records each acceptance at once, and then marks the row sent,
schedules a retry, or dead-letters it after `max_attempts`. A restart simply picks up where the
table says; a crash mid-send retries the row when its lease runs out (at-least-once, never
silently lost; each attempt carries the row's idempotency key for the receiver to de-duplicate).
Rows of different channels go out concurrently, rows of one channel in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from ispmon.alerts.channels import ChannelRegistry, ChannelTarget, redact_secrets_in
from ispmon.alerts.notifier import Attachment, Notifier
from ispmon.store import report_runs
from ispmon.store.notifications import NotificationRepo

log = structlog.get_logger("ispmon.alerts.sender")

MAX_ERROR_CHARS = 1000


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 10
    retry_base: float = 10.0
    retry_max: float = 900.0
    rate_per_minute: int = 30
    timeout: float = 30.0
    lease_floor: float = 60.0

    def backoff(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds before the next try after `attempts` failures: base·2^(n-1), capped at retry_max,
        ±20 % jitter (so channels that failed together do not retry in lockstep), never above the cap."""
        exponent = min(max(attempts, 1) - 1, 60)  # 2**60 × any base is far past any sane cap
        delay = min(self.retry_max, self.retry_base * 2.0**exponent)
        return min(self.retry_max, delay * (0.8 + 0.4 * rand()))


class RateLimiter:
    """A token bucket per channel: `burst` messages at once, refilled at `rate_per_minute`.

    Pure: the caller passes `now`. `take` returns 0 (go, a token was used) or the seconds until
    the next token; a refused take uses nothing. A rate of 0 or less means no limit.
    """

    def __init__(self, rate_per_minute: float, burst: int | None = None) -> None:
        self.rate = rate_per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(rate_per_minute)))
        self._buckets: dict[str, tuple[float, datetime]] = {}

    def take(self, channel: str, now: datetime) -> float:
        if self.rate <= 0:
            return 0.0
        tokens, last = self._buckets.get(channel, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, (now - last).total_seconds()) * self.rate)
        if tokens >= 1.0:
            self._buckets[channel] = (tokens - 1.0, now)
            return 0.0
        self._buckets[channel] = (tokens, now)
        return (1.0 - tokens) / self.rate


class Sender:
    def __init__(
        self,
        repo: NotificationRepo,
        registry: ChannelRegistry,
        notifier: Notifier,
        policy: DeliveryPolicy | None = None,
        clock: Callable[[], datetime] = now_utc,
        *,
        batch_size: int = 100,
        concurrency: int = 8,
        idle_poll: float = 30.0,
        error_pause: float = 1.0,
        may_send: Callable[[], bool] | None = None,
    ) -> None:
        self.repo = repo
        self.registry = registry
        self.notifier = notifier
        self.policy = policy or DeliveryPolicy()
        self.clock = clock
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self.error_pause = error_pause
        # Long enough for a channel's every target to time out once; a shorter lease would let a
        # restarted process send a row that is still in flight here.
        self.lease = max(self.policy.lease_floor, 4 * self.policy.timeout)
        self._limiter = RateLimiter(self.policy.rate_per_minute)
        self._sem = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._rate_logged: dict[str, datetime] = {}
        # Fencing: with several agents, only the singleton lease's holder sends, and it checks its
        # lease is still valid (by its own clock) before each attempt, not only when told to stop.
        self.may_send = may_send
        self._unstarted: dict[int, datetime] = {}  # leased by this sender, not attempted yet

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._loop(), name="notification-sender")

    def wake(self) -> None:
        """New rows were enqueued: look now instead of at the next timer."""
        self._wake.set()

    async def close(self, grace: float = 5.0) -> None:
        """Stop; a send in progress gets `grace` seconds to finish (else its lease brings it back)."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is None:
            return
        _, pending = await asyncio.wait({task}, timeout=grace)
        if pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._unlease()

    async def _unlease(self) -> None:
        unstarted, self._unstarted = self._unstarted, {}
        by_lease: dict[datetime, list[int]] = {}
        for nid, until in unstarted.items():
            by_lease.setdefault(until, []).append(nid)
        try:
            for until, ids in by_lease.items():
                await asyncio.wait_for(self.repo.unlease(ids, until), 1.0)
        except Exception as exc:  # the lease runs out instead
            log.warning("notification_unlease_failed", rows=len(unstarted), error=self._redact(str(exc)))

    async def run_once(self) -> int:
        """Deliver what is due now; how many rows were finished (sent or dead-lettered)."""
        if self.may_send is not None and not self.may_send():
            return 0
        rows = await self.repo.due(self.clock(), self.batch_size, self.lease)
        by_channel: dict[str, list[Any]] = {}
        for row in rows:
            by_channel.setdefault(row["channel"], []).append(row)
            self._unstarted[row["id"]] = row["next_attempt_at"]
        results = await asyncio.gather(
            *(self._channel_rows(channel, chunk) for channel, chunk in by_channel.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(r for r in results if isinstance(r, int))

    async def _loop(self) -> None:
        while not self._closing:
            try:
                await self.run_once()
                delay = await self._next_delay()
            except Exception as exc:  # the database is down or slow: log, pause, try again
                log.error("notification_sender_error", error=self._redact(f"{type(exc).__name__}: {exc}"))
                delay = self.error_pause
            if self._closing:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    async def _next_delay(self) -> float:
        due = await self.repo.next_due_at()
        if due is None:
            return self.idle_poll
        # A floor, so a row that is due but locked by another sender cannot spin this loop.
        return min(self.idle_poll, max(0.005, (due - self.clock()).total_seconds()))

    async def _channel_rows(self, channel: str, rows: list[Any]) -> int:
        finished = 0
        for i, row in enumerate(rows):
            now = self.clock()
            wait = self._limiter.take(channel, now)
            if wait > 0:
                until = now + timedelta(seconds=wait)
                for later in rows[i:]:
                    await self.repo.postpone(later["id"], until)
                    self._unstarted.pop(later["id"], None)
                self._log_rate_limited(channel, len(rows) - i, wait, now)
                break
            async with self._sem:
                if self._closing or (self.may_send is not None and not self.may_send()):
                    break  # stopping, or the lease is gone: these rows go back to the outbox at close
                self._unstarted.pop(row["id"], None)
                finished += await self._deliver(row)
        return finished

    async def _deliver(self, row: Any) -> int:
        nid, channel_name = row["id"], row["channel"]
        attempts = row["attempts"] + 1
        channel = self.registry.get(channel_name)
        if channel is None:
            return await self._dead(row, f"channel '{channel_name}' is not defined", attempts)
        attachment = None
        if row.get("report_schedule") is not None:
            attachment = await report_runs.attachment(
                self.repo.pool, row["report_schedule"], row["report_period"]
            )
            if attachment is None:
                return await self._dead(row, "the scheduled report's file is gone (pruned)", attempts)
        delivered = set(row["delivered_targets"] or ())
        errors: list[str] = []
        count = len(channel.targets)
        for number, target in enumerate(channel.targets, 1):
            if target.fingerprint in delivered:
                continue
            error = await self._send_one(target, row, attachment)
            if error is None:
                # At once, not at the end: a crash or a later target's failure must not make a retry
                # send this target a second copy.
                await self.repo.add_delivered(nid, target.fingerprint)
                delivered.add(target.fingerprint)
            else:
                errors.append(f"target {number}/{count} ({target.kind}): {error}")
        if not errors:
            await self.repo.mark_sent(nid, self.clock())
            log.info(
                "notification_sent",
                id=nid,
                channel=channel_name,
                alert_id=row["alert_id"],
                alert_event=row["event"],
                attempts=attempts,
            )
            return 1
        text = redact_secrets_in("; ".join(errors), channel.targets)[:MAX_ERROR_CHARS]
        if attempts >= self.policy.max_attempts:
            return await self._dead(row, text, attempts)
        delay = self.policy.backoff(attempts)
        await self.repo.mark_failed(nid, text, attempts, self.clock() + timedelta(seconds=delay))
        log.warning(
            "notification_failed",
            id=nid,
            channel=channel_name,
            error=text,
            attempt=attempts,
            retry_in=round(delay, 3),
        )
        return 0

    async def _send_one(
        self, target: ChannelTarget, row: Any, attachment: Attachment | None = None
    ) -> str | None:
        # An SMS-sized target gets the short text alone; apprise would otherwise glue title and
        # body together and cut the result at 160 characters.
        title, body = ("", row["short_body"]) if target.short else (row["title"], row["body"])
        try:
            # The same key on every attempt, so a receiver can drop the copy a crash mid-send repeats.
            extra = {"attachment": attachment} if attachment is not None else {}
            error = await self.notifier.send(target, title, body, key=row["idempotency_key"], **extra)
        except Exception as exc:  # a notifier bug counts as a failed attempt, never kills the loop
            error = f"{type(exc).__name__}: {exc}"
        return None if error is None else redact_secrets_in(error, [target])

    async def _dead(self, row: Any, error: str, attempts: int) -> int:
        await self.repo.mark_dead(row["id"], error, attempts)
        log.error(
            "notification_dead_lettered",
            id=row["id"],
            channel=row["channel"],
            alert_id=row["alert_id"],
            attempts=attempts,
            error=error,
        )
        return 1

    def _log_rate_limited(self, channel: str, postponed: int, wait: float, now: datetime) -> None:
        last = self._rate_logged.get(channel)
        if last is not None and (now - last).total_seconds() < 60:
            return
        self._rate_logged[channel] = now
        log.warning(
            "notification_rate_limited", channel=channel, postponed=postponed, retry_in=round(wait, 3)
        )

    def _redact(self, text: str) -> str:
        targets: Iterable[ChannelTarget] = (t for c in self.registry.all() for t in c.targets)
        return redact_secrets_in(text, targets)
