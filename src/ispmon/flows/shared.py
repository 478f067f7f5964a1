"""What one agent's flow collector learned of its exporters, shared through PostgreSQL with the
other agents' (issue 16 §6).

An exporter sends to whichever agent it is configured for and may fail over to another. NetFlow v9
and IPFIX data cannot be read without the exporter's templates (and, for relative times, its init
time; for counts, its sampling rate), which the exporter sends only now and then: every 16 packets
for softflowd, every 20 packets or 30 minutes for some routers. The agent it failed over to (or an
agent that restarted) would hold the data for two minutes and then drop it. So at each flush a
collector writes what it learned from the wire since the last one (`flow_domains`, only when
something changed), and reads the domains of the data it holds for want of a template; what it
reads is installed (never over what it learned itself) and the held data is decoded. Nothing is
done per packet: the decoder only keeps notes.

Records are not de-duplicated between agents: an exporter that sends the same export to two
agents at once (two destinations for redundancy) is counted twice. Sequence numbers cannot tell
such copies apart reliably (many exporters run one export process per destination, with counters
of its own), and claiming each datagram in PostgreSQL before aggregating it would cost a write per
packet. Such an exporter must have one ispmon agent as its destination at a time (a failover
destination, not a copy). So that a mistake is seen, each flush records which exporters this agent
heard (`flow_exporter_agents`), and an exporter heard by two agents without a break for six flush
intervals is logged once (`flow_exporter_heard_by_two_agents`), and again when it ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from ispmon.flows.decode import FlowDecoder, FlowRecord
from ispmon.store.flow_domains import ExporterAgentStore, FlowDomainStore

log = structlog.get_logger("ispmon.flows")


@dataclass
class DomainShare:
    decoder: FlowDecoder
    store: FlowDomainStore
    agent_id: str
    published: int = 0  # (exporter, domain) rows written
    installed: int = 0  # (exporter, domain) rows read whose templates decoded held data
    failures: int = 0
    agents: ExporterAgentStore | None = None  # None: no check for an exporter heard by two agents
    flush_every: float = 10.0
    overlaps: set[tuple[str, str]] = field(default_factory=set)  # (exporter, other agent) now
    _packets: dict[str, int] = field(default_factory=dict)  # per exporter, at the last sync

    def counters(self) -> dict[str, Any]:
        heard = [{"exporter": e, "agent": a} for e, a in sorted(self.overlaps)]
        return {
            "published": self.published,
            "installed": self.installed,
            "failures": self.failures,
            "heard_by_other_agents": heard,
        }

    async def sync(self, now: float | None = None) -> list[FlowRecord]:
        """Publish, then read what the held data waits for; the records it decodes. Never raises
        (a database that is away only delays the sharing: the notes are kept for the next try)."""
        now = time.time() if now is None else now
        notes = self.decoder.take_notes()
        try:
            if notes:
                await self.store.publish(notes, self.agent_id)
                self.published += len(notes)
            waiting = self.decoder.waiting()
            found = await self.store.read(waiting) if waiting else {}
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            for key, note in notes.items():  # learned again meanwhile wins over the older note
                mine = self.decoder.notes.setdefault(key, note)
                if mine is not note:
                    mine.templates = {**note.templates, **mine.templates}
                    mine.options = {**note.options, **mine.options}
            self.failures += 1
            if self.failures == 1 or self.failures % 60 == 0:
                log.warning("flow_domain_share_failed", error=str(exc), failures=self.failures)
            return []
        out: list[FlowRecord] = []
        for (exporter_id, domain), note in found.items():
            records = self.decoder.install(exporter_id, domain, note, now)
            if records:  # the held data it waited for is decoded: once per hand-over
                self.installed += 1
                log.info("flow_domain_installed", exporter=exporter_id, domain=domain,
                         templates=len(note.templates), records=len(records))  # fmt: skip
            out.extend(records)
        await self._overlaps()
        return out

    async def _overlaps(self) -> None:
        if self.agents is None:
            return
        packets: dict[str, int] = {}
        for state in self.decoder.exporters.values():
            packets[state.exporter_id] = packets.get(state.exporter_id, 0) + state.packets
        heard = sorted(e for e, n in packets.items() if n > self._packets.get(e, 0))
        self._packets = packets
        pairs: set[tuple[str, str]] = set()  # this agent heard none: no overlap of its own
        if heard:
            # A silence of 3 flushes restarts a hearing; 6 flushes of both without one is an overlap
            # (a fail-over leaves at most 3 of the old agent's, so it is never taken for one).
            gap, overlap = 3 * self.flush_every, 6 * self.flush_every
            try:
                pairs = set(await self.agents.heard(heard, self.agent_id, gap, overlap))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return  # the publish above logged the database's absence
        for exporter_id, other in sorted(pairs - self.overlaps):
            log.warning("flow_exporter_heard_by_two_agents", exporter=exporter_id, other_agent=other,
                        hint="an exporter sending to two agents at once is counted twice: "
                             "give it one ispmon agent as its destination (another as failover only)")  # fmt: skip
        for exporter_id, other in sorted(self.overlaps - pairs):
            log.info("flow_exporter_heard_by_two_agents_ended", exporter=exporter_id, other_agent=other)
        self.overlaps = pairs
