"""The feed in the daemon: built when ELASTICSEARCH_URL is set (else nothing changes), es-setup
before the first round (retried each round while Elasticsearch is away, never blocking start)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from aiohttp import web

from ispmon.search.bulk import Deliverer, Unavailable
from ispmon.search.client import ClientConfig, bulk_sender, classify, make_client
from ispmon.search.documents import Observer
from ispmon.search.logs import LogCapture, LogWriter, install, uninstall
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

    def __init__(
        self, client: AsyncElasticsearch, sync: SearchSync, settings: Settings, logs: LogWriter | None = None
    ) -> None:
        self.client = client
        self.sync = sync
        self.settings = settings
        self.logs = logs
        self.setup_done = False
        self.tasks: list[asyncio.Task[None]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self._logs_task: asyncio.Task[None] | None = None

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
        capture: LogCapture = install(settings.elasticsearch_log_queue)
        logs = LogWriter(pool, capture, settings.cleanup_retention_days)
        return cls(client, sync, settings, logs)

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
        while True:  # the database may be away at start too: the feed waits, the daemon runs
            try:
                await self.sync.load()
                break
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                self.sync._set_failing("database", f"PostgreSQL: {type(exc).__name__}")
                await asyncio.sleep(min(5.0, self.sync.interval))
        delay = 0.5
        while not self.setup_done:
            if await self.setup():
                break
            await asyncio.sleep(min(delay, self.sync.interval))
            delay *= 2
        await self.sync.run()

    def attach(self, app: web.Application) -> None:
        """Make the feed reachable by the API's /search routes and /readyz (before the app starts)."""
        app[SEARCH_FEED] = self

    def start(self) -> None:
        self.start_logs()
        self.start_sync()

    def start_logs(self) -> None:
        """This agent's log lines into the system-logs table (every agent, whoever syncs)."""
        if self.logs is not None and self._logs_task is None:
            self._logs_task = asyncio.create_task(self.logs.run(), name="search_logs")
            self.tasks.append(self._logs_task)

    def start_sync(self) -> None:
        """The sync (on one agent at a time): cursors read from the database afresh each start."""
        if self._sync_task is None:
            self._sync_task = asyncio.create_task(self._run(), name="search_sync")
            self.tasks.append(self._sync_task)

    async def stop_sync(self) -> None:
        """Cancel the sync; a round cut short resends from the stored cursor (same document ids)."""
        task, self._sync_task = self._sync_task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self.tasks.remove(task)

    def status(self) -> dict[str, Any]:
        out = self.sync.status()
        out["server_version"] = self.sync.server_version
        out["setup_done"] = self.setup_done
        # False on an agent that does not hold the singleton lease: another agent feeds the cluster.
        out["syncing_here"] = self._sync_task is not None
        out["logs"] = self.logs.stats() if self.logs is not None else None
        return out

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.logs is not None:
            uninstall(self.logs.capture)
            with contextlib.suppress(Exception):
                await self.logs.flush()  # the last lines (ispmon_stopping) reach the table
        await self.client.close()


# Where the API finds the feed (set by the daemon when ELASTICSEARCH_URL is set; absent otherwise).
SEARCH_FEED: web.AppKey[SearchFeed] = web.AppKey("ispmon_search_feed")

__all__ = ["SEARCH_FEED", "SearchFeed", "Unavailable", "client_config"]
