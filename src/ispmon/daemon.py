"""The daemon: wires the components, in order, and takes them down in reverse.

Start: database (embedded when DATABASE_URL is unset) -> schema -> config sync -> restore state
(open outages stay open) -> alerting (channels, rules, open alerts) -> writers -> RADIUS accounting
listener -> flow collector -> monitor -> API -> the singleton lease (on gaining it: outbox sender,
paging, ES sync, housekeeping, reports, SNMP polling, quota pass: `ispmon.agents.singletons`) ->
READY=1 to systemd.
Stop (SIGTERM/SIGINT): STOPPING=1 -> API -> singleton work stopped, lease released -> accounting
listener -> scheduler and checks in flight -> alert engine and sender -> writers flush -> probe
resources -> pool -> embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from pydantic import ValidationError

from ispmon import __version__, sdnotify
from ispmon.agents.config_apply import DaemonTargets, reconcile_endpoints
from ispmon.agents.config_sync import ConfigSync, announce_reload, file_digest
from ispmon.agents.follow import follow_others
from ispmon.agents.registry import AgentRegistry
from ispmon.agents.singletons import Leadership, SingletonWork
from ispmon.agents.wiring import agent_stats
from ispmon.alerts.wiring import Alerting
from ispmon.availability.compact import CompactSpec
from ispmon.availability.endpoints import build_endpoint, redact_url
from ispmon.availability.monitor import Monitor
from ispmon.availability.outages import OpenOutage, OutagePolicy
from ispmon.config import LoadedConfig, Settings, load_config
from ispmon.errors import ConfigError, StartupError
from ispmon.fdlimit import api_connection_cap, open_descriptors, raise_nofile_limit
from ispmon.flows.wiring import FlowCollection
from ispmon.memory import release_free_memory
from ispmon.models import Status
from ispmon.network.metrics_system import record_system_metrics
from ispmon.network.runner import NetworkPolling
from ispmon.probes.base import ProbeContext
from ispmon.search.wiring import SearchFeed
from ispmon.services.context import AppServices
from ispmon.services.errors import ServiceError
from ispmon.services.maintenance import MaintenanceService
from ispmon.store.database import Database, DatabaseUnavailable, connect_with_retry
from ispmon.store.db import ensure_partitions
from ispmon.store.embedded import EmbeddedPostgres
from ispmon.store.flow_records import FlowRecordStore
from ispmon.store.history import HISTORY_COLUMNS
from ispmon.store.outages import EVENT_COLUMNS
from ispmon.store.retention import drop_old_flow_aggregates, drop_old_interface_metrics, drop_old_partitions
from ispmon.store.writer import BatchWriter
from ispmon.usage.wiring import Accounting
from ispmon.validation import error_list, format_errors

log = structlog.get_logger("ispmon.daemon")

HOUSEKEEPING_INTERVAL = 3600.0


async def open_database(settings: Settings) -> tuple[Database, EmbeddedPostgres | None]:
    """Connect (and migrate). Starts the embedded server when DATABASE_URL is unset."""
    embedded = None
    dsn = settings.database_url
    if not dsn:
        embedded = EmbeddedPostgres(settings.ispmon_state_dir)
        try:
            dsn = await asyncio.to_thread(embedded.start)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {embedded.pgdata} did not start ({exc}); its log is {embedded.pgdata}/log"
            ) from None
    try:
        # The agent id on every connection: the configuration tables' triggers record it as the
        # origin of a change, so this agent can tell its own changes from the others'.
        db = await connect_with_retry(
            dsn,
            settings.ispmon_db_connect_timeout,
            server_settings={"ispmon.agent_id": settings.ispmon_agent_id},
        )
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    # The URL, so an operator can reach the same database (`ispmon db-url` prints it); never its
    # password. The embedded server's has none: it listens on a unix socket only.
    log.info(
        "database_connected",
        database="embedded" if embedded is not None else "external",
        url=redact_url(dsn),
        pgdata=str(embedded.pgdata) if embedded is not None else None,
    )
    return db, embedded


async def sync_config(db: Database, config: LoadedConfig) -> set[str]:
    """Endpoints and windows declared as code replace their previous 'config' rows. Returns the ids
    of endpoints whose target the file changed (their open outage is closed, their status unknown).

    Only when a config file is given: starting once without --config must not delete what the
    file declared (the file's rows stay, read-only through the API, until the file says otherwise).
    """
    if config.path is None:
        return set()
    result = await db.endpoints.sync_config(config.endpoints)
    for endpoint_id in result["taken_over"]:
        # Once: afterwards the row is the file's, and the next sync finds nothing to take over.
        log.warning(
            "config_takes_over_endpoint",
            endpoint_id=endpoint_id,
            path=str(config.path),
            effect="created through the API; now defined by the config file, and read-only through the API",
        )
    removed_windows = await db.maintenance.sync_config(
        [(w.id, w.name, w.model_dump(mode="json")) for w in config.maintenance]
    )
    log.info(
        "config_synced",
        path=str(config.path),
        endpoints=result["synced"],
        endpoints_removed=result["removed"],
        maintenance_windows=len(config.maintenance),
        maintenance_removed=removed_windows,
        endpoints_retargeted=result["retargeted"] or None,
    )
    return set(result["retargeted"])


async def load_specs(db: Database, settings: Settings) -> list[CompactSpec]:
    specs: list[CompactSpec] = []
    for row in await db.endpoints.all():
        try:
            # Compacted one at a time: 10,000 validated models alive at once would raise the
            # process's RSS for good (freed pymalloc memory is rarely given back to the system).
            specs.append(CompactSpec(build_endpoint(row["spec"], settings.endpoint_defaults, stored=True)))
        except ValidationError as exc:
            # A row written by an older version that no longer validates: keep running the others.
            # Not str(exc): pydantic quotes the input there, headers and body included.
            log.error(
                "endpoint_invalid_in_database", endpoint_id=row["id"], error=format_errors(error_list(exc))
            )
    return specs


async def restore_monitor(
    db: Database,
    monitor: Monitor,
    settings: Settings,
    retargeted: set[str] | frozenset[str] = frozenset(),
    location: str | None = None,
) -> None:
    """Load endpoints with their open outages and last statuses, so a restart re-alerts nothing.

    `retargeted` endpoints start from unknown: their last status was about their old target."""
    specs = await load_specs(db, settings)
    open_outages = {r["endpoint_id"]: OpenOutage.from_record(r) for r in await db.outages.open_outages()}
    latest = await db.history.latest([s.id for s in specs if s.id not in retargeted], location)
    last = {k: Status(v["status"]) for k, v in latest.items() if v["status"] in Status.__members__.values()}
    monitor.load(specs, open_outages, last)
    windows = await MaintenanceService(db).windows()
    monitor.set_maintenance(windows)
    log.info("state_restored", endpoints=len(specs), open_outages=len(open_outages), maintenance=len(windows))


# Settings a reload cannot change in a running process (the listener, the database, the logger).
RESTART_ONLY = (
    "database_url",
    "api_host",
    "api_port",
    "api_max_connections",
    "api_header_timeout",
    "api_keepalive_timeout",
    "ispmon_fd_reserve",
    "ispmon_state_dir",
    "ispmon_api_token",
    "ispmon_api_read_token",
    "ispmon_log_level",
    "ispmon_log_format",
    "ispmon_max_concurrency",
    "ispmon_write_queue_size",
    "ispmon_agent_id",
    "ispmon_location",
    "agent_dead_after",
)


async def reload_config(
    path: Path | None,
    db: Database,
    monitor: Monitor,
    current: Settings,
    alerting: Alerting | None = None,
    accounting: Accounting | None = None,
    config_sync: ConfigSync | None = None,
) -> bool:
    """SIGHUP: re-read the config file and apply its endpoints, maintenance windows, outage policy,
    alerting, customers and NAS clients.

    An invalid file changes nothing (the daemon keeps its running configuration and says why).
    """
    sdnotify.notify("RELOADING=1")
    try:
        try:
            config = load_config(path)
        except ConfigError as exc:
            log.error("config_reload_failed", error=str(exc))
            return False
        settings = config.settings
        if accounting is not None:
            # First: the customers' sync is the one the database can refuse (an identity owned by
            # an API customer), all or nothing, so a refused file has changed nothing yet.
            try:
                await accounting.reload(db, config)
            except ServiceError as exc:
                log.error("config_reload_failed", error=f"{config.path}: {exc.field}: {exc.message}")
                return False
        await sync_config(db, config)
        specs = await load_specs(db, settings)
        await reconcile_endpoints(monitor, specs)
        monitor.policy = OutagePolicy.from_settings(settings)
        monitor.set_maintenance(await MaintenanceService(db).windows())
        if alerting is not None:
            await alerting.reload(config)
        if config_sync is not None:
            # The other agents re-read everything the file wrote (see agents/config_sync.py).
            config_sync.file_digest = file_digest(config.path)
            try:
                await announce_reload(db.pool, config_sync.file_digest)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The rows' own changes were announced; only the full re-read is missed.
                log.warning("config_reload_not_announced", error=str(exc)[:300])
        needs_restart = [k.upper() for k in RESTART_ONLY if getattr(settings, k) != getattr(current, k)]
        freeze_long_lived()
        log.info("config_reloaded", endpoints=len(specs), restart_needed_for=needs_restart or None)
        return True
    finally:
        sdnotify.ready()


def freeze_long_lived() -> None:
    """Move what exists now (endpoint definitions, state, modules) out of the cyclic collector's
    reach. A full collection walks every tracked object: with thousands of endpoints loaded it
    paused the loop for 54-60 ms (gc.callbacks, 2,000 checks/s), delaying dispatch and inflating
    the response times of checks in flight; after freezing, the full collections left in the same
    run took 9-27 ms. Frozen objects are still freed by reference counting."""
    gc.collect()
    gc.freeze()
    release_free_memory()  # what the load freed goes back to the system, not just to malloc


async def housekeeping(db: Database, settings: Settings) -> None:
    """Hourly: make tomorrow's partitions; drop those past their retention (CLEANUP_RETENTION_DAYS,
    INTERFACE_METRICS_RETENTION_DAYS, FLOW_RETENTION_DAYS, FLOW_RAW_HOURS)."""
    while True:
        try:
            async with db.pool.acquire() as conn:
                await ensure_partitions(conn)
                await drop_old_partitions(conn, settings.cleanup_retention_days)
                await drop_old_interface_metrics(conn, settings.interface_metrics_retention_days)
                await drop_old_flow_aggregates(conn, settings.flow_retention_days)
            await FlowRecordStore(db.pool).drop_old(settings.flow_raw_hours)
        except Exception as exc:
            log.error("housekeeping_failed", error=str(exc))
        await asyncio.sleep(HOUSEKEEPING_INTERVAL)


STATS_INTERVAL = 300.0
EMBEDDED_CHECK_INTERVAL = 5.0


async def supervise_embedded(embedded: EmbeddedPostgres, died: asyncio.Event, stop: asyncio.Event) -> None:
    """The embedded PostgreSQL is ispmon's own child in spirit: if it dies, ispmon cannot repair it
    in place (its socket may move under the pool), so it says so and exits 1 for its supervisor
    (systemd: Restart=on-failure) to restart both. Without this the daemon would run on, probing
    and dropping every result, with only /readyz saying so."""
    while True:
        await asyncio.sleep(EMBEDDED_CHECK_INTERVAL)
        if not embedded.alive():
            log.error(
                "embedded_postgres_died",
                pgdata=str(embedded.pgdata),
                log_file=str(embedded.pgdata / "log"),
                action="exiting with status 1 so the supervisor restarts ispmon and its database",
            )
            died.set()
            stop.set()
            return


async def log_stats(monitor: Monitor, interval: float = STATS_INTERVAL) -> None:
    """Every `interval` seconds, one INFO line with the monitor's own health (not per check)."""
    previous = monitor.scheduler.stats.completed
    while True:
        await asyncio.sleep(interval)
        stats = monitor.stats()
        done = stats["scheduler"]["completed"] - previous
        previous = stats["scheduler"]["completed"]
        log.info(
            "monitor_stats",
            endpoints=stats["endpoints"],
            checks_per_s=round(done / interval, 2),
            inflight=stats["scheduler"]["inflight"],
            lag_p99_ms=round(stats["scheduler"]["lag_p99_ms"], 3),
            skipped_overrun=stats["scheduler"]["skipped_overrun"],
            skipped_late=stats["scheduler"]["skipped_late"],
            write_backlog=stats["writer"]["backlog"],
            write_dropped=stats["writer"]["dropped"],
        )


