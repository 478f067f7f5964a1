"""The `webhook` quota policy: a JSON POST to the customer's billing/provisioning URL.

The body and the `Idempotency-Key` header carry the enforcement's idempotency key (customer,
period, threshold), so a receiver that sees the same key twice (a retry after a lost response, or
a resend after a crash between the audit row and its outcome) can tell. A 2xx is `sent`; a
timeout, a connection error, a 408, a 429 or a 5xx is retried at the next quota pass, up to
`MAX_ATTEMPTS`, then `failed`; any other 4xx is `failed` at once (the receiver refused it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

MAX_ATTEMPTS = 10
RETRIED_STATUSES = frozenset({408, 429})


@dataclass(frozen=True)
class WebhookResult:
    state: str  # sent, pending (retry at the next pass), failed
    detail: str | None


def webhook_body(
    *, customer_id: str, period_start: datetime, threshold: int, used_bytes: int, quota_bytes: int, key: str
) -> dict[str, Any]:
    return {
        "event": "quota_exceeded",
        "customer_id": customer_id,
        "period_start": period_start.isoformat(),
        "threshold_percent": threshold,
        "used_bytes": used_bytes,
        "quota_bytes": quota_bytes,
        "idempotency_key": key,
    }


async def post_webhook(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], *, attempts: int, timeout: float
) -> WebhookResult:
    """One POST; `attempts` counts this one. The URL may hold a token: never in `detail`."""
    try:
        async with session.post(
            url,
            json=body,
            headers={"Idempotency-Key": body["idempotency_key"]},
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = f"{type(exc).__name__}"
        return WebhookResult("failed" if attempts >= MAX_ATTEMPTS else "pending", detail)
    if 200 <= status < 300:
        return WebhookResult("sent", f"HTTP {status}")
    if status >= 500 or status in RETRIED_STATUSES:
        return WebhookResult("failed" if attempts >= MAX_ATTEMPTS else "pending", f"HTTP {status}")
    return WebhookResult("failed", f"HTTP {status}")
