"""The web tests use the API tests' fixtures: the services over a fresh database and a client."""

from tests.integration.api.conftest import client, services

__all__ = ["client", "services"]
