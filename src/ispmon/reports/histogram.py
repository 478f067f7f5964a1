"""Response-time histograms that merge: log-spaced bins, so the percentiles of a day, a month or
a year come from the hours' histograms by adding counts, never by averaging percentiles.

Bin ``b`` holds times in ``[LOW_MS * RATIO**b, LOW_MS * RATIO**(b + 1))``; times below LOW_MS go
to bin 0 and times above the last bin to the last one. A percentile is the bin holding the
nearest-rank value, reported as the bin's geometric middle, so it is within ``HALF_WIDTH``
(about 4.9 %) of the exact nearest-rank value of the raw checks, whatever the period's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

LOW_MS = 0.1
RATIO = 1.1
BINS = 160  # 0.1 ms .. 0.1 * 1.1**160 = ~420 s: past every probe timeout
HALF_WIDTH = math.sqrt(RATIO) - 1  # the relative error bound of a reported percentile

# The same binning in SQL, for `response_time_ms` (real): what the rollup stores.
SQL_BIN = (
    f"least({BINS - 1}, greatest(0, floor(ln(greatest(response_time_ms::float8, {LOW_MS}) / {LOW_MS})"
    f" / ln({RATIO}))))::smallint"
)


def bin_of(ms: float) -> int:
    """The bin of a response time in ms (the SQL_BIN of Python)."""
    return min(BINS - 1, max(0, math.floor(math.log(max(ms, LOW_MS) / LOW_MS) / math.log(RATIO))))


def bin_value(b: int) -> float:
    """The value reported for bin `b`: its geometric middle, in ms."""
    return LOW_MS * RATIO ** (b + 0.5)


def merge(pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> dict[int, int]:
    """Add up (bins, counts) histograms."""
    out: dict[int, int] = {}
    for bins, counts in pairs:
        for b, n in zip(bins, counts, strict=True):
            out[b] = out.get(b, 0) + n
    return out


def percentile(hist: dict[int, int], pct: float) -> float | None:
    """The nearest-rank `pct` percentile (0 < pct <= 100) of a merged histogram, in ms."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= rank:
            return bin_value(b)
    raise AssertionError("unreachable: rank <= total")
