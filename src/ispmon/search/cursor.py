"""The feed's cursors: which rows of a source are due, in commit order, without skipping any.

A bigserial id is assigned when a row is inserted, not when its transaction commits, so "id >
cursor" skips a row whose transaction committed after one with a higher id had been read. The
cursor is therefore a transaction id: a window [watermark, window_end) of the transactions that
wrote the rows (their ``xmin``), where ``window_end`` is a snapshot's xmin — the oldest transaction
still running then. Every transaction below it has finished, so that window's rows are final: none
can appear in it later, whatever its id or its time. Updated rows get a new xmin and fall into a
later window, which is how an outage that is resolved or escalated is re-sent (same document id).

A row's ``xmin`` is 32 bits; the window is compared modulo 2**32 against the 64-bit snapshot xmin
(`window_condition`), valid while a window spans fewer than 2**31 transactions (windows are
clamped to that; PostgreSQL's own wraparound protection freezes rows long before).

``xmin`` has no index, so each source also bounds its scan by an id or a time (`ScanFloors`): the
sequence value (or clock) read at a snapshot k is a safe floor once the watermark has passed the
xmax of a snapshot j taken at least `FLOOR_DELAY` seconds after k. Rows with an id at or below the
sequence's value at k were numbered before k; their transaction had its xid before k (then it is
below xmax_k <= xmax_j) or within moments after (an INSERT takes its xid as it writes its first
row, microseconds after numbering it), which `FLOOR_DELAY` covers; either way it lies below the
watermark, so all of them were sent. Pure logic here; the SQL lives with the sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

XID_MODULO = 1 << 32
MAX_WINDOW = (1 << 31) - 1
FLOOR_DELAY = 5.0  # seconds between the snapshot whose value becomes a floor and its witness


def window_condition(xmin_expr: str, w_param: str, x_param: str) -> str:
    """SQL true when the row's ``xmin`` lies in [W, X) (both bigint parameters, xid8 values)."""
    return (
        f"((({x_param}::bigint % {XID_MODULO}) - ({xmin_expr})::text::bigint + {XID_MODULO}) % {XID_MODULO})"
        f" BETWEEN 1 AND ({x_param}::bigint - {w_param}::bigint)"
    )


def clamp_window(watermark: int, snapshot_xmin: int) -> int:
    """The window's end: the snapshot's xmin, at most MAX_WINDOW transactions past the watermark."""
    return min(snapshot_xmin, watermark + MAX_WINDOW)


def initial_watermark(snapshot_xmin: int) -> int:
    """A first window reaching as far back as the modulo comparison can see: every existing row."""
    return max(3, snapshot_xmin - MAX_WINDOW)  # 0-2 are PostgreSQL's special xids


@dataclass
class Cursor:
    """One source's persisted position (the ``search_cursors`` row)."""

    family: str
    watermark: int
    window_end: int | None = None
    after_key: list[Any] | None = None
    floor_id: int = 0
    floor_at: datetime | None = None
    watermark_at: datetime | None = None
    sent: int = 0


@dataclass
class Mark:
    """What a snapshot saw: its xmax, the source's sequence value (or clock), when it was taken."""

    xmax: int
    value: int | datetime
    taken: float  # monotonic seconds


@dataclass
class ScanFloors:
    """Recent marks of one source, and the highest floor the watermark has made safe."""

    marks: list[Mark] = field(default_factory=list)
    keep: int = 64

    def add(self, mark: Mark) -> None:
        self.marks.append(mark)
        del self.marks[: max(0, len(self.marks) - self.keep)]

    def safe_floor(self, watermark: int) -> int | datetime | None:
        """The value of the newest mark k witnessed by a mark j (taken FLOOR_DELAY later) with
        xmax_j <= watermark; None when no mark is safe yet. Marks older than it are dropped."""
        best: int | None = None
        for k, mark in enumerate(self.marks):
            witnessed = any(
                later.taken >= mark.taken + FLOOR_DELAY and later.xmax <= watermark
                for later in self.marks[k + 1 :]
            )
            if witnessed:
                best = k
        if best is None:
            return None
        value = self.marks[best].value
        del self.marks[:best]
        return value


def lag_seconds(watermark_at: datetime | None, now: datetime) -> float | None:
    """How old the newest moment is up to which every committed row has been sent."""
    if watermark_at is None:
        return None
    return max(0.0, (now - watermark_at) / timedelta(seconds=1))
