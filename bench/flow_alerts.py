"""What flow alert rules cost, bounded loops, no network, no database:

1. `FlowWatch` judging one minute of 50,000 aggregation keys (about 8,000 customers): CPU of the
   tally and of the evaluation through the real `AlertEngine.feed`, with an every-customer rule,
   a rule on 10 listed customers and a rule on 10 prefixes (no breach: the common case). This runs
   in the event loop once a minute, so it is a pause of the loop;
2. the aggregator's folded path (past FLOW_MAX_KEYS) with and without a watched prefix: records/s
   of a random-source flood towards a watched /24.

    PYTHONPATH=src python3 bench/flow_alerts.py     # a few seconds
"""

from __future__ import annotations

import random
import time

from ispmon.alerts.channels import ChannelRegistry
from ispmon.alerts.engine import AlertEngine
from ispmon.alerts.rules import AlertRule
from ispmon.flows.aggregate import Aggregator
from ispmon.flows.alerting import FlowWatch
from ispmon.flows.attribution import PrefixTable
from ispmon.flows.decode import FlowDecoder, FlowRecord

KEYS = 50_000
REPEATS = 5
MINUTE = 1_800_000_000 // 60 * 60


def customers() -> PrefixTable:
    return PrefixTable((f"10.{a}.{b}.0/24", f"c{a}-{b}") for a in range(0, 256, 4) for b in range(0, 256, 2))


def records(rng: random.Random, n: int, dst: str | None = None) -> list[FlowRecord]:
    out = []
    for _ in range(n):
        src = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        to = dst or f"10.{rng.randrange(0, 256, 4)}.{rng.randrange(0, 256, 2)}.{rng.randrange(256)}"
        out.append(FlowRecord("r1", MINUTE + 30.0, 1, 2, src, to, 6, rng.randrange(1024, 65535), 443, 1500, 1))
    return out


def engine() -> AlertEngine:
    # No pool: with no breach, feed() never reaches the database.
    e = AlertEngine(
        pool=None,  # type: ignore[arg-type]
        alerts=None,  # type: ignore[arg-type]
        notifications=None,  # type: ignore[arg-type]
        channels=ChannelRegistry([]),
        default_channels=[],
        link_base=None,
    )
    rules = [
        {"id": "every", "kind": "flow", "metric": "to_bps", "above": 1e12},
        {"id": "listed", "kind": "flow", "metric": "from_bps", "above": 1e12,
         "customers": [f"c{a}-0" for a in range(0, 40, 4)]},
        {"id": "nets", "kind": "flow", "metric": "to_pps", "above": 1e12,
         "prefixes": [f"10.{a}.0.0/16" for a in range(0, 40, 4)]},
    ]  # fmt: skip
    e.configure([AlertRule.model_validate(r) for r in rules], {})
    return e


def watch_figure() -> None:
    rng = random.Random(7)
    agg = Aggregator(customers(), max_keys=KEYS)
    agg.add(records(rng, KEYS))
    bucket = agg.take()[0]
    runs = []
    for _ in range(REPEATS):
        watch = FlowWatch(engine(), FlowDecoder(), Aggregator(customers()))
        start = time.process_time()
        watch([bucket], MINUTE + 120.0)
        runs.append(time.process_time() - start)
        assert watch.evaluated_through == MINUTE
    seen = len({k[6] for k in bucket.counts} | {k[5] for k in bucket.counts} - {None})
    print(f"FlowWatch: one minute of {len(bucket.counts):,} keys ({seen:,} customers seen), 3 rules: "
          f"{min(runs) * 1000:.1f} ms CPU (best of {REPEATS}, worst {max(runs) * 1000:.1f} ms)")  # fmt: skip


def fold_figure() -> None:
    rng = random.Random(8)
    flood = records(rng, 200_000, dst="10.0.0.1")
    for watched in (False, True):
        runs = []
        for _ in range(REPEATS):
            agg = Aggregator(customers(), max_keys=1000)
            if watched:
                agg.watched = PrefixTable([("10.0.0.0/16", "10.0.0.0/16")])
            start = time.process_time()
            agg.add(flood)
            runs.append(time.process_time() - start)
        print(f"aggregator, random-source flood past FLOW_MAX_KEYS, watched prefix {'yes' if watched else 'no '}: "
              f"{len(flood) / min(runs):,.0f} records/s (best of {REPEATS}), folded {agg.folded_total:,}")  # fmt: skip


def main() -> None:
    watch_figure()
    fold_figure()


if __name__ == "__main__":
    main()
