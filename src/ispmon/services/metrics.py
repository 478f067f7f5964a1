"""MetricsService: the seed's entry point for metrics measured elsewhere, and the latency view.

    svc = MetricsService()            # DATABASE_URL, or the running daemon's embedded PostgreSQL
    await svc.record_network_metric({"interface": "eth0", "bandwidth_usage": 75.5, "packet_loss": 0.2, "latency": 15.3})
    await svc.record_system_metric({"cpu_usage": 42.0, "memory_usage": 61.5, "disk_usage": 70.1, "load_average": 0.8})

`MetricsService(db)` uses a `Database` the caller owns; without one the service opens its own on
first use (and `close()` / ``async with`` closes it). A record call writes its row at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ispmon.network.latency import MAX_STEPS, latency_steps, sample_from_row, step_count
from ispmon.network.metrics import NetworkMetric, SystemMetric
from ispmon.services.errors import InvalidInput, NotFoundError, ServiceError
from ispmon.store.metrics import MetricsRepo

if TYPE_CHECKING:
    from ispmon.store.database import Database

DEFAULT_LATENCY_WINDOW = timedelta(hours=3)
DEFAULT_STEP = 300.0  # Smokeping's default step


class MetricsService:
    def __init__(self, db: Database | None = None) -> None:
        self._db = db
        self._owned = db is None
        self._repo: MetricsRepo | None = None

    async def _database(self) -> Database:
        if self._db is None:
            self._db = await _open_default_database()
        return self._db

    async def _metrics(self) -> MetricsRepo:
        if self._repo is None:
            self._repo = MetricsRepo((await self._database()).pool)
        return self._repo

    async def close(self) -> None:
        """Close the database this service opened itself (one passed in is the caller's)."""
        if self._owned and self._db is not None:
            await self._db.close()
            self._db, self._repo = None, None

    async def __aenter__(self) -> MetricsService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes -------------------------------------------------------------------------------------
    async def record_network_metric(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate and store one interface sample; returns the stored row (with its id)."""
        metric = _validate(NetworkMetric, data)
        return await (await self._metrics()).insert("network_metrics", metric.row(datetime.now(UTC)))

    async def record_system_metric(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate and store one host sample; returns the stored row (with its id)."""
        metric = _validate(SystemMetric, data)
        return await (await self._metrics()).insert("system_metrics", metric.row(datetime.now(UTC)))

    # -- reads --------------------------------------------------------------------------------------
    async def list_network_metrics(
        self,
        *,
        interface: str | None = None,
        host: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `after` is the (recorded_at, id) of the last sample of the previous page."""
        filters = {"interface": interface, "host": host, "since": since, "until": until}
        rows = await (await self._metrics()).list(
            "network_metrics", filters, limit=limit, offset=offset, after=after
        )
        return [dict(r) for r in rows]

    async def list_system_metrics(
        self,
        *,
        host: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        after: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; `after` is the (recorded_at, id) of the last sample of the previous page."""
        filters = {"host": host, "since": since, "until": until}
        rows = await (await self._metrics()).list(
            "system_metrics", filters, limit=limit, offset=offset, after=after
        )
        return [dict(r) for r in rows]

    async def latency(
        self,
        endpoint_id: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        step: float | None = None,
    ) -> dict[str, Any]:
        """Per step of [since, until): median RTT, loss % and percentiles over every packet.

        Defaults: the last 3 hours in 5-minute steps. At most MAX_STEPS steps (InvalidInput naming
        `step` otherwise)."""
        until = until or datetime.now(UTC)
        since = since or until - DEFAULT_LATENCY_WINDOW
        step = DEFAULT_STEP if step is None else step
        if until <= since:
            raise ServiceError("must be after since", field="until")
        if step < 1:
            # A smaller step makes the step count overflow (5e-324 s) long before MAX_STEPS is checked.
            raise ServiceError("must be at least 1 second", field="step")
        count = step_count(since, until, step)
        if count > MAX_STEPS:
            raise ServiceError(
                f"gives {count} steps over this window; at most {MAX_STEPS} (use a step of at least "
                f"{(until - since).total_seconds() / MAX_STEPS:g} s, or a shorter window)",
                field="step",
            )
        db = await self._database()
        if await db.endpoints.get(endpoint_id) is None:
            raise NotFoundError("endpoint", endpoint_id)
        rows = await (await self._metrics()).check_rows(endpoint_id, since, until)
        steps = latency_steps((sample_from_row(r) for r in rows), since, until, step)
        return {"endpoint_id": endpoint_id, "since": since, "until": until, "step": step, "steps": steps}


def _validate(model: type[NetworkMetric] | type[SystemMetric], data: Any) -> Any:
    if not isinstance(data, dict):
        raise InvalidInput([{"field": "(body)", "message": "must be an object of metric names and values"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


async def _open_default_database() -> Database:
    """DATABASE_URL, or the embedded server of the state directory while it runs (`ispmon db-url`)."""
    from ispmon.config import Settings
    from ispmon.store.database import Database
    from ispmon.store.embedded import EmbeddedPostgres

    settings = Settings()
    dsn = settings.database_url
    if not dsn:
        embedded = EmbeddedPostgres(settings.ispmon_state_dir)
        dsn = embedded.running_uri()
        if dsn is None:
            raise ServiceError(
                f"no database: DATABASE_URL is unset and the embedded PostgreSQL in {embedded.pgdata} is "
                "not running (start ispmon, set DATABASE_URL, or pass MetricsService(db))",
                field="DATABASE_URL",
            )
    return await Database.connect(dsn, max_size=2)
