"""The seed's collector entry points (thin: they call the domains).

A cron job or a script calls these with a `Database`; each goes through the service layer, so a
check is run, classified and recorded exactly as an API or CLI check is.

    await collect_specific_service_availability(db, "api-gateway")   # one endpoint
    await collect_service_availability(db)                           # every active endpoint
"""

from ispmon.collectors.availability import (
    collect_service_availability,
    collect_specific_service_availability,
)

__all__ = ["collect_service_availability", "collect_specific_service_availability"]
