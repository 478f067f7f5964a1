"""The feed in the daemon: built when ELASTICSEARCH_URL is set (else nothing changes), es-setup
before the first round (retried each round while Elasticsearch is away, never blocking start)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from ispmon.search.bulk import Deliverer, Unavailable
from ispmon.search.client import ClientConfig, bulk_sender, classify, make_client
from ispmon.search.documents import Observer
from ispmon.search.setup import es_setup
from ispmon.search.sync import SearchSync

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch

    from ispmon.settings import Settings

log = structlog.get_logger("ispmon.search")


def client_config(settings: Settings) -> ClientConfig:
    assert settings.elasticsearch_url
    return ClientConfig(
        url=settings.elasticsearch_url,
        api_key=settings.elasticsearch_api_key,
        username=settings.elasticsearch_username,
        password=settings.elasticsearch_password,
        ca_file=settings.elasticsearch_ca_file,
        timeout=settings.elasticsearch_timeout,
    )


class SearchFeed:
    """The client, the sync and its task."""

    def __init__(self, client: AsyncElasticsearch, sync: SearchSync, settings: Settings) -> None:
        self.client = client
        self.sync = sync
        self.settings = settings
        self.setup_done = False
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def build(cls, pool: asyncpg.Pool, settings: Settings) -> SearchFeed:
        client = make_client(client_config(settings))
        deliverer = Deliverer(bulk_sender(client), classify=classify)
        observer = Observer(socket.gethostname(), settings.elasticsearch_observer_location)
        sync = SearchSync(
            pool,
            deliverer,
            settings.elasticsearch_index_prefix,
            observer,
            interval=settings.elasticsearch_sync_interval,
            batch_size=settings.elasticsearch_batch_size,
        )
        return cls(client, sync, settings)

    async def setup(self) -> bool:
        try:
            result = await es_setup(
                self.client,
                self.settings.elasticsearch_index_prefix,
                self.settings.elasticsearch_retention_days,
            )
        except Exception as exc:
            err = classify(exc)
            kind = getattr(err, "kind", "error")
            self.sync._set_failing(kind, f"es-setup: {err}")
            return False
        self.sync.server_version = result.server_version
        log.info(
            "search_setup_done",
            server_version=result.server_version,
            templates=len(result.index_templates),
            policies=len(result.policies),
        )
        self.setup_done = True
        return True

    async def _run(self) -> None:
        await self.sync.load()
        delay = 0.5
        while not self.setup_done:
            if await self.setup():
                break
            await asyncio.sleep(min(delay, self.sync.interval))
            delay *= 2
        await self.sync.run()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="search_sync")

    def status(self) -> dict[str, Any]:
        out = self.sync.status()
        out["server_version"] = self.sync.server_version
        out["setup_done"] = self.setup_done
        return out

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.client.close()


__all__ = ["SearchFeed", "Unavailable", "client_config"]
