"""The cursor's pure parts: the modulo-2**32 window test and when a scan floor becomes safe."""

from __future__ import annotations

from ispmon.search.cursor import (
    FLOOR_DELAY,
    MAX_WINDOW,
    Mark,
    ScanFloors,
    clamp_window,
    initial_watermark,
)


def in_window(row_xmin32: int, w: int, x: int) -> bool:
    # The SQL of cursor.window_condition, evaluated in Python.
    dist = ((x % (1 << 32)) - row_xmin32 + (1 << 32)) % (1 << 32)
    return 1 <= dist <= x - w


def test_window_is_half_open_and_survives_the_32_bit_wrap() -> None:
    w, x = 100, 200
    assert in_window(100, w, x) and in_window(199, w, x)
    assert not in_window(200, w, x) and not in_window(99, w, x)
    # Epoch 1 (64-bit xids past 2**32): row xmins are the low 32 bits.
    w, x = (1 << 32) - 10, (1 << 32) + 10
    assert in_window((1 << 32) - 10, w, x) and in_window(5, w, x)
    assert not in_window(10, w, x) and not in_window((1 << 32) - 11, w, x)


def test_window_is_clamped_below_2_31() -> None:
    assert clamp_window(10, 10 + 2 * MAX_WINDOW) == 10 + MAX_WINDOW
    assert clamp_window(10, 50) == 50
    assert initial_watermark(100) == 3
    assert initial_watermark(MAX_WINDOW + 1000) == 1000


def test_a_floor_needs_a_later_witness_below_the_watermark() -> None:
    floors = ScanFloors()
    floors.add(Mark(xmax=100, value=1_000, taken=0.0))
    floors.add(Mark(xmax=110, value=1_500, taken=1.0))  # too soon after the first to witness it
    assert floors.safe_floor(watermark=200) is None
    floors.add(Mark(xmax=150, value=2_000, taken=FLOOR_DELAY + 1.5))
    # The third mark witnesses the first two, but only once the watermark has passed its xmax.
    assert floors.safe_floor(watermark=149) is None
    assert floors.safe_floor(watermark=150) == 1_500
    assert floors.marks[0].value == 1_500  # older marks dropped
