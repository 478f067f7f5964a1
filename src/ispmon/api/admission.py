"""A bound on the API requests handled at once, so API load cannot starve probing.

The API shares its event loop with the scheduler and the probes. Every request in progress adds
callbacks to each loop iteration, and 2,000 clients each with one request in progress made an
iteration take hundreds of milliseconds: checks started late or were skipped, timers fired late
and checks were failed by our own clock. Here at most ``limit`` requests are in a handler at once;
the rest wait, in order of arrival, costing no CPU while they wait, so an iteration carries at
most ``limit`` requests' work beside the checks. Like haproxy's ``maxconn`` with ``timeout
queue``: a request that could not start within ``queue_timeout`` seconds (API_QUEUE_TIMEOUT) is
answered 503 with ``Retry-After`` in the API's error shape.

``limit`` follows the loop, because a fixed number of requests is not a fixed share of CPU (a
request waiting on the database uses none, one encoding a page uses a lot): a governor samples
how late a timer fires every 50 ms; above 10 ms the places shrink by a third, down to eight, and
while the loop is on time and every place is taken one more is allowed, up to
API_MAX_CONCURRENT_REQUESTS. Probing comes first: when the machine is short of CPU the API
answers more slowly, the checks stay on time.

Health reads (``/livez``, ``/readyz``, ``/metrics``) have their own few places and are never
refused: a supervisor or a scrape gets its answer however many other clients are queued, and a
flood of health reads is bounded too. Routes that mostly wait for a target (an on-demand check, a
device poll, a channel test: `Route.waits_on_target`) hold no place, so a few slow targets cannot
keep the API's places while using no CPU.

Shedding is logged once when it starts and once when the queue drains, never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from ispmon.api.errors import Handler
from ispmon.api.problem import ApiError

log = structlog.get_logger("ispmon.api")

PRIORITY_PATHS = frozenset({"/livez", "/readyz", "/metrics"})


HEALTH_LIMIT = 2
# The governor: the loop's lateness it aims at, how often it looks, and the fewest places it leaves.
LAG_TARGET = 0.010
LAG_SAMPLE = 0.050
MIN_LIMIT = 8  # the database pool's size, less two: DB-bound routes keep its throughput


class Admission:
    """`limit` places for requests in a handler; waiters queue in order of arrival and, when
    `queue_timeout` is not None, give up after that many seconds."""

    def __init__(self, limit: int, queue_timeout: float | None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.max_limit = limit
        self.limit = limit  # what `govern` allows now, between min(MIN_LIMIT, limit) and max_limit
        self.queue_timeout = queue_timeout
        self.active = 0
        self.queued = 0  # waiting now
        self.admitted = 0  # since start
        self.waited = 0  # admitted after waiting
        self.shed = 0  # gave up after queue_timeout
        self.max_queued = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._shedding_since: int | None = None  # `shed` when the current episode began

    def stats(self) -> dict[str, int | float | None]:
        return {
            "max_concurrent_requests": self.max_limit,
            "limit": self.limit,
            "queue_timeout_s": self.queue_timeout,
            "in_progress": self.active,
            "queued": self.queued,
            "max_queued": self.max_queued,
            "admitted": self.admitted,
            "waited": self.waited,
            "shed": self.shed,
        }

    async def acquire(self) -> bool:
        """True once the request holds a place; False when it waited `queue_timeout` in vain.
        A caller that gets True must `release`."""
        if self.active < self.limit and not self.queued:
            self.active += 1
            self.admitted += 1
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        self.queued += 1
        self.max_queued = max(self.max_queued, self.queued)
        timer = (
            None if self.queue_timeout is None else loop.call_later(self.queue_timeout, self._expire, waiter)
        )
        try:
            granted = await waiter
        except asyncio.CancelledError:
            # The client went away (or the server is stopping) while waiting.
            if waiter.cancelled():
                self.queued -= 1  # still in the deque: `release` skips it
            elif waiter.result():
                self.release()  # a place was handed over in the same iteration: pass it on
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if granted:
            self.admitted += 1
            self.waited += 1
        return granted

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if waiter.done():
            return
        waiter.set_result(False)
        self.queued -= 1
        self.shed += 1
        if self._shedding_since is None:
            self._shedding_since = self.shed - 1
            log.warning(
                "api_requests_shed",
                max_concurrent_requests=self.limit,
                queue_timeout_s=self.queue_timeout,
                queued=self.queued,
                effect="API requests that waited longer than API_QUEUE_TIMEOUT are answered 503",
            )

    def govern(self, lateness: float) -> None:
        """Follow the event loop's `lateness` (seconds a timer fired late): above LAG_TARGET the
        places shrink by a third (down to MIN_LIMIT), so probing gets the loop back within a few
        samples; below half of it, while every place is taken, one more is allowed (up to the
        setting). TCP's congestion control, with the loop's lateness as the loss signal."""
        if lateness > LAG_TARGET:
            self.limit = max(min(MIN_LIMIT, self.max_limit), int(self.limit * 2 / 3))
        elif lateness < LAG_TARGET / 2 and self.active >= self.limit and self.limit < self.max_limit:
            self.limit += 1
            self._grant()

    def _grant(self) -> None:
        while self.active < self.limit and self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            self.queued -= 1
            self.active += 1
            waiter.set_result(True)

    def release(self) -> None:
        """Hand the place to the next waiter, or free it (or, over the limit now, drop it)."""
        while self.active <= self.limit and self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():  # expired or cancelled: no longer counted in `queued`
                continue
            self.queued -= 1
            waiter.set_result(True)
            return
        self.active -= 1
        if self._shedding_since is not None and not self.queued:
            log.info(
                "api_requests_served_again",
                shed=self.shed - self._shedding_since,
                max_concurrent_requests=self.limit,
            )
            self._shedding_since = None


@dataclass(frozen=True)
class Admissions:
    """The API's two bounds: `requests` for every route, `health` for the health reads."""

    requests: Admission
    health: Admission
    # (method, path pattern) of the routes that hold no place (`Route.waits_on_target`).
    unbounded: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def build(
        cls, limit: int, queue_timeout: float, unbounded: frozenset[tuple[str, str]] = frozenset()
    ) -> Admissions:
        return cls(Admission(limit, queue_timeout), Admission(HEALTH_LIMIT, None), unbounded)

    def stats(self) -> dict[str, int | float | None]:
        return self.requests.stats()

    async def govern(self) -> None:
        """Sample the event loop's lateness every LAG_SAMPLE seconds and let `requests` follow it."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_SAMPLE)
            self.requests.govern(loop.time() - started - LAG_SAMPLE)


ADMISSION: web.AppKey[Admissions] = web.AppKey("ispmon_admission")


async def governed(app: web.Application) -> AsyncIterator[None]:
    """An `Application.cleanup_ctx` entry: the governor runs while the app serves."""
    task = asyncio.create_task(app[ADMISSION].govern(), name="api_admission_governor")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _route_key(request: web.Request) -> tuple[str, str] | None:
    resource = request.match_info.route.resource
    return (request.method, resource.canonical) if resource is not None else None


def admission_middleware(admissions: Admissions) -> Middleware:
    """Each request holds a place of `admission` while its handler runs (inside the error
    middleware, so a 503 has the API's JSON error shape)."""

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if admissions.unbounded and _route_key(request) in admissions.unbounded:
            return await handler(request)
        admission = admissions.health if request.path in PRIORITY_PATHS else admissions.requests
        started = time.monotonic()
        if not await admission.acquire():
            waited = time.monotonic() - started
            raise ApiError.on(
                503,
                "(request)",
                f"the API is busy: {admission.limit} requests in progress and this one waited "
                f"{waited:.1f} s (API_QUEUE_TIMEOUT) for a place; retry later",
                headers={"Retry-After": "1"},
            )
        try:
            return await handler(request)
        finally:
            admission.release()

    return admit
