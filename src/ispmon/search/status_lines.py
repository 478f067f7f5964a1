"""status_history rows -> ``_bulk`` NDJSON lines, encoded straight to bytes (the feed's hot path).

At 2,000 checks/s the status family is nearly all of the feed's documents. Building a nested dict
per row (`documents.status_doc`) and serialising it was most of the feed's CPU, and its containers
kept the garbage collector busy. Here what every check of one endpoint shares (observer, service,
tags, the monitor's id/name/type, URL parts, the target's address, and per status the status
fields and summary) is encoded once, and only the row's own values are encoded per row and
spliced in. The bytes are those of ``orjson.dumps`` of `status_doc`'s dict with ``event.ingested``
added, key for key and in the same order (tests/unit/search/test_status_lines.py and
tests/integration/search/test_status_lines_pg.py compare them for varied rows).

The query (`sources.STATUS`) hands over ``details->'status_code'`` as text when it is a JSON
number or boolean, instead of the whole ``details`` jsonb (ICMP checks keep per-packet RTTs
there), so no row's jsonb is decoded here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ispmon.search import templates
from ispmon.search.bulk import Item
from ispmon.search.documents import (
    _SERVICE,
    _UPTIME_STATUS,
    Observer,
    _clean,
    _endpoint_parts,
    _observer_doc,
)

_dumps = orjson.dumps
# What json.loads turns into an int: the old builder kept `status_code` only when it was one (a
# JSON boolean too, bool being an int); PostgreSQL prints a jsonb number in this form when integral.
_INTEGER = re.compile(rb"-?[0-9]+")


# A check with a response time and no error: the same fields, in the same order, as the parts below.
_ANSWERED = (
    b'%b%b"}}\n%b%b"}%b,"@timestamp":%b%b%b,"attempts":%b,"response_time":%b'
    b'%b%b","timespan":{"gte":%b,"lt":%b},"duration":{"us":%d}%b%b%b'
)


@functools.lru_cache(maxsize=1024)
def _http(code: str) -> bytes:
    """The ``http`` object for a status code's text, or nothing where the dict builder had none."""
    raw = code.encode()
    if raw in (b"true", b"false") or _INTEGER.fullmatch(raw):
        return b',"http":{"response":{"status_code":' + raw + b"}}"
    return b""


@functools.lru_cache(maxsize=16)
def _head(observer: Observer) -> bytes:
    """Everything before the row id: the observer, the service and the start of ``ispmon``."""
    return (
        b'{"observer":'
        + _dumps(_observer_doc(observer))
        + b',"service":'
        + _dumps(_SERVICE)
        + b',"ispmon":{"family":"service_status","row_id":"'
    )


@dataclass(slots=True)
class _Endpoint:
    """One endpoint's shared fragments; the per-status ones are made on first use."""

    endpoint_id: str
    name: str
    protocol: str | None
    criticality: str | None
    tags: bytes  # ',"tags":[...]' or nothing
    service: bytes  # ',"service_id":..,"service_name":..,"service_type":..'
    ip: bytes  # ',"ip":..' inside the monitor, or nothing
    url: bytes  # ',"url":{..}' after the summary, or nothing
    by_status: dict[str, tuple[bytes, bytes, bytes]] = field(default_factory=dict)

    def status_parts(self, status: str) -> tuple[bytes, bytes, bytes]:
        parts = self.by_status.get(status)
        if parts is None:
            mstatus = _UPTIME_STATUS.get(status, status)
            up = 1 if _UPTIME_STATUS.get(status) == "up" else 0
            down = 1 if status == "down" else 0
            # service fields + status, up to checked_at's value
            first = self.service + b',"status":' + _dumps(status) + b',"checked_at":'
            # criticality, the monitor up to the check group's row id
            crit = b',"criticality":' + _dumps(self.criticality) if self.criticality is not None else b""
            monitor = (
                crit
                + b',"monitor":{"id":'
                + _dumps(self.endpoint_id)
                + b',"name":'
                + _dumps(self.name)
                + b',"type":'
                + _dumps(self.protocol)
                + b',"status":'
                + _dumps(mstatus)
                + b',"check_group":'
                + _dumps(self.endpoint_id)[:-1]  # the string stays open: "<id>-<row id>"
                + b"-"
            )
            last = self.ip + b"}" + b',"summary":' + _dumps({"up": up, "down": down}) + self.url
            parts = self.by_status[status] = (first, monitor, last)
        return parts


