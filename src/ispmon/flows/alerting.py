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
from ispmon.alerts.rules import breaches
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
# Per minute: customer id -> sums, watched prefix -> sums; sums are
# [bytes towards, bytes from, packets towards, packets from].
Tally = tuple[dict[str, list[int]], dict[str, list[int]]]
_INDEX = {"to_bps": 0, "from_bps": 1, "to_pps": 2, "from_pps": 3}


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
        self.tallies: dict[int, Tally] = {}
        self._customer_sides: set[int] = set()
        self._prefix_sides: set[int] = set()
        self._only: frozenset[str] | None = None
        self.evaluated_through: int | None = None
        self.late_buckets = 0
        self.dropped_minutes = 0
        self._unknown_from: tuple[float, int] | None = None

    def rules(self) -> tuple[AlertRule, ...]:
        """The enabled flow rules now; a change re-plans the tally and re-arms the aggregator's fold."""
        rules = tuple(r for r in self.engine.rules.values() if r.kind == "flow" and r.enabled)
        if rules != self._rules:
            self._rules = rules
            self._plan(rules)
        return rules

    def _plan(self, rules: tuple[AlertRule, ...]) -> None:
        """Only what some rule reads is summed: the sides (0 towards, 1 from) of customers and of
        prefixes, and only the listed customers unless a rule watches every customer."""
        self._customer_sides, self._prefix_sides = set(), set()
        listed: set[str] = set()
        every = False
        for rule in rules:
            if rule.metric not in PREFIX_METRICS:
                continue
            side = 0 if (rule.metric or "").startswith("to_") else 1
            if rule.customers or not rule.prefixes:
                self._customer_sides.add(side)
                listed.update(rule.customers)
                every = every or not rule.customers
            if rule.prefixes:
                self._prefix_sides.add(side)
        self._only = None if every else frozenset(listed)
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
        """Sum a bucket into its minute's tally. The loop runs once per aggregation key (up to
        FLOW_MAX_KEYS a minute, in the event loop), hence written out flat."""
        customers, prefixes = self.tallies.setdefault(bucket.minute, ({}, {}))
        c_to, c_from = 0 in self._customer_sides, 1 in self._customer_sides
        p_to, p_from = 0 in self._prefix_sides, 1 in self._prefix_sides
        only, containing = self._only, self._containing
        for key, counts in bucket.counts.items():
            nbytes, packets = counts[0], counts[1]
            if c_to:
                cid = key[6]
                if cid is not None and (only is None or cid in only):
                    sums = customers.get(cid)
                    if sums is None:
                        sums = customers[cid] = [0, 0, 0, 0]
                    sums[0] += nbytes
                    sums[2] += packets
            if c_from:
                cid = key[5]
                if cid is not None and (only is None or cid in only):
                    sums = customers.get(cid)
                    if sums is None:
                        sums = customers[cid] = [0, 0, 0, 0]
                    sums[1] += nbytes
                    sums[3] += packets
            if p_to:
                for p in containing(key[4]):
                    sums = prefixes.get(p)
                    if sums is None:
                        sums = prefixes[p] = [0, 0, 0, 0]
                    sums[0] += nbytes
                    sums[2] += packets
            if p_from:
                for p in containing(key[3]):
                    sums = prefixes.get(p)
                    if sums is None:
                        sums = prefixes[p] = [0, 0, 0, 0]
                    sums[1] += nbytes
                    sums[3] += packets

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

    def _evaluate(self, minute: int, tally: Tally, rules: tuple[AlertRule, ...]) -> None:
        at = datetime.fromtimestamp(minute + BUCKET_SECONDS, UTC)  # one check at the minute's end
        customers, prefixes = tally
        thresholds = self.engine.thresholds
        for rule in rules:
            metric = rule.metric or ""
            index = _INDEX[metric]
            scale = 8 / BUCKET_SECONDS if metric.endswith("_bps") else 1 / BUCKET_SECONDS
            subjects: list[tuple[str, list[int] | None]] = []
            if rule.customers or rule.prefixes:
                subjects += [(f"customer:{c}", customers.get(c)) for c in rule.customers]
                subjects += [(f"prefix:{p}", prefixes.get(p)) for p in rule.prefixes]
            else:
                # Every customer: those seen this minute, and those this rule is counting or
                # firing for (they get their 0, so a stopped flood clears).
                held = {s[9:] for r, s in thresholds if r == rule.id and s.startswith("customer:")}
                subjects += [(f"customer:{c}", customers.get(c)) for c in sorted(held | customers.keys())]
            for subject_id, sums in subjects:
                value = (sums[index] if sums is not None else 0) * scale
                if (rule.id, subject_id) not in thresholds and not breaches(rule, value):
                    continue  # idle and in range: what feed() would conclude, without building a subject
                self.engine.feed(_subject(subject_id), (rule,), at, {metric: value}.get)

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