async def _reloader(
    requested: asyncio.Event,
    path: Path | None,
    db: Database,
    monitor: Monitor,
    settings: Settings,
    alerting: Alerting,
    accounting: Accounting | None = None,
    config_sync: ConfigSync | None = None,
) -> None:
    """One reload at a time; SIGHUPs that arrive during a reload fold into one more."""
    while True:
        await requested.wait()
        requested.clear()
        try:
            await reload_config(path, db, monitor, settings, alerting, accounting, config_sync)
        except Exception:
            log.error("config_reload_crashed", exc_info=True)


def api_connection_limit(settings: Settings, soft_limit: int) -> int:
    """API_MAX_CONNECTIONS, lowered when the open-file limit would otherwise let API clients take
    the descriptors that checks in flight need (they would fail with EMFILE: false DOWNs)."""
    reserve = settings.ispmon_max_concurrency + settings.ispmon_fd_reserve
    in_use = open_descriptors()
    cap = api_connection_cap(settings.api_max_connections, soft_limit, in_use, reserve)
    if cap < settings.api_max_connections:
        log.warning(
            "api_connections_capped_by_nofile_limit",
            max_connections=cap,
            api_max_connections=settings.api_max_connections,
            nofile_soft=soft_limit,
            descriptors_in_use=in_use,
            reserve=reserve,
            hint="raise the open-file limit (systemd: LimitNOFILE=) to allow more API connections",
        )
    return cap