@functools.lru_cache(maxsize=65536)
def _endpoint(
    endpoint_id: str,
    name: str | None,
    protocol: str | None,
    url: str | None,
    criticality: str | None,
    tags: tuple[str, ...] | None,
) -> _Endpoint:
    shown, url_doc, host_ip = _endpoint_parts(endpoint_id, name, protocol, url, criticality)
    return _Endpoint(
        endpoint_id=endpoint_id,
        name=shown,
        protocol=protocol,
        criticality=criticality,
        tags=b',"tags":' + _dumps(list(tags)) if tags else b"",
        service=b',"service_id":'
        + _dumps(endpoint_id)
        + b',"service_name":'
        + _dumps(shown)
        + b',"service_type":'
        + _dumps(protocol),
        ip=b',"ip":' + _dumps(host_ip) if host_ip else b"",
        url=b',"url":' + _dumps(url_doc) if url_doc is not None else b"",
    )


def status_items(
    rows: Sequence[Mapping[str, Any]], observer: Observer, prefix: str, now: datetime
) -> list[Item]:
    """The rows' `Item`s, each line ``action\\n document\\n`` as `Item.make` would write it."""
    head = _head(observer)
    end = b',"event":{"ingested":' + _dumps(now.isoformat()) + b"}}\n"
    index_of: dict[date, tuple[str, bytes]] = {}
    items = []
    append = items.append
    for row in rows:
        at: datetime = row["checked_at"]
        if at.tzinfo is not UTC:
            at = at.astimezone(UTC)
        day = at.date()
        index = index_of.get(day)
        if index is None:  # the row's own UTC day; the action line up to the document id
            name = templates.index_name(prefix, "service_status", at)
            index = index_of[day] = (name, b'{"index":{"_index":' + _dumps(name) + b',"_id":"')
        tags = row["tags"]
        ep = _endpoint(
            row["endpoint_id"],
            row["name"],
            row["protocol"],
            row["url"],
            row["criticality"],
            tuple(tags) if tags else None,
        )
        status = row["status"]
        first, monitor, last = ep.status_parts(status)
        doc_id = str(row["id"])
        rid = doc_id.encode()
        # orjson writes a UTC datetime as isoformat() does, quoted, in a tenth of the time.
        when = _dumps(at)
        rt = row["response_time_ms"]
        error = row["error"]
        kind = row["error_kind"]
        code = row["status_code"]
        if rt is not None and error is None and kind is None:
            # Nearly every check: one format, a fifth cheaper than the list and join below.
            line = _ANSWERED % (
                index[1], rid, head, rid, ep.tags, when, first, when, _dumps(row["attempts"]), _dumps(rt),
                monitor, rid, when, when, int(rt * 1000), last, b"" if code is None else _http(code), end,
            )  # fmt: skip
            append(Item(index[0], doc_id, line))
            continue
        parts = [
            index[1],
            rid,
            b'"}}\n',
            head,
            rid,
            b'"}',
            ep.tags,
            b',"@timestamp":',
            when,
            first,
            when,
            b',"attempts":',
            _dumps(row["attempts"]),
        ]
        if rt is not None:
            parts += (b',"response_time":', _dumps(rt))
        if error is not None:
            parts += (b',"error_message":', _dumps(error))
        if kind is not None:
            parts += (b',"error_kind":', _dumps(kind))
        parts += (monitor, rid, b'","timespan":{"gte":', when, b',"lt":', when, b"}")
        if rt is not None:
            parts.append(b',"duration":{"us":%d}' % int(rt * 1000))
        parts.append(last)
        if error or kind:
            parts += (b',"error":', _dumps(_clean({"message": error, "type": kind})))
        if code is not None:
            parts.append(_http(code))
        parts.append(end)
        append(Item(index[0], doc_id, b"".join(parts)))
    return items
