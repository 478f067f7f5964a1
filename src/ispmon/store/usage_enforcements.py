"""Reading the enforcement audit trail (written by ispmon.usage.enforce): keyset-paged lists."""

from __future__ import annotations

from ispmon.store.listing import Filter, Key, ListSpec

_SELECT = (
    "SELECT id, customer_id, period_start, threshold, action, target, nas_id, session_key, idempotency_key,"
    " state, attempts, detail, created_at, updated_at FROM enforcements"
)
_KEYSET = (Key("id", "integer"),)
STATES = ("pending", "sent", "acked", "nak", "timeout", "failed", "unsent")

ENFORCEMENTS = ListSpec(
    "enforcements",
    _SELECT,
    filters=(
        Filter("customer", "text", "customer_id", description="Only this customer's", key="customer_id"),
        Filter("state", "enum", "state", description="Only in this state", choices=STATES),
    ),
    keyset=_KEYSET,
    descending=True,
)
CUSTOMER_ENFORCEMENTS = ListSpec(
    "customer-enforcements",
    _SELECT,
    filters=(
        Filter("customer_id", "text", "customer_id", path=True),
        Filter("state", "enum", "state", description="Only in this state", choices=STATES),
    ),
    keyset=_KEYSET,
    descending=True,
)
