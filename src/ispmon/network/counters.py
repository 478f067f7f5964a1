"""Interface counter maths: two readings of an interface's counters -> rates, or no sample.

Pure functions, no I/O, no clock. The rules (a NOC engineer's expectations from MRTG/Cacti/LibreNMS):

* Rates are per second over the time between the two readings' timestamps (when we got the
  answers): bits/s from octets, packets/s from unicast packets, errors/s and discards/s.
* A counter that went down wrapped if the wrapped difference is plausible: below the interface's
  speed (with a tolerance) when the speed is known, else less than half the counter's range. A 64-bit
  counter practically never wraps between two polls, so the same rule turns a 64-bit decrease into
  a reset.
* A reset yields no sample, never a spike: sysUpTime going back (it wraps itself at 2**32
  centiseconds, ~497 days, which is told apart by the wall time elapsed),
  ifCounterDiscontinuityTime changing, or any counter going back by more than a wrap explains.
* A rate above the interface's speed is dropped (None) or clamped to the speed, and counted.
  Software loopbacks (ifType 24) have no meaningful speed: no speed check, no utilisation.
* Utilisation is % of ifHighSpeed (Mbit/s), or of ifSpeed (bit/s) when ifHighSpeed is 0 or absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# Counter names as the poller fills them; octets and packets are 64-bit when read from ifXTable.
OCTETS_IN = "in_octets"
OCTETS_OUT = "out_octets"
PKTS_IN = "in_ucast_pkts"
PKTS_OUT = "out_ucast_pkts"
ERRORS_IN = "in_errors"
ERRORS_OUT = "out_errors"
DISCARDS_IN = "in_discards"
DISCARDS_OUT = "out_discards"
COUNTERS = (OCTETS_IN, OCTETS_OUT, PKTS_IN, PKTS_OUT, ERRORS_IN, ERRORS_OUT, DISCARDS_IN, DISCARDS_OUT)

IFTYPE_SOFTWARE_LOOPBACK = 24
UPTIME_RANGE = 2**32  # TimeTicks, centiseconds
# A rate this much above the interface's speed is still believed: two polls' answers are
# timestamped on arrival, not when the agent read the counters, so a short interval jitters.
SPEED_TOLERANCE = 1.10


class NoSample(StrEnum):
    """Why two readings gave no sample."""

    NO_INTERVAL = "no_interval"  # the second reading is not later than the first
    REBOOT = "reboot"  # sysUpTime went back
    DISCONTINUITY = "discontinuity"  # ifCounterDiscontinuityTime changed
    COUNTER_RESET = "counter_reset"  # a counter went back by more than a wrap explains
    WIDTH_CHANGED = "width_changed"  # 64-bit then 32-bit counters (or back): not comparable


@dataclass(frozen=True, slots=True)
class Reading:
    """One poll of one interface: when, the agent's clock, and the raw counters.

    ``at`` is seconds (any epoch, the same for both readings); ``uptime`` is sysUpTime in
    centiseconds; ``counters`` maps the names above to raw values, missing ones absent;
    ``hc`` is True when octets and packets are ifXTable 64-bit counters.
    """

    at: float
    counters: dict[str, int]
    hc: bool = True
    uptime: int | None = None
    discontinuity: int | None = None
    high_speed_mbps: int | None = None
    speed_bps: int | None = None
    if_type: int | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """Rates between two readings; None where a counter is missing or a rate was dropped."""

    at: float
    interval: float
    in_bps: float | None = None
    out_bps: float | None = None
    in_pps: float | None = None
    out_pps: float | None = None
    in_util_pct: float | None = None
    out_util_pct: float | None = None
    in_errors_ps: float | None = None
    out_errors_ps: float | None = None
    in_discards_ps: float | None = None
    out_discards_ps: float | None = None
    # Octet deltas (after wraps) so totals can be summed without re-integrating rates.
    in_octets: int | None = None
    out_octets: int | None = None
    over_speed: tuple[str, ...] = field(default_factory=tuple)  # directions dropped or clamped


@dataclass(frozen=True, slots=True)
class Result:
    """A sample, or the reason there is none."""

    sample: Sample | None
    reason: NoSample | None = None


def speed_bps(high_speed_mbps: int | None, speed: int | None) -> int | None:
    """The interface's speed in bit/s: ifHighSpeed (Mbit/s) first, ifSpeed when that is 0/absent."""
    if high_speed_mbps:
        return high_speed_mbps * 1_000_000
    return speed or None


