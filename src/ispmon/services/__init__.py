"""The service layer: what the REST API, the CLI and Python users call (the seed's names and verbs).

svc = AvailabilityService(db)
await svc.create_endpoint({"id": "api-gateway", "name": "API gateway", "url": "https://..."})
await svc.check_service("api-gateway")
"""

from ispmon.services.availability import AvailabilityService
from ispmon.services.errors import ConflictError, InvalidInput, NotFoundError, ServiceError
from ispmon.services.logging_service import LoggingService
from ispmon.services.maintenance import MaintenanceService
from ispmon.services.outages import OutageService

__all__ = [
    "AvailabilityService",
    "ConflictError",
    "InvalidInput",
    "LoggingService",
    "MaintenanceService",
    "NotFoundError",
    "OutageService",
    "ServiceError",
]
