"""The usage routes' two sources side by side: RADIUS accounting (``radius``: what the NAS counted
for the customer's sessions) and the flow collector (``flow``: traffic to and from the customer's
prefixes). Each figure is labelled with its source and named from the customer's side
(download, upload), as GET /customers/{id}/traffic names them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

SOURCES = ("radius", "flow")


def figures(source: str, download: int, upload: int) -> dict[str, Any]:
    return {
        "source": source,
        "download_bytes": download,
        "upload_bytes": upload,
        "total_bytes": download + upload,
    }


def merge_steps(radius: Iterable[asyncpg.Record], flow: Iterable[asyncpg.Record]) -> list[dict[str, Any]]:
    """One item per step either source has, oldest first. ``bytes_in``/``bytes_out`` stay the
    RADIUS octets (Acct-Input: upload, Acct-Output: download), as before the flows joined."""
    steps: dict[datetime, list[int]] = {}  # start -> [radius in, radius out, flow down, flow up]
    for p in radius:
        steps.setdefault(p["start"], [0, 0, 0, 0])[:2] = [int(p["bytes_in"]), int(p["bytes_out"])]
    for p in flow:
        steps.setdefault(p["start"], [0, 0, 0, 0])[2:] = [int(p["download"]), int(p["upload"])]
    return [
        {
            "start": start.isoformat(),
            "bytes_in": r_in,
            "bytes_out": r_out,
            "bytes_total": r_in + r_out,
            "sources": [figures("radius", r_out, r_in), figures("flow", f_down, f_up)],
        }
        for start, (r_in, r_out, f_down, f_up) in sorted(steps.items())
    ]


def totals(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The window's figures per source (the items' sum)."""
    out = []
    for index, source in enumerate(SOURCES):
        down = sum(i["sources"][index]["download_bytes"] for i in items)
        up = sum(i["sources"][index]["upload_bytes"] for i in items)
        out.append(figures(source, down, up))
    return out
