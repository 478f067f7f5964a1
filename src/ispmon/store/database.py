"""`Database`: the pool plus one repository per table group, passed to the services; and connecting
to it at start, with retries while the server comes up."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from ispmon.availability.endpoints import redact_url
from ispmon.errors import StartupError
from ispmon.store.db import create_pool, migrate, ping
from ispmon.store.devices import DeviceRepo
from ispmon.store.endpoints import EndpointRepo
from ispmon.store.history import HistoryRepo
from ispmon.store.interfaces import InterfaceRepo
from ispmon.store.maintenance import MaintenanceRepo
from ispmon.store.outages import OutageRepo

log = structlog.get_logger(__name__)


class Database:
    def __init__(self, pool: asyncpg.Pool, dsn: str | None = None) -> None:
        self.pool = pool
        self.dsn = dsn  # for a connection of its own (the configuration listener)
        self.endpoints = EndpointRepo(pool)
        self.history = HistoryRepo(pool)
        self.outages = OutageRepo(pool)
        self.maintenance = MaintenanceRepo(pool)
        self.devices = DeviceRepo(pool)
        self.interfaces = InterfaceRepo(pool)

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        apply_schema: bool = True,
        max_size: int = 10,
        server_settings: dict[str, str] | None = None,
    ) -> Database:
        pool = await create_pool(dsn, max_size=max_size, server_settings=server_settings)
        if apply_schema:
            async with pool.acquire() as conn:
                await migrate(conn)
        return cls(pool, dsn)

    async def ping(self) -> bool:
        return await ping(self.pool)

    async def close(self) -> None:
        await self.pool.close()


class DatabaseUnavailable(StartupError):
    """The database could not be reached or started; the message says which and why (no secrets)."""


# Errors that waiting will not fix: fail at once instead of retrying until the deadline.
_PERMANENT = (
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.InvalidCatalogNameError,
)


async def connect_with_retry(
    dsn: str, timeout: float, server_settings: dict[str, str] | None = None
) -> Database:
    """Connect and migrate, retrying with backoff for up to `timeout` seconds: at boot the database
    may come up after ispmon. Raises DatabaseUnavailable with the URL's password redacted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.5
    where = redact_url(dsn)
    while True:
        try:
            return await Database.connect(dsn, server_settings=server_settings)
        except _PERMANENT as exc:
            raise DatabaseUnavailable(f"{where}: {exc}") from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if loop.time() + delay > deadline:
                raise DatabaseUnavailable(f"{where}: {exc} (gave up after {timeout:g} s)") from None
            log.warning("database_unavailable", database=where, error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
