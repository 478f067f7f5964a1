"""Flow alert rules (``kind = "flow"``, `ispmon.alerts.flow_rules`) fed from the collector.

`FlowWatch` is the collector's hook: every flush hands it the 1-minute buckets it took (before
they are written) and the time. Per bucket it sums, for each customer seen and each prefix a rule
watches, the bytes and packets towards and from it; a minute is evaluated once, SETTLE_SECONDS
after it ended (records of that minute arriving later, in a later flush, still count), as one
check per (rule, subject) at the minute's end, through the engine's threshold path: open once
after ``for_checks`` minutes above, clear once after ``clear_checks`` minutes in range, durably
through the outbox. A watched subject with no traffic in an evaluated minute counts as 0, so an
attack that stops clears; a minute with no flow at all (the exporters fell silent) is no data and
neither fires nor clears. Buckets of a minute already evaluated (a replay, an exporter's backlog)
are still stored but not alerted on (`late_buckets`).

The undeclared-exporter figure is the decoder's count of dropped packets over each
UNKNOWN_WINDOW seconds of arrival time (undeclared packets carry no trusted flow time).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ispmon.alerts.flow_rules import PREFIX_METRICS, UNKNOWN_METRIC
from ispmon.alerts.network import UNKNOWN_EXPORTERS, FlowSubject, flow_customer_subject, flow_prefix_subject
from ispmon.flows.aggregate import BUCKET_SECONDS, Aggregator, Bucket
from ispmon.flows.attribution import PrefixTable, address_int

if TYPE_CHECKING:
    from ispmon.alerts.engine import AlertEngine
    from ispmon.alerts.rules import AlertRule
    from ispmon.flows.decode import FlowDecoder

SETTLE_SECONDS = 20.0
UNKNOWN_WINDOW = 60.0
MAX_OPEN_MINUTES = 60  # minutes summed but not yet evaluated (flows dated ahead); oldest dropped
_CONTAINS_MAX = 200_000
_ZERO = (0, 0, 0, 0)


class FlowWatch:
    def __init__(
        self,
        engine: AlertEngine,
        decoder: FlowDecoder,
        aggregator: Aggregator,
        *,
        settle: float = SETTLE_SECONDS,
        window: float = UNKNOWN_WINDOW,
    ) -> None:
        self.engine, self.decoder, self.aggregator = engine, decoder, aggregator
        self.settle, self.window = settle, window
        self._rules: tuple[AlertRule, ...] = ()
        self._watched: list[tuple[int, int, int, str]] = []  # (version, mask, network, prefix)
        self._contains: dict[str, tuple[str, ...]] = {}  # aggregate prefix -> watched prefixes holding it
        # minute -> subject id -> [bytes to, bytes from, packets to, packets from]
        self.tallies: dict[int, dict[str, list[int]]] = {}
        self.evaluated_through: int | None = None
        self.late_buckets = 0
        self.dropped_minutes = 0
        self._unknown_from: tuple[float, int] | None = None

    def rules(self) -> tuple[AlertRule, ...]:
        """The enabled flow rules now; a change of their prefixes re-arms the aggregator's fold."""
        rules = tuple(r for r in self.engine.rules.values() if r.kind == "flow" and r.enabled)
        if rules != self._rules:
            self._rules = rules
            prefixes = sorted({p for r in rules for p in r.prefixes})
            self._watched = []
            for p in prefixes:
                address, _, length = p.partition("/")
                parsed = address_int(address)
                assert parsed is not None  # validated by the rule
                bits = 32 if parsed[0] == 4 else 128
                mask = ((1 << int(length)) - 1) << (bits - int(length))
                self._watched.append((parsed[0], mask, parsed[1], p))
            self._contains.clear()
            self.aggregator.watched = PrefixTable((p, p) for p in prefixes) if prefixes else None
        return rules

    def __call__(self, buckets: Sequence[Bucket], now: float) -> None:
        rules = self.rules()
        traffic = tuple(r for r in rules if r.metric in PREFIX_METRICS)
        unknown = tuple(r for r in rules if r.metric == UNKNOWN_METRIC)
        if traffic:
            for bucket in buckets:
                if self.evaluated_through is not None and bucket.minute <= self.evaluated_through:
                    self.late_buckets += 1
                    continue
                self._tally(bucket)
            while len(self.tallies) > MAX_OPEN_MINUTES:
                del self.tallies[min(self.tallies)]
                self.dropped_minutes += 1
            for minute in sorted(self.tallies):
                if minute + BUCKET_SECONDS + self.settle > now:
                    break
                self._evaluate(minute, self.tallies.pop(minute), traffic)
                self.evaluated_through = minute
        else:
            self.tallies.clear()
        self._unknown(unknown, now)

    def _tally(self, bucket: Bucket) -> None:
        tally = self.tallies.setdefault(bucket.minute, {})
        watched = bool(self._watched)
        for key, (nbytes, packets, _flows) in bucket.counts.items():
            src_p, dst_p, src_c, dst_c = key[3], key[4], key[5], key[6]
            ids = []
            if dst_c is not None:
                ids.append((f"customer:{dst_c}", 0))
            if src_c is not None:
                ids.append((f"customer:{src_c}", 1))
            if watched:
                ids.extend((f"prefix:{p}", 0) for p in self._containing(dst_p))
                ids.extend((f"prefix:{p}", 1) for p in self._containing(src_p))
            for subject_id, side in ids:
                sums = tally.get(subject_id)
                if sums is None:
                    sums = tally[subject_id] = [0, 0, 0, 0]
                sums[side] += nbytes
                sums[side + 2] += packets

    def _containing(self, prefix: str) -> tuple[str, ...]:
        """The watched prefixes that hold an aggregate prefix ("10.1.2.0/24"; "other" is in none).
        Watched prefixes are at most the aggregate length, so its network address decides."""
        found = self._contains.get(prefix)
        if found is None:
            parsed = address_int(prefix.partition("/")[0])
            found = ()
            if parsed is not None:
                version, value = parsed
                found = tuple(p for v, mask, net, p in self._watched if v == version and value & mask == net)
            if len(self._contains) >= _CONTAINS_MAX:
                self._contains.clear()
            self._contains[prefix] = found
        return found

    def _evaluate(self, minute: int, tally: dict[str, list[int]], rules: tuple[AlertRule, ...]) -> None:
        at = datetime.fromtimestamp(minute + BUCKET_SECONDS, UTC)  # one check at the minute's end
        for rule in rules:
            if rule.customers or rule.prefixes:
                ids = [f"customer:{c}" for c in rule.customers] + [f"prefix:{p}" for p in rule.prefixes]
            else:
                # Every customer: those seen this minute, and those this rule is counting or
                # firing for (they get their 0, so a stopped flood clears).
                seen = {s for s in tally if s.startswith("customer:")}
                seen.update(
                    s for r, s in self.engine.thresholds if r == rule.id and s.startswith("customer:")
                )
                ids = sorted(seen)
            for subject_id in ids:
                b_to, b_from, p_to, p_from = tally.get(subject_id) or _ZERO
                values = {
                    "to_bps": b_to * 8 / BUCKET_SECONDS,
                    "from_bps": b_from * 8 / BUCKET_SECONDS,
                    "to_pps": p_to / BUCKET_SECONDS,
                    "from_pps": p_from / BUCKET_SECONDS,
                }
                self.engine.feed(_subject(subject_id), (rule,), at, values.get)

    def _unknown(self, rules: tuple[AlertRule, ...], now: float) -> None:
        count = self.decoder.unknown_packets
        if not rules:
            self._unknown_from = None
            return
        if self._unknown_from is None:
            self._unknown_from = (now, count)
            return
        since, before = self._unknown_from
        if now - since < self.window:
            return
        pps = (count - before) / (now - since)
        self._unknown_from = (now, count)
        self.engine.feed(
            UNKNOWN_EXPORTERS, rules, datetime.fromtimestamp(now, UTC), {UNKNOWN_METRIC: pps}.get
        )


def _subject(subject_id: str) -> FlowSubject:
    kind, _, name = subject_id.partition(":")
    return flow_customer_subject(name) if kind == "customer" else flow_prefix_subject(name)
