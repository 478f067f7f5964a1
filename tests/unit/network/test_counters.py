"""Counter maths, table-tested: rates, wraps, resets, speed clamps, utilisation."""

from __future__ import annotations

import pytest

from ispmon.network.counters import (
    NoSample,
    Reading,
    delta,
    rates,
    rebooted,
    speed_bps,
)

G = 1_000  # ifHighSpeed of a gigabit port, Mbit/s
TOP32 = 2**32
TOP64 = 2**64


def reading(at: float, hc: bool = True, uptime: int | None = None, high: int | None = G, **counters: int) -> Reading:
    return Reading(at=at, counters=counters, hc=hc, uptime=uptime, high_speed_mbps=high)


@pytest.mark.parametrize(
    ("prev", "cur", "bits", "interval", "max_per_s", "expected"),
    [
        (100, 350, 32, 60, None, 250),  # plain increase
        (5, 5, 64, 60, None, 0),  # idle
        (TOP32 - 100, 50, 32, 60, None, 150),  # 32-bit wrap, speed unknown
        (TOP32 - 100, 50, 32, 60, 125e6, 150),  # 32-bit wrap under a gigabit's octets/s
        (TOP32 - 100, TOP32 - 200, 32, 60, None, None),  # back by a little: a reset, not a wrap of ~4 G
        (3_000_000_000, 1_000_000_000, 32, 1, 125e6, None),  # wrap implies 2.3 GB in 1 s on 1G: reset
        (TOP64 - 10, 5, 64, 60, None, 15),  # a genuine 64-bit wrap
        (10**12, 10**6, 64, 60, None, None),  # 64-bit counter back: a reset
        (10**12, 10**6, 64, 60, 125e6, None),
    ],
)
def test_delta(prev: int, cur: int, bits: int, interval: float, max_per_s: float | None, expected: int | None) -> None:
    assert delta(prev, cur, bits, interval, max_per_s) == expected


@pytest.mark.parametrize(
    ("prev", "cur", "interval", "expected"),
    [
        (1000, 7000, 60, False),
        (7000, 1000, 60, True),  # rebooted
        (TOP32 - 3000, 3000, 60, False),  # TimeTicks wrap after 497 days, 60 s elapsed
        (TOP32 - 3000, 3000, 3600 * 5, True),  # wrapped by 60 s, but 5 h went by: rebooted meanwhile
    ],
)
def test_rebooted(prev: int, cur: int, interval: float, expected: bool) -> None:
    assert rebooted(prev, cur, interval) is expected


@pytest.mark.parametrize(
    ("high", "speed", "expected"),
    [(1000, 4294967295, 1_000_000_000), (0, 10_000_000, 10_000_000), (None, 100_000_000, 100_000_000), (0, 0, None)],
)
def test_speed(high: int | None, speed: int | None, expected: int | None) -> None:
    assert speed_bps(high, speed) == expected


def test_rates_per_direction() -> None:
    prev = reading(0, uptime=100, in_octets=0, out_octets=1000, in_ucast_pkts=0, out_ucast_pkts=10,
                   in_errors=0, out_errors=0, in_discards=1, out_discards=0)
    cur = reading(10, uptime=1100, in_octets=12_500_000, out_octets=1000 + 1_250_000, in_ucast_pkts=10_000,
                  out_ucast_pkts=1010, in_errors=5, out_errors=0, in_discards=21, out_discards=0)
    result = rates(prev, cur)
    assert result.reason is None
    s = result.sample
    assert s is not None
    assert (s.in_bps, s.out_bps) == (10_000_000.0, 1_000_000.0)
    assert (s.in_pps, s.out_pps) == (1000.0, 100.0)
    assert (s.in_util_pct, s.out_util_pct) == (1.0, 0.1)
    assert (s.in_errors_ps, s.out_errors_ps, s.in_discards_ps, s.out_discards_ps) == (0.5, 0.0, 2.0, 0.0)
    assert (s.in_octets, s.out_octets) == (12_500_000, 1_250_000)
    assert s.interval == 10 and s.over_speed == ()


