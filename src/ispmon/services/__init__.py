"""The service layer: what the REST API, the CLI and Python users call (the seed's names and verbs).

svc = AvailabilityService(db)
endpoint = await svc.create_endpoint({"name": "API gateway", "url": "https://...", "protocol": ProtocolType.HTTPS})
status = await svc.check_service(endpoint.id)
print(status.status.value, status.response_time)

Methods return typed objects (`Endpoint`, `CheckResult`, in `ispmon.services.views`) whose
`to_dict()` is the API's JSON.
"""

from ispmon.services.alerts import AlertService
from ispmon.services.availability import AvailabilityService
from ispmon.services.customers import CustomerService
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, ServiceError
from ispmon.services.logging_service import LoggingService
from ispmon.services.maintenance import MaintenanceService
from ispmon.services.metrics import MetricsService
from ispmon.services.network import NetworkService
from ispmon.services.outages import OutageService
from ispmon.services.usage import UsageService
from ispmon.services.views import CheckResult, Endpoint

__all__ = [
    "AlertService",
    "AvailabilityService",
    "CheckResult",
    "ConflictError",
    "CustomerService",
    "Endpoint",
    "InvalidInput",
    "LoggingService",
    "MaintenanceService",
    "MetricsService",
    "NetworkService",
    "NotFoundError",
    "OutageService",
    "ServiceError",
    "UsageService",
]
