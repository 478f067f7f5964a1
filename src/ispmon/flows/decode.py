"""The adapter over the `netflume` parser: datagram bytes from a declared exporter in, plain
`FlowRecord` tuples out, with what a collector must remember per exporter (templates per
observation domain, data waiting for its template, sampling, sequence gaps, counters).

netflume is used (not `netflow`) because it keys templates by (exporter, domain, id), never raises
on a bad datagram, and tracks sampling options and sequence gaps itself; `netflow` keys templates
by id only and has not been released since 2023. Everything netflume-specific stays in this module.
"""

from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from netflume import Decoder, TemplateLearned
from netflume.parse import parse_v9_or_ipfix
from netflume.sampling import sampling_rate

# Data sets that arrive before their template are held this long, then dropped (counted).
PENDING_SECONDS = 120.0
PENDING_MAX = 256  # datagrams held per exporter
NOTES_MAX = 4096  # (exporter, domain) notes waiting to be shared with the other agents
FUTURE_SLACK = 300.0  # a flow ending more than this after arrival is implausible


class FlowRecord(NamedTuple):
    exporter_id: str
    end: float  # unix seconds: when the flow ended (the bucket time)
    in_if: int
    out_if: int
    src: str
    dst: str
    proto: int
    src_port: int
    dst_port: int
    bytes: int  # sampling applied
    packets: int


@dataclass
class ExporterState:
    """What one declared exporter has sent, for GET /flows/exporters."""

    exporter_id: str
    address: str
    sampling: int | None = None  # operator override; None: what the exporter says
    packets: int = 0
    flows: int = 0
    templates: int = 0
    sequence_gaps: int = 0
    malformed: int = 0
    pending_dropped: int = 0
    implausible_time: int = 0
    sampling_rate: int = 1
    # IPFIX flow*SysUpTime is relative to systemInitTimeMilliseconds (an options record), per domain
    init_ms: dict[int, int] = field(default_factory=dict)
    last_seen: float | None = None
    pending: deque[tuple[float, bytes]] = field(default_factory=deque)

    def counters(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "flows": self.flows,
            "templates": self.templates,
            "sequence_gaps": self.sequence_gaps,
            "malformed": self.malformed,
            "pending": len(self.pending),
            "pending_dropped": self.pending_dropped,
            "implausible_time": self.implausible_time,
            "sampling_rate": self.sampling_rate,
            "last_seen": self.last_seen,
        }


@dataclass
class DomainNote:
    """What is known of one (exporter, observation domain) beyond a datagram: shared between agents."""

    templates: dict[int, tuple[list[Any], bool]] = field(default_factory=dict)  # id -> (fields, options)
    options: dict[str, Any] = field(default_factory=dict)  # "init_ms": int, "sampling": options record


def _sets(data: bytes, ipfix: bool) -> tuple[int, list[tuple[int, int, int]]]:
    """(header length, [(set id, start, end)]) of a v9/IPFIX datagram."""
    off = 16 if ipfix else 20
    end = len(data)
    if ipfix and len(data) >= 4:
        end = min(end, struct.unpack_from("!H", data, 2)[0] or end)
    out = []
    while off + 4 <= end:
        set_id, set_len = struct.unpack_from("!HH", data, off)
        if set_len < 4:
            break
        out.append((set_id, off, min(off + set_len, end)))
        off += set_len
    return (16 if ipfix else 20), out


def _domain(data: bytes) -> int:
    """Observation domain (IPFIX) or source id (v9) of a datagram's header."""
    return struct.unpack_from("!I", data, 12 if struct.unpack_from("!H", data)[0] == 10 else 16)[0]


_ABSOLUTE_ENDS = (("flow_end_ms", 1000.0), ("flow_end_s", 1.0), ("flow_end_us", 1.0), ("flow_end_ns", 1.0))


def _end_time(get: Any, uptime: int | None, base: Any, init: int | None) -> float | None:
    """A flow's end: IPFIX absolute times, else last_switched against the datagram's uptime and
    export time (`uptime`, `base`) or, for IPFIX relative times, the exporter's init time."""
    for key, div in _ABSOLUTE_ENDS:
        val = get(key)
        if val:
            return float(val) / div
    last = get("last_switched")
    if last is None:
        return None
    if uptime is None:
        return None if init is None else (init + int(last)) / 1000.0
    if not base:
        return None
    # uptime and last are 32-bit ms counters: the difference modulo 2^32 survives a wrap.
    return float(base) - ((uptime - int(last)) % (1 << 32)) / 1000.0


