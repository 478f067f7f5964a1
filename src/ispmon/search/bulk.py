"""Delivering one batch of documents through ``_bulk``, item by item (the loop is ours).

The client's helpers retry nothing by default and the transport retries whole requests only, so
this module reads each item's status: accepted items are done; 429, 5xx and a per-index write block
are retried (only those items) with exponential backoff and full jitter, for as long as attempts
make progress; a 400 mapping error is a dead letter (kept with its reason, it never holds the rest
back); a 413 splits the request in halves. Whole-request failures (connection refused, timeout,
5xx, 429) are retried a few times, then `Unavailable` says why and the batch stays unsent: the
caller keeps its cursor and tries again later, so nothing is lost and nothing is sent twice on
purpose (a resend after a crash overwrites the same id).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson


class Item(NamedTuple):
    """One document as its two NDJSON lines (action, source), encoded once; the source as a dict
    is decoded back from them only when needed (a dead letter), so the hot path keeps no dict.
    A named tuple rather than a frozen dataclass: made in half the time, and a tuple of strings
    leaves the garbage collector's lists at its first collection, so a batch in flight does not
    fill the oldest generation (whose full collections were a third of the feed's CPU)."""

    index: str
    doc_id: str
    line: bytes

    @classmethod
    def make(cls, index: str, doc_id: str, source: dict[str, Any]) -> Item:
        action = orjson.dumps({"index": {"_index": index, "_id": doc_id}})
        body = orjson.dumps(source, default=str)
        return cls(index, doc_id, b"".join((action, b"\n", body, b"\n")))

    @classmethod
    def delete(cls, index: str, doc_id: str) -> Item:
        """A delete: its action line only (``_bulk`` takes no source after a delete)."""
        return cls(index, doc_id, orjson.dumps({"delete": {"_index": index, "_id": doc_id}}) + b"\n")

    @property
    def source(self) -> dict[str, Any]:
        start = self.line.index(b"\n") + 1
        return orjson.loads(self.line[start:-1])  # type: ignore[no-any-return]


@dataclass(frozen=True)
class DeadLetter:
    item: Item
    status: int
    error_type: str | None
    reason: str


class Unavailable(Exception):
    """Elasticsearch did not take the batch; `kind` is a stable word for /search/status."""

    def __init__(self, kind: str, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retryable = retryable


class TooLarge(Exception):
    """The request was answered 413 (http.max_content_length)."""


@dataclass
class Policy:
    base_delay: float = 0.2
    max_delay: float = 30.0
    request_attempts: int = 4  # whole-request transient failures before giving up for this round
    idle_attempts: int = 6  # per-item retry attempts in a row that accepted nothing
    max_bytes: int = 5 << 20
    max_items: int = 1000


@dataclass
class Outcome:
    accepted: int = 0
    dead: list[DeadLetter] = field(default_factory=list)
    retried: int = 0
    requests: int = 0


Send = Callable[[bytes], Awaitable[dict[str, Any]]]

# Per-item errors that waiting can fix.
_TRANSIENT_TYPES = frozenset(
    {"es_rejected_execution_exception", "cluster_block_exception", "circuit_breaking_exception"}
)


def backoff(attempt: int, policy: Policy, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**attempt)]."""
    return rand() * min(policy.max_delay, policy.base_delay * (2**attempt))


def chunks(items: Sequence[Item], policy: Policy) -> list[list[Item]]:
    out: list[list[Item]] = []
    current: list[Item] = []
    size = 0
    for item in items:
        if current and (size + len(item.line) > policy.max_bytes or len(current) >= policy.max_items):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += len(item.line)
    if current:
        out.append(current)
    return out


def classify_item(result: dict[str, Any]) -> str:
    """'ok', 'retry' or 'dead' for one item of a bulk response."""
    status = int(result.get("status", 500))
    if 200 <= status < 300:
        return "ok"
    if status == 404 and not result.get("error"):
        return "ok"  # a delete of a document already gone ("not_found"); a missing index has an error
    etype = (result.get("error") or {}).get("type")
    if status == 429 or status >= 500 or etype in _TRANSIENT_TYPES:
        return "retry"
    return "dead"


class Deliverer:
    def __init__(
        self,
        send: Send,
        policy: Policy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        classify: Callable[[BaseException], Exception] | None = None,
    ) -> None:
        self.send = send
        self.policy = policy or Policy()
        self.sleep = sleep
        self.rand = rand
        # Maps a client exception to TooLarge, Unavailable (final) or itself (transient: retried).
        self.classify = classify or (lambda exc: exc if isinstance(exc, Exception) else Exception(str(exc)))

    async def deliver(self, items: Sequence[Item]) -> Outcome:
        """Every item accepted or dead-lettered, or `Unavailable` raised (then none is final)."""
        outcome = Outcome()
        for chunk in chunks(items, self.policy):
            await self._deliver_chunk(chunk, outcome)
        return outcome

    async def _request(self, chunk: list[Item], outcome: Outcome) -> dict[str, Any]:
        attempt = 0
        while True:
            outcome.requests += 1
            try:
                return await self.send(b"".join(i.line for i in chunk))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = self.classify(exc)
                if isinstance(err, TooLarge | Unavailable):
                    raise err from None
                attempt += 1
                if attempt >= self.policy.request_attempts:
                    raise Unavailable(
                        getattr(err, "kind", "unavailable"), str(err) or type(exc).__name__
                    ) from None
                await self.sleep(backoff(attempt, self.policy, self.rand))

    async def _deliver_chunk(self, chunk: list[Item], outcome: Outcome) -> None:
        pending = chunk
        idle = 0
        while pending:
            try:
                response = await self._request(pending, outcome)
            except TooLarge:
                if len(pending) == 1:
                    outcome.dead.append(
                        DeadLetter(
                            pending[0],
                            413,
                            "request_entity_too_large",
                            f"a single document of {len(pending[0].line)} bytes is over the cluster's"
                            " http.max_content_length",
                        )
                    )
                    return
                half = len(pending) // 2
                await self._deliver_chunk(pending[:half], outcome)
                await self._deliver_chunk(pending[half:], outcome)
                return
            results = response.get("items") or []
            if len(results) != len(pending):
                raise Unavailable("bad_response", f"_bulk answered {len(results)} items for {len(pending)}")
            retry: list[Item] = []
            last_reason = ""
            for item, entry in zip(pending, results, strict=True):
                result = next(iter(entry.values())) if entry else {}
                verdict = classify_item(result)
                if verdict == "ok":
                    outcome.accepted += 1
                elif verdict == "retry":
                    retry.append(item)
                    err = result.get("error") or {}
                    last_reason = f"{result.get('status')} {err.get('type', '')}: {err.get('reason', '')}"[
                        :500
                    ]
                else:
                    err = result.get("error") or {}
                    reason = err.get("reason") or "refused"
                    caused = (err.get("caused_by") or {}).get("reason")
                    if caused and caused != reason:
                        reason = f"{reason} ({caused})"
                    outcome.dead.append(
                        DeadLetter(item, int(result.get("status", 400)), err.get("type"), str(reason)[:2000])
                    )
            if not retry:
                return
            outcome.retried += len(retry)
            idle = 0 if len(retry) < len(pending) else idle + 1
            if idle >= self.policy.idle_attempts:
                kind = "read_only" if "cluster_block_exception" in last_reason else "rejected"
                raise Unavailable(kind, f"{len(retry)} items still refused: {last_reason}")
            await self.sleep(backoff(idle + 1, self.policy, self.rand))
            pending = retry
