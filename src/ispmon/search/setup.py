"""``ispmon es-setup`` (and the feed's start): put the ILM policies, component and index templates.

Idempotent: PUT replaces each object with the same body. Order matters: policies and component
templates first, because an index template naming a missing component is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from elasticsearch import AsyncElasticsearch

from ispmon.search import templates


@dataclass
class SetupResult:
    server_version: str = ""
    policies: list[str] = field(default_factory=list)
    component_templates: list[str] = field(default_factory=list)
    index_templates: list[str] = field(default_factory=list)


def retention_overrides(days: int, per_family: dict[str, int] | None = None) -> dict[str, int]:
    """The ILM delete age by dated family: ELASTICSEARCH_RETENTION's entry for the family, else
    ELASTICSEARCH_RETENTION_DAYS (0: not set), else the family's default (no override)."""
    out = {key: days for key, fam in templates.FAMILIES.items() if fam.daily} if days > 0 else {}
    out.update(per_family or {})
    return out


async def es_setup(
    client: AsyncElasticsearch, prefix: str, retention_days: int = 0, retention: dict[str, int] | None = None
) -> SetupResult:
    result = SetupResult()
    info: Any = await client.info()
    result.server_version = str(info["version"]["number"])
    for name, body in templates.ilm_policies(prefix, retention_overrides(retention_days, retention)).items():
        await client.ilm.put_lifecycle(name=name, policy=body["policy"])
        result.policies.append(name)
    for name, body in templates.component_templates(prefix).items():
        await client.cluster.put_component_template(name=name, template=body["template"], meta=body["_meta"])
        result.component_templates.append(name)
    for name, body in templates.index_templates(prefix).items():
        await client.indices.put_index_template(
            name=name,
            index_patterns=body["index_patterns"],
            composed_of=body["composed_of"],
            priority=body["priority"],
            meta=body["_meta"],
        )
        result.index_templates.append(name)
    return result
