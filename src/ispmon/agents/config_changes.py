"""What a row of `config_changes` means to an agent, and how a burst of them folds into one plan.

Pure: no I/O. The rows are written by the configuration tables' triggers (schema.sql, version 19),
one per kind and transaction, and by a config-file reload (kind `reload`). An agent turns the rows
it has not applied yet into a `Plan`: per kind, the keys to re-read, or every row of the kind. Its
own rows are left out: the API or reload that made them has already updated its memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

CHANNEL = "ispmon_config"

# Kinds whose rows an agent re-reads one by one when a change names its key (one endpoint among
# 20,000). The others are small tables held whole in memory: re-reading all of one is the update.
KEYED = frozenset({"endpoints", "devices", "flow_exporters"})
WHOLE = frozenset({"maintenance", "alert_rules", "alert_channels", "customers", "nas_clients"})
KINDS = KEYED | WHOLE
# A config file was reloaded on its origin: its rows are written (and announced under their own
# kinds), and everything is re-read, so that no agent keeps a state the file no longer declares.
# Its key is the digest of the file, to tell agents whose own file differs.
RELOAD = "reload"

# Past this many keys of one kind in one plan, the whole kind is re-read: one query instead of many.
MAX_KEYS = 200


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    kind: str
    key: str | None
    origin: str


@dataclass
class Plan:
    """Per kind: the keys to re-read, or None for the whole kind."""

    kinds: dict[str, frozenset[str] | None] = field(default_factory=dict)
    reload_digests: set[str | None] = field(default_factory=set)  # file digests announced by reloads
    unknown: set[str] = field(default_factory=set)  # kinds from a newer version: nothing to do here
    changes: int = 0
    origins: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def whole(self, kind: str) -> bool:
        return kind in self.kinds and self.kinds[kind] is None

    def add(self, change: Change, max_keys: int = MAX_KEYS) -> None:
        self.changes += 1
        self.origins.add(change.origin)
        if change.kind == RELOAD:
            self.reload_digests.add(change.key)
            for kind in KINDS:
                self.kinds[kind] = None
            return
        if change.kind not in KINDS:
            self.unknown.add(change.kind)
            return
        if change.kind in WHOLE or change.key is None or self.whole(change.kind):
            self.kinds[change.kind] = None
            return
        keys = (self.kinds.get(change.kind) or frozenset()) | {change.key}
        self.kinds[change.kind] = keys if len(keys) <= max_keys else None


def plan(changes: Iterable[Change], own: str, max_keys: int = MAX_KEYS) -> Plan:
    """The plan for `changes`, leaving out those `own` (this agent) made."""
    out = Plan()
    for change in sorted(changes, key=lambda c: c.id):
        if change.origin != own:
            out.add(change, max_keys)
    return out
