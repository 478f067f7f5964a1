"""Repository of `flow_domains`: per exporter and observation domain, the templates and options
records one agent's collector learned, read by another agent's collector that holds data it cannot
decode yet (an exporter failed over to it, or it restarted), so that data decodes at once."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from ispmon.flows.decode import DomainNote

# An exporter deleted meanwhile has no row to share for (nothing is written for it).
_PUBLISH = """
INSERT INTO flow_domains (exporter_id, domain, templates, options, agent_id)
SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM flow_exporters WHERE id = $1)
ON CONFLICT (exporter_id, domain) DO UPDATE
   SET templates = flow_domains.templates || EXCLUDED.templates,
       options = flow_domains.options || EXCLUDED.options,
       agent_id = EXCLUDED.agent_id, updated_at = now()
"""


def _plain(value: Any) -> Any:
    """An options record as JSON can carry it (a value netflume left as bytes or an address)."""
    return json.loads(json.dumps(value, default=str))


class FlowDomainStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def publish(self, notes: Mapping[tuple[str, int], DomainNote], agent_id: str) -> None:
        """Merge what was learned into the stored rows: a template id learned again replaces the
        stored one (an exporter that restarted with new layouts), the others are kept."""
        rows = [
            (
                exporter_id,
                domain,
                {
                    str(tid): [[list(f) for f in fields], options]
                    for tid, (fields, options) in n.templates.items()
                },
                _plain(n.options),
                agent_id,
            )
            for (exporter_id, domain), n in notes.items()
        ]
        if rows:
            await self.pool.executemany(_PUBLISH, rows)

    async def read(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], DomainNote]:
        keys = sorted(set(keys))
        if not keys:
            return {}
        rows = await self.pool.fetch(
            """SELECT d.exporter_id, d.domain, d.templates, d.options FROM flow_domains d
               JOIN unnest($1::text[], $2::bigint[]) AS k(exporter_id, domain)
                 ON k.exporter_id = d.exporter_id AND k.domain = d.domain""",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )
        return {
            (r["exporter_id"], int(r["domain"])): DomainNote(
                {int(tid): (fields, bool(options)) for tid, (fields, options) in r["templates"].items()},
                dict(r["options"]),
            )
            for r in rows
        }


class ExporterAgentStore:
    """`flow_exporter_agents`: which agents hear each exporter, and since when without a break."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def heard(
        self, exporter_ids: list[str], agent_id: str, gap: float, overlap: float
    ) -> list[tuple[str, str]]:
        """Record that this agent heard these exporters (a silence longer than `gap` seconds
        restarts `since`); the (exporter, other agent) pairs that both heard, without a break, for
        more than `overlap` seconds (the other one still within `gap`)."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO flow_exporter_agents (exporter_id, agent_id, since, last_heard)
                   SELECT e, $2, now(), now() FROM unnest($1::text[]) AS e
                    WHERE EXISTS (SELECT 1 FROM flow_exporters WHERE id = e)
                   ON CONFLICT (exporter_id, agent_id) DO UPDATE
                      SET since = CASE WHEN flow_exporter_agents.last_heard < now() - make_interval(secs => $3)
                                       THEN now() ELSE flow_exporter_agents.since END,
                          last_heard = now()""",
                exporter_ids, agent_id, gap,
            )  # fmt: skip
            rows = await conn.fetch(
                """SELECT o.exporter_id, o.agent_id FROM flow_exporter_agents o
                   JOIN flow_exporter_agents m ON m.exporter_id = o.exporter_id AND m.agent_id = $2
                   WHERE o.exporter_id = ANY($1::text[]) AND o.agent_id <> $2
                     AND o.last_heard > now() - make_interval(secs => $3)
                     AND o.since < now() - make_interval(secs => $4)
                     AND m.since < now() - make_interval(secs => $4)""",
                exporter_ids, agent_id, gap, overlap,
            )  # fmt: skip
        return sorted((r["exporter_id"], r["agent_id"]) for r in rows)