async def run_daemon(config: LoadedConfig, stop: asyncio.Event | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop` is set). Returns the process exit code."""
    from ispmon.api.app import create_app, start_api
    from ispmon.api.prometheus import expose_radius

    settings = config.settings
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reload_requested = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)

    log.info(
        "ispmon_starting", version=__version__, database="external" if settings.database_url else "embedded"
    )
    nofile = raise_nofile_limit()
    if nofile.error is not None:
        log.warning("nofile_limit_not_raised", soft=nofile.soft, hard=nofile.hard, error=nofile.error)
    else:
        log.info("nofile_limit", soft=nofile.soft, hard=nofile.hard, soft_at_start=nofile.before)
    db, embedded = await open_database(settings)
    tasks: list[asyncio.Task[Any]] = []
    runner = None
    ctx = ProbeContext()
    history = BatchWriter(
        db.pool, "status_history", HISTORY_COLUMNS, max_buffer=settings.ispmon_write_queue_size
    )
    events = BatchWriter(db.pool, "endpoint_events", EVENT_COLUMNS)
    # Several agents may share this database (an embedded one has this agent alone).
    agents = AgentRegistry(
        db.pool,
        agent_id=settings.ispmon_agent_id,
        location=settings.ispmon_location,
        dead_after=settings.agent_dead_after,
        version=__version__,
        single=embedded is not None,
    )
    monitor = Monitor(
        ctx=ctx,
        policy=OutagePolicy.from_settings(settings),
        history=history,
        events=events,
        outages=db.outages,
        max_concurrency=settings.ispmon_max_concurrency,
        agents=agents,
        history_repo=db.history,
    )
    agents.stats = agent_stats(monitor)
    agents_started = False
    alerting: Alerting | None = None
    network: NetworkPolling | None = None
    accounting: Accounting | None = None
    flows: FlowCollection | None = None
    search: SearchFeed | None = None
    config_sync = ConfigSync(
        db.dsn or "",
        db.pool,
        settings.ispmon_agent_id,
        settings.agent_config_poll_interval,
        file_digest=file_digest(config.path),
    )
    leadership: Leadership | None = None
    try:
        await config_sync.prepare()  # before the state is loaded: later changes are applied after it
        retargeted = await sync_config(db, config)
        # The file's endpoints are rows now, and the monitor is loaded from the rows: this copy of
        # every definition (~2 KB each) would otherwise live as long as the daemon. A reload reads
        # the file again.
        config.endpoints = []
        await restore_monitor(db, monitor, settings, retargeted, location=settings.ispmon_location)
        alerting = await Alerting.build(db, config, monitor)
        freeze_long_lived()
        history.start()
        events.start()
        # Paging, sending, polling devices and the periodic passes: on the lease holder only.
        await alerting.start(singleton=False)
        network = await NetworkPolling.start(db, config, alerting.engine, poll=False)
        accounting = await Accounting.start(db, config, alerting.engine, periodic=False)
        flows = await FlowCollection.start(db, config, alerting.engine)
        app = create_app(
            AppServices.build(
                db,
                settings,
                monitor,
                alerting.service,
                poller=network.poller,
                nas_directory=accounting.directory,
                flow_decoder=flows.decoder,
                flow_collector=flows.collector,
            )
        )
        expose_radius(app, accounting.protocol)
        config_sync.start(
            DaemonTargets(
                db,
                settings.endpoint_defaults,
                lambda: load_specs(db, settings),
                monitor,
                alerting,
                accounting.directory,
                network.poller,
                flows.decoder,
                flows.table,
            ).apply
        )
        # ELASTICSEARCH_URL unset: no feed, nothing else changes.
        search = SearchFeed.build(db.pool, settings) if settings.elasticsearch_url else None
        if search is not None:
            search.attach(app)
        max_connections = api_connection_limit(settings, nofile.soft)
        try:
            runner, host, port = await start_api(
                app,
                settings.api_host,
                settings.api_port,
                settings.ispmon_api_token,
                max_connections=max_connections,
                header_timeout=settings.api_header_timeout,
                keepalive_timeout=settings.api_keepalive_timeout,
            )
        except OSError as exc:
            raise StartupError(
                f"API_HOST/API_PORT: cannot listen on {settings.api_host}:{settings.api_port}: "
                f"{exc.strerror or exc}"
            ) from None
        agents.api_url = f"http://{host}:{port}"
        # Registered only now, ready to check: the others hand this agent its share from the
        # instant its join takes effect, and a scheduler still starting would miss those checks.
        await agents.start()
        agents_started = True
        tasks.append(asyncio.create_task(monitor.run(), name="scheduler"))
        if embedded is None:  # another agent may share the database: follow what it checks
            tasks.append(asyncio.create_task(follow_others(db.pool, monitor), name="agents-follow"))
        if search is not None:
            search.start_logs()
        work = SingletonWork(
            db, settings, alerting, config.report_schedules, network, accounting, search, housekeeping
        )
        leadership = await Leadership.start(db, settings, work)
        tasks.append(asyncio.create_task(sdnotify.watchdog_loop(stop), name="watchdog"))
        tasks.append(asyncio.create_task(log_stats(monitor), name="stats"))
        tasks.append(asyncio.create_task(record_system_metrics(db.pool, settings), name="system_metrics"))
        database_died = asyncio.Event()
        if embedded is not None:
            tasks.append(
                asyncio.create_task(supervise_embedded(embedded, database_died, stop), name="embedded")
            )
        tasks.append(
            asyncio.create_task(
                _reloader(
                    reload_requested,
                    config.path or settings.ispmon_config,
                    db,
                    monitor,
                    settings,
                    alerting,
                    accounting,
                    config_sync,
                ),
                name="reloader",
            )
        )
        if settings.ispmon_api_token:
            scopes = (
                "read+write token, read-only token" if settings.ispmon_api_read_token else "read+write token"
            )
            log.info(
                "api_listening",
                host=host,
                port=port,
                auth=f"bearer token for every request ({scopes})",
                max_connections=max_connections,
            )
        else:
            log.info(
                "api_listening",
                host=host,
                port=port,
                auth="none",
                max_connections=max_connections,
                access="loopback only: set ISPMON_API_TOKEN to listen on other addresses",
            )
        sdnotify.ready(f"monitoring {len(monitor.runtimes)} endpoints; API on {host}:{port}")
        log.info("ispmon_ready", endpoints=len(monitor.runtimes), pid=os.getpid())
        await stop.wait()
        log.info("ispmon_stopping")
        sdnotify.stopping()
        return 1 if database_died.is_set() else 0
    finally:
        if runner is not None:
            await runner.cleanup()
        # Checks first, then the stop is recorded: the others take this agent's share from that
        # instant, so nothing else this shutdown waits for (the lease, the listeners) leaves a gap.
        for task in tasks:
            if task.get_name() == "scheduler":
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await monitor.close()
        if agents_started:
            await agents.close()
            agents_started = False
        if leadership is not None:
            await leadership.close()  # released at once: another agent takes over within a period
        if accounting is not None:
            await accounting.close()
        if flows is not None:
            await flows.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if network is not None:
            await network.close()
        if alerting is not None:
            await alerting.close()
        await history.close()
        await events.close()
        await ctx.close()
        if search is not None:
            await search.close()
        await config_sync.close()
        await db.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        log.info("ispmon_stopped")