class FlowDecoder:
    """One per collector: all exporters' state. `decode` never raises on what arrives."""

    def __init__(self, retention_seconds: float = 7 * 86400) -> None:
        self.decoder = Decoder()
        self.exporters: dict[str, ExporterState] = {}  # by source address
        self.unknown_packets = 0
        self.unknown_sources: dict[str, int] = {}
        self.retention_seconds = retention_seconds
        # What this agent learned from the wire since the last `take_notes`, for the other agents
        # (`ispmon.flows.shared`): per (exporter id, domain), templates by id as (fields, options),
        # and the options records that date relative times (init) and scale counts (sampling).
        self.notes: dict[tuple[str, int], DomainNote] = {}
        self._sampling: dict[tuple[str, int], dict[str, Any]] = {}  # the last sampling record noted

    def declare(self, exporter_id: str, address: str, sampling: int | None = None) -> None:
        old = self.exporters.get(address)
        state = ExporterState(exporter_id, address, sampling)
        if old is not None and old.exporter_id == exporter_id:
            old.sampling = sampling
            return
        self.exporters[address] = state

    def forget(self, exporter_id: str) -> None:
        for address, state in list(self.exporters.items()):
            if state.exporter_id == exporter_id:
                del self.exporters[address]

    def decode(self, data: bytes, address: str, now: float | None = None) -> list[FlowRecord]:
        now = time.time() if now is None else now
        state = self.exporters.get(address)
        if state is None:
            self.unknown_packets += 1
            if len(self.unknown_sources) < 1000 or address in self.unknown_sources:
                self.unknown_sources[address] = self.unknown_sources.get(address, 0) + 1
            return []
        state.packets += 1
        state.last_seen = now
        message = self.decoder.decode(data, address)
        learned = False
        for event in self.decoder.take_events():
            if isinstance(event, TemplateLearned):
                state.templates += 1
                learned = True
                note = self._note(state, event.domain)
                if note is not None:
                    note.templates[int(event.template_id)] = (event.fields, bool(event.options))
        if message is None:
            state.malformed += 1
            return []
        state.sequence_gaps += message.gap
        for opt in message.options:
            init = opt.get("system_init_time_ms")
            domain = int(message.header.get("domain") or 0)
            if init and len(state.init_ms) < 64:
                if state.init_ms.get(domain) != int(init) and (note := self._note(state, domain)):
                    note.options["init_ms"] = int(init)
                state.init_ms[domain] = int(init)
            if sampling_rate(opt) is not None:
                self._note_sampling(state, domain, opt)
        out = self._records(state, message.header, message.flows, message.sampling_rate, now)
        if message.version in (9, 10):
            self._hold_deferred(state, data, message.header, now)
        if learned and state.pending:
            out.extend(self._retry_pending(state, now))
        return out

    def _records(
        self, state: ExporterState, hdr: Any, flows: list[dict[str, Any]], rate: int, now: float
    ) -> list[FlowRecord]:
        rate = state.sampling or rate or 1
        state.sampling_rate = rate
        state.flows += len(flows)
        # What is the same for every record of the datagram is worked out once, here.
        exporter_id = state.exporter_id
        earliest, latest = now - self.retention_seconds, now + FUTURE_SLACK
        uptime = hdr.get("sys_uptime")
        base = hdr.get("unix_secs")
        init = None
        if uptime is None:  # IPFIX: relative times count from the exporter's init time
            init = state.init_ms.get(int(hdr.get("domain") or 0))
        else:
            uptime = int(uptime)
        implausible = 0
        out = []
        append = out.append
        for rec in flows:
            get = rec.get
            end = _end_time(get, uptime, base, init)
            if end is None or end > latest or end < earliest:
                implausible += 1
                end = now
            src = get("src_addr") or get("post_nat_src_addr")
            dst = get("dst_addr") or get("post_nat_dst_addr")
            if src is None or dst is None:
                continue
            octets = get("octets")
            if octets is None:
                octets = get("octets_total")
            packets = get("packets")
            if packets is None:
                packets = get("packets_total")
            in_if, out_if = get("in_if"), get("out_if")
            proto, sport, dport = get("proto"), get("src_port"), get("dst_port")
            append(
                FlowRecord(
                    exporter_id,
                    end,
                    0 if in_if is None else int(in_if),
                    0 if out_if is None else int(out_if),
                    src if type(src) is str else str(src),
                    dst if type(dst) is str else str(dst),
                    0 if proto is None else int(proto),
                    0 if sport is None else int(sport),
                    0 if dport is None else int(dport),
                    0 if octets is None else int(octets) * rate,
                    0 if packets is None else int(packets) * rate,
                )
            )
        state.implausible_time += implausible
        return out

    def _missing(self, state: ExporterState, data: bytes, hdr: Any) -> bytes | None:
        """The datagram cut down to its data sets whose template is unknown, or None if none is."""
        ipfix = hdr.get("version") == 10
        hlen, sets = _sets(data, ipfix)
        domain, key, templates = hdr.get("domain"), address_key(state), self.decoder.templates
        missing = [(a, b) for s, a, b in sets if s >= 256 and not templates.get(key, domain, s)[0]]
        if not missing:
            return None
        body = b"".join(data[a:b] for a, b in missing)
        head = bytearray(data[:hlen])
        if ipfix:
            struct.pack_into("!H", head, 2, hlen + len(body))
        return bytes(head) + body

    def _hold_deferred(self, state: ExporterState, data: bytes, hdr: Any, now: float) -> None:
        """Keep the data sets whose template is unknown (only those: the rest was counted)."""
        held = self._missing(state, data, hdr)
        if held is None:
            return
        if len(state.pending) >= PENDING_MAX:
            state.pending.popleft()
            state.pending_dropped += 1
        state.pending.append((now, held))

    def _retry_pending(self, state: ExporterState, now: float) -> list[FlowRecord]:
        out: list[FlowRecord] = []
        keep: deque[tuple[float, bytes]] = deque()
        key = address_key(state)
        for arrived, data in state.pending:
            if now - arrived > PENDING_SECONDS:
                state.pending_dropped += 1
                continue
            still = self._missing(
                state, data, {"version": struct.unpack_from("!H", data)[0], "domain": _domain(data)}
            )
            if still is not None and len(still) == len(data):
                keep.append((arrived, data))  # nothing new decodable in it yet
                continue
            hdr, flows, _opts = parse_v9_or_ipfix(data, key, self.decoder.templates)
            if hdr is not None and flows:
                rate = self.decoder.sampling_rate(key, hdr.get("domain"))
                out.extend(self._records(state, hdr, flows, rate, now))
            if still is not None:
                keep.append((arrived, still))
        state.pending = keep
        return out

    def _note(self, state: ExporterState, domain: Any) -> DomainNote | None:
        key = (state.exporter_id, int(domain or 0))
        note = self.notes.get(key)
        if note is None and len(self.notes) < NOTES_MAX:
            note = self.notes[key] = DomainNote()
        return note

    def _note_sampling(self, state: ExporterState, domain: int, opt: dict[str, Any]) -> None:
        # Noted when it changes only: softflowd repeats it every 16 datagrams.
        key = (state.exporter_id, domain)
        if self._sampling.get(key) != opt and len(self._sampling) < NOTES_MAX:
            note = self._note(state, domain)
            if note is not None:
                self._sampling[key] = opt
                note.options["sampling"] = opt

    def take_notes(self) -> dict[tuple[str, int], DomainNote]:
        notes, self.notes = self.notes, {}
        return notes

    def waiting(self) -> set[tuple[str, int]]:
        """(exporter id, domain) of the data held for want of a template."""
        return {(s.exporter_id, _domain(d)) for s in self.exporters.values() for _, d in s.pending}

    def install(self, exporter_id: str, domain: int, note: DomainNote, now: float) -> list[FlowRecord]:
        """What another agent learned of an exporter's domain: the templates this decoder lacks,
        the init time and sampling if it has none; then the held data decoded (its records)."""
        out: list[FlowRecord] = []
        for state in [s for s in self.exporters.values() if s.exporter_id == exporter_id]:
            key, templates = address_key(state), self.decoder.templates
            for tid, (fields, options) in note.templates.items():
                if templates.get(key, domain, tid)[0] is None:
                    templates.put(key, domain, tid, [tuple(f) for f in fields], options)
            templates.take_events()  # not learned from the wire: not shared again
            init = note.options.get("init_ms")
            if init and domain not in state.init_ms and len(state.init_ms) < 64:
                state.init_ms[domain] = int(init)
            watch = self.decoder.sampling
            sampling = note.options.get("sampling")
            if watch is not None and sampling and (key, domain) not in watch.rates:
                watch.note(key, domain, sampling)
                watch.take_events()
            if state.pending:
                out.extend(self._retry_pending(state, now))
        return out

    def expire(self, now: float) -> None:
        """Drop held data older than PENDING_SECONDS (counted)."""
        for state in self.exporters.values():
            while state.pending and now - state.pending[0][0] > PENDING_SECONDS:
                state.pending.popleft()
                state.pending_dropped += 1


def address_key(state: ExporterState) -> str:
    return state.address
