"""`Database`: the pool plus one repository per table group, passed to the services."""

from __future__ import annotations

import asyncpg

from ispmon.store.db import create_pool, migrate, ping
from ispmon.store.endpoints import EndpointRepo
from ispmon.store.history import HistoryRepo
from ispmon.store.maintenance import MaintenanceRepo
from ispmon.store.outages import OutageRepo


class Database:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.endpoints = EndpointRepo(pool)
        self.history = HistoryRepo(pool)
        self.outages = OutageRepo(pool)
        self.maintenance = MaintenanceRepo(pool)

    @classmethod
    async def connect(cls, dsn: str, *, apply_schema: bool = True, max_size: int = 10) -> Database:
        pool = await create_pool(dsn, max_size=max_size)
        if apply_schema:
            async with pool.acquire() as conn:
                await migrate(conn)
        return cls(pool)

    async def ping(self) -> bool:
        return await ping(self.pool)

    async def close(self) -> None:
        await self.pool.close()