def delta(prev: int, cur: int, bits: int, interval: float, max_per_s: float | None) -> int | None:
    """The increase of a ``bits``-wide counter, following one wrap; None if it can only be a reset.

    ``max_per_s`` is the most the counter can plausibly grow per second (None: unknown).
    """
    if cur >= prev:
        return cur - prev
    wrapped = cur + (1 << bits) - prev
    if max_per_s is not None:
        return wrapped if wrapped <= max_per_s * interval else None
    return wrapped if wrapped < (1 << (bits - 1)) else None


def rebooted(prev: int, cur: int, interval: float) -> bool:
    """sysUpTime went back: a reboot, unless it is the TimeTicks wrap at 2**32 (told by wall time)."""
    if cur >= prev:
        return False
    wrapped_s = (cur + UPTIME_RANGE - prev) / 100
    return abs(wrapped_s - interval) > max(interval * 0.5, 60.0)


def _width(name: str, hc: bool) -> int:
    return 64 if hc and name in (OCTETS_IN, OCTETS_OUT, PKTS_IN, PKTS_OUT) else 32


def rates(prev: Reading, cur: Reading, *, clamp: bool = False) -> Result:
    """Rates from two readings of one interface (see the module docstring for the rules)."""
    interval = cur.at - prev.at
    if interval <= 0:
        return Result(None, NoSample.NO_INTERVAL)
    if prev.uptime is not None and cur.uptime is not None and rebooted(prev.uptime, cur.uptime, interval):
        return Result(None, NoSample.REBOOT)
    if None not in (prev.discontinuity, cur.discontinuity) and prev.discontinuity != cur.discontinuity:
        return Result(None, NoSample.DISCONTINUITY)
    if prev.hc != cur.hc:
        return Result(None, NoSample.WIDTH_CHANGED)
    loopback = cur.if_type == IFTYPE_SOFTWARE_LOOPBACK
    speed = None if loopback else speed_bps(cur.high_speed_mbps, cur.speed_bps)
    max_octets = speed * SPEED_TOLERANCE / 8 if speed else None
    deltas: dict[str, int] = {}
    for name in COUNTERS:
        if name not in prev.counters or name not in cur.counters:
            continue
        limit = max_octets if name in (OCTETS_IN, OCTETS_OUT) else None
        d = delta(prev.counters[name], cur.counters[name], _width(name, cur.hc), interval, limit)
        if d is None:
            return Result(None, NoSample.COUNTER_RESET)
        deltas[name] = d

    def per_s(name: str) -> float | None:
        return deltas[name] / interval if name in deltas else None

    over: list[str] = []

    def bps(name: str, direction: str) -> float | None:
        value = per_s(name)
        if value is None:
            return None
        value *= 8
        if speed and value > speed * SPEED_TOLERANCE:
            over.append(direction)
            return float(speed) if clamp else None
        return value

    in_bps, out_bps = bps(OCTETS_IN, "in"), bps(OCTETS_OUT, "out")

    def util(value: float | None) -> float | None:
        return None if value is None or not speed else min(value / speed * 100, 100.0)

    return Result(
        Sample(
            at=cur.at,
            interval=interval,
            in_bps=in_bps,
            out_bps=out_bps,
            in_pps=per_s(PKTS_IN),
            out_pps=per_s(PKTS_OUT),
            in_util_pct=util(in_bps),
            out_util_pct=util(out_bps),
            in_errors_ps=per_s(ERRORS_IN),
            out_errors_ps=per_s(ERRORS_OUT),
            in_discards_ps=per_s(DISCARDS_IN),
            out_discards_ps=per_s(DISCARDS_OUT),
            in_octets=deltas.get(OCTETS_IN) if in_bps is not None else None,
            out_octets=deltas.get(OCTETS_OUT) if out_bps is not None else None,
            over_speed=tuple(over),
        )
    )