def test_32bit_wrap_gives_the_true_rate_not_a_negative_one() -> None:
    prev = reading(0, hc=False, high=0, in_octets=TOP32 - 1_000_000)
    cur = Reading(at=60, counters={"in_octets": 500_000}, hc=False, speed_bps=100_000_000)
    s = rates(prev, cur).sample
    assert s is not None and s.in_octets == 1_500_000 and s.in_bps == 1_500_000 * 8 / 60


@pytest.mark.parametrize(
    ("prev", "cur", "reason"),
    [
        (reading(0, uptime=90_000, in_octets=10), reading(60, uptime=500, in_octets=20), NoSample.REBOOT),
        (reading(0, in_octets=10**9), reading(60, in_octets=10), NoSample.COUNTER_RESET),
        (reading(0, hc=False, in_octets=3_000_000_000), reading(1, hc=False, in_octets=10**9),
         NoSample.COUNTER_RESET),
        (reading(0, in_octets=1), reading(0, in_octets=2), NoSample.NO_INTERVAL),
        (reading(5, in_octets=1), reading(0, in_octets=2), NoSample.NO_INTERVAL),
        (reading(0, hc=True, in_octets=1), reading(60, hc=False, in_octets=2), NoSample.WIDTH_CHANGED),
        (Reading(at=0, counters={"in_octets": 1}, discontinuity=100),
         Reading(at=60, counters={"in_octets": 2}, discontinuity=9000), NoSample.DISCONTINUITY),
        # errors going back also mean the agent reset its counters
        (reading(0, in_octets=1, in_errors=50), reading(60, in_octets=2, in_errors=3), NoSample.COUNTER_RESET),
    ],
)
def test_resets_give_no_sample(prev: Reading, cur: Reading, reason: NoSample) -> None:
    result = rates(prev, cur)
    assert result.sample is None and result.reason is reason


def test_above_speed_is_dropped_and_counted_or_clamped() -> None:
    # 100 Mbit/s port; 2 GB in 10 s is 1.6 Gbit/s: impossible, and not a wrap (the counter rose).
    prev = reading(0, high=100, in_octets=0, out_octets=0)
    cur = reading(10, high=100, in_octets=2 * 10**9, out_octets=1_250_000)
    s = rates(prev, cur).sample
    assert s is not None and s.in_bps is None and s.in_util_pct is None and s.in_octets is None
    assert s.out_bps == 1_000_000.0 and s.over_speed == ("in",)
    c = rates(prev, cur, clamp=True).sample
    assert c is not None and c.in_bps == 100_000_000.0 and c.in_util_pct == 100.0 and c.over_speed == ("in",)


def test_slightly_above_speed_is_believed() -> None:
    prev = reading(0, high=100, in_octets=0)
    cur = reading(1, high=100, in_octets=13_000_000)  # 104 Mbit/s measured over 1 s of jitter
    s = rates(prev, cur).sample
    assert s is not None and s.in_bps == 104_000_000.0 and s.in_util_pct == 100.0 and s.over_speed == ()


def test_loopback_has_no_speed_check_and_no_utilisation() -> None:
    # net-snmp reports lo at 10 Mbit/s; loopback traffic runs at Gbit/s.
    prev = Reading(at=0, counters={"in_octets": 0}, high_speed_mbps=10, if_type=24)
    cur = Reading(at=1, counters={"in_octets": 10**9}, high_speed_mbps=10, if_type=24)
    s = rates(prev, cur).sample
    assert s is not None and s.in_bps == 8e9 and s.in_util_pct is None and s.over_speed == ()


def test_missing_counters_are_none_not_zero() -> None:
    s = rates(reading(0, in_octets=0), reading(60, in_octets=600)).sample
    assert s is not None and s.in_bps == 80.0
    assert s.out_bps is None and s.in_pps is None and s.in_errors_ps is None


def test_utilisation_uses_ifspeed_when_highspeed_is_zero() -> None:
    prev = Reading(at=0, counters={"in_octets": 0}, high_speed_mbps=0, speed_bps=10_000_000)
    cur = Reading(at=8, counters={"in_octets": 5_000_000}, high_speed_mbps=0, speed_bps=10_000_000)
    s = rates(prev, cur).sample
    assert s is not None and s.in_bps == 5_000_000.0 and s.in_util_pct == 50.0
