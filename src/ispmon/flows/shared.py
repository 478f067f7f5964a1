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
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
import structlog

from ispmon.flows.decode import FlowDecoder, FlowRecord
from ispmon.store.flow_domains import FlowDomainStore

log = structlog.get_logger("ispmon.flows")


@dataclass
class DomainShare:
    decoder: FlowDecoder
    store: FlowDomainStore
    agent_id: str
    published: int = 0  # (exporter, domain) rows written
    installed: int = 0  # (exporter, domain) rows read whose templates decoded held data
    failures: int = 0

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
        return out
