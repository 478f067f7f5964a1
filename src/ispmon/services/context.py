"""`AppServices`: the services wired together once, handed to the API, the CLI and the daemon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ispmon.services.alerts import AlertService
from ispmon.services.availability import AvailabilityService
from ispmon.services.customers import CustomerService
from ispmon.services.flows import FlowService
from ispmon.services.maintenance import MaintenanceService
from ispmon.services.metrics import MetricsService
from ispmon.services.network import NetworkService
from ispmon.services.outages import OutageService
from ispmon.services.usage import UsageService

if TYPE_CHECKING:
    from ispmon.availability.monitor import Monitor
    from ispmon.config import Settings
    from ispmon.flows.collector import Collector
    from ispmon.flows.decode import FlowDecoder
    from ispmon.network.poller import Poller
    from ispmon.store.database import Database
    from ispmon.usage.nas import NasDirectory


@dataclass
class AppServices:
    db: Database
    settings: Settings
    availability: AvailabilityService
    outages: OutageService
    maintenance: MaintenanceService
    alerts: AlertService
    network: NetworkService
    customers: CustomerService
    usage: UsageService
    flows: FlowService
    monitor: Monitor | None = None
    metrics: MetricsService | None = None

    @classmethod
    def build(
        cls,
        db: Database,
        settings: Settings,
        monitor: Monitor | None = None,
        alerts: AlertService | None = None,
        poller: Poller | None = None,
        nas_directory: NasDirectory | None = None,
        flow_decoder: FlowDecoder | None = None,
        flow_collector: Collector | None = None,
    ) -> AppServices:
        return cls(
            db=db,
            settings=settings,
            availability=AvailabilityService(db, monitor, settings.endpoint_defaults),
            outages=OutageService(db, monitor),
            maintenance=MaintenanceService(db, monitor),
            alerts=alerts or AlertService(db),
            network=NetworkService(db, poller),
            customers=CustomerService(db),
            usage=UsageService(db, nas_directory),
            flows=FlowService(db, flow_decoder, flow_collector),
            monitor=monitor,
            metrics=MetricsService(db),
        )
