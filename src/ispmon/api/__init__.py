"""The REST API: an aiohttp application over the service layer (routes are thin; services hold the logic).

`create_app(services)` builds the application from one route table; `start_api` starts listening.
"""

from ispmon.api.app import ROUTES, create_app, start_api

__all__ = ["ROUTES", "create_app", "start_api"]
