"""Who is not paged, and why: the self-connectivity guard and parent dependencies. Pure logic.

* Self-connectivity: canary endpoints check the monitoring host's own uplink (its gateway, an
  upstream resolver, a far-away anycast address). When every canary's latest check is DOWN, the
  host is cut off: everything it monitors looks down at once, and paging for each endpoint would
  be a storm of false alarms. Alerts of non-canary endpoints are then recorded with
  ``suppressed_by = "self_connectivity"``. The canaries' own alerts still go out: "our uplink is
  down" is the one true page (through whatever channel still works, e.g. a local SMTP relay).
* Dependencies: an endpoint may name a `parent` (the router in front of it). While the parent or
  any ancestor is down, the child's alerts are recorded with ``suppressed_by = "dependency:<id>"``.

Both are evaluated again on every engine tick: an alert whose reason has gone (the uplink is back
but the endpoint is still down) is paged then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

MAX_DEPTH = 16  # parents are checked for cycles at load time; this bounds a cycle made through the API


def down_ancestor(
    endpoint_id: str, parent_of: Callable[[str], str | None], is_down: Callable[[str], bool]
) -> str | None:
    """The nearest ancestor of `endpoint_id` that is down, or None."""
    seen = {endpoint_id}
    node = parent_of(endpoint_id)
    for _ in range(MAX_DEPTH):
        if node is None or node in seen:
            return None
        if is_down(node):
            return node
        seen.add(node)
        node = parent_of(node)
    return None


@dataclass
class ConnectivityGuard:
    """Tracks the canaries' latest outcomes; `observe` says when the host's connectivity changes."""

    canaries: set[str] = field(default_factory=set)
    failing: set[str] = field(default_factory=set)
    isolated: bool = False

    def set_canaries(self, canaries: Iterable[str]) -> bool | None:
        """Replace the canary set (config reload, API change). Returns the new `isolated` value when
        that changed, else None."""
        self.canaries = set(canaries)
        self.failing &= self.canaries
        return self._update()

    def observe(self, endpoint_id: str, failing: bool) -> bool | None:
        """A canary's check finished. Returns True when the host just became isolated, False when
        it just got its connectivity back, None when nothing changed."""
        if endpoint_id not in self.canaries:
            return None
        if failing:
            self.failing.add(endpoint_id)
        else:
            self.failing.discard(endpoint_id)
        return self._update()

    def _update(self) -> bool | None:
        now_isolated = bool(self.canaries) and self.failing >= self.canaries
        if now_isolated == self.isolated:
            return None
        self.isolated = now_isolated
        return now_isolated
