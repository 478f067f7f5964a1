"""Freed heap memory goes back to the system after start-up (daemon.freeze_long_lived calls it)."""

from __future__ import annotations

import psutil

from ispmon.memory import release_free_memory


def test_freed_heap_pages_are_returned() -> None:
    # 2 KiB objects come from glibc's heap (pymalloc takes up to 512 B); keeping one in 16 alive
    # holds the heap's top, so freeing the rest gives nothing back until the heap is trimmed.
    blocks = [bytes(2048) for _ in range(40_000)]
    kept = blocks[::16]
    del blocks
    before = psutil.Process().memory_info().rss
    assert release_free_memory() is True
    after = psutil.Process().memory_info().rss
    assert before - after > 40 * 2**20, f"{(before - after) / 2**20:.1f} MiB returned"
    assert len(kept) == 2500
