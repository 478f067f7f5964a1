"""The bulk loop's per-item decisions, against a scripted `send` (pure: no server, no sleep)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ispmon.search.bulk import Deliverer, Item, Policy, TooLarge, Unavailable, backoff, chunks, classify_item
from ispmon.search.client import Transient


def items(n: int) -> list[Item]:
    return [Item.make("isp-x-2026.12.02", str(i), {"n": i}) for i in range(n)]


def ids_of(body: bytes) -> list[str]:
    lines = body.decode().splitlines()
    return [json.loads(line)["index"]["_id"] for line in lines[::2]]


def answer(ids: list[str], status: dict[str, int]) -> dict[str, Any]:
    out = []
    for i in ids:
        s = status.get(i, 201)
        item: dict[str, Any] = {"_id": i, "status": s}
        if s == 400:
            item["error"] = {"type": "mapper_parsing_exception", "reason": f"bad {i}"}
        elif s >= 300:
            item["error"] = {"type": "es_rejected_execution_exception", "reason": "busy"}
        out.append({"index": item})
    return {"errors": any(v >= 300 for v in status.values()), "items": out}


async def no_sleep(_: float) -> None:
    return None


def deliverer(send: Any, **policy: Any) -> Deliverer:
    from ispmon.search.client import classify

    return Deliverer(send, Policy(**policy), sleep=no_sleep, rand=lambda: 0.5, classify=classify)


async def test_only_rejected_items_are_retried_and_dead_letters_do_not_block() -> None:
    calls: list[list[str]] = []

    async def send(body: bytes) -> dict[str, Any]:
        ids = ids_of(body)
        calls.append(ids)
        first = len(calls) == 1
        return answer(ids, {"1": 429, "2": 503, "3": 400} if first else {})

    outcome = await deliverer(send).deliver(items(5))
    assert calls == [["0", "1", "2", "3", "4"], ["1", "2"]]
    assert outcome.accepted == 4 and [d.item.doc_id for d in outcome.dead] == ["3"]
    assert outcome.dead[0].error_type == "mapper_parsing_exception" and outcome.dead[0].reason == "bad 3"


async def test_413_splits_until_it_fits_and_a_lone_oversized_document_is_a_dead_letter() -> None:
    sizes: list[int] = []

    async def send(body: bytes) -> dict[str, Any]:
        ids = ids_of(body)
        sizes.append(len(ids))
        if len(ids) > 2 or "7" in ids:  # "7" alone is over the limit
            raise TooLarge("too large")
        return answer(ids, {})

    outcome = await deliverer(send).deliver(items(8))
    assert outcome.accepted == 7 and [d.item.doc_id for d in outcome.dead] == ["7"]
    assert outcome.dead[0].status == 413
    assert sizes[0] == 8 and max(sizes[1:]) <= 4


async def test_no_progress_gives_up_without_dead_letters() -> None:
    async def send(body: bytes) -> dict[str, Any]:
        ids = ids_of(body)
        return answer(ids, dict.fromkeys(ids, 429))

    with pytest.raises(Unavailable) as exc:
        await deliverer(send, idle_attempts=3).deliver(items(3))
    assert exc.value.kind == "rejected"


async def test_transient_request_errors_are_retried_then_reported() -> None:
    attempts = 0

    async def flaky(body: bytes) -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Transient("connection", "refused")
        return answer(ids_of(body), {})

    assert (await deliverer(flaky).deliver(items(2))).accepted == 2

    async def down(body: bytes) -> dict[str, Any]:
        raise Transient("connection", "cannot connect")

    with pytest.raises(Unavailable) as exc:
        await deliverer(down, request_attempts=2).deliver(items(2))
    assert exc.value.kind == "connection"


def test_backoff_is_exponential_capped_and_jittered() -> None:
    p = Policy(base_delay=0.5, max_delay=4.0)
    assert [backoff(a, p, lambda: 1.0) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff(3, p, lambda: 0.25) == 1.0


def test_chunks_bound_bytes_and_items() -> None:
    batch = items(10)
    assert [len(c) for c in chunks(batch, Policy(max_items=4))] == [4, 4, 2]
    one = len(batch[0].line)
    assert [len(c) for c in chunks(batch, Policy(max_bytes=one * 3))] == [3, 3, 3, 1]


def test_a_delete_is_one_action_line_and_not_found_is_done() -> None:
    item = Item.delete("isp-maintenance-windows", "mw1")
    assert item.line == b'{"delete":{"_index":"isp-maintenance-windows","_id":"mw1"}}\n'
    assert classify_item({"status": 404}) == "ok"  # already gone (filter_path keeps status and error)
    missing_index = {"status": 404, "error": {"type": "index_not_found_exception", "reason": "no such index"}}
    assert classify_item(missing_index) == "dead"
    assert classify_item({"status": 429}) == "retry" and classify_item({"status": 200}) == "ok"
