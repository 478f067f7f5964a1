"""Redaction benchmark: what hiding secrets costs an API read of endpoint definitions.

    python bench/redaction.py       # a few seconds; no database, no network

Figures printed (CPU µs per endpoint, the best of 7 rounds over 2,000 definitions):

* `EndpointSpec.public_dict()` for definitions with no secret, and with a URL password, query
  values, a custom header and a body (the worst common case);
* the anchor: `model_dump(mode="json")` alone, the part of `public_dict` that is not redaction;
* `public_text` over a typical error string without a URL (the common case for check results).

Every loop is bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ispmon.availability.endpoints import EndpointSpec, build_endpoint
from ispmon.availability.redaction import public_text

N = 2000
ROUNDS = 7


def _specs(secret: bool) -> list[EndpointSpec]:
    out = []
    for i in range(N):
        if secret:
            data = {
                "name": f"ep{i}",
                "url": f"https://mon:p@ss{i}@host{i}.example.net/v1/health?token=t{i}&region=eu",
                "method": "POST",
                "headers": {"X-Auth": f"k{i}", "Accept": "application/json"},
                "body": f'{{"n": {i}}}',
            }
        else:
            data = {"name": f"ep{i}", "url": f"https://host{i}.example.net/health"}
        out.append(build_endpoint(data))
    return out


def _per_item_us(fn: Callable[[], object], items: int) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times) / items * 1e6  # the least disturbed round: the machine is shared


def main() -> None:
    plain, secret = _specs(False), _specs(True)
    rows = [
        (
            "model_dump (anchor), no secrets",
            _per_item_us(lambda: [s.model_dump(mode="json") for s in plain], N),
        ),
        ("public_dict, no secrets", _per_item_us(lambda: [s.public_dict() for s in plain], N)),
        (
            "model_dump (anchor), with secrets",
            _per_item_us(lambda: [s.model_dump(mode="json") for s in secret], N),
        ),
        ("public_dict, with secrets", _per_item_us(lambda: [s.public_dict() for s in secret], N)),
    ]
    error = "connection refused by 127.0.0.1:8080"
    rows.append(
        ("public_text, error without URL", _per_item_us(lambda: [public_text(error) for _ in range(N)], N))
    )
    for label, us in rows:
        print(f"{label:40s} {us:8.2f} µs per item")


if __name__ == "__main__":
    main()
