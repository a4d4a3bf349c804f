"""Storage clients, created once per process per connection string and shared by every listener
and timer lock (one HTTP connection pool per account, as the host keeps one client per account)."""

from __future__ import annotations

import contextlib
import os

from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue.aio import QueueClient, QueueServiceClient

# Retries close to the .NET storage SDK's defaults (3 tries, exponential from under a second), so a
# storage outage surfaces in seconds instead of the Python SDK's default of a minute.
CLIENT_OPTIONS = {
    "retry_total": 3,
    "initial_backoff": 0.5,
    "increment_base": 2,
    "random_jitter_range": 0.3,
    "connection_timeout": 10,
    "read_timeout": 30,
    # aiohttp reads the proxy variables and ~/.netrc, in a thread, on every request of a session that
    # trusts the environment: a measurable share of a busy host's CPU. Only when a proxy is set.
    "use_env_settings": any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") for k in os.environ),
}


class StorageClients:
    def __init__(self) -> None:
        self._queue_services: dict[str, QueueServiceClient] = {}
        self._blob_services: dict[str, BlobServiceClient] = {}

    def queue(self, connection_string: str, queue_name: str) -> QueueClient:
        service = self._queue_services.get(connection_string)
        if service is None:
            service = QueueServiceClient.from_connection_string(connection_string, **CLIENT_OPTIONS)
            self._queue_services[connection_string] = service
        return service.get_queue_client(queue_name)

    def container(self, connection_string: str, container_name: str) -> ContainerClient:
        service = self._blob_services.get(connection_string)
        if service is None:
            service = BlobServiceClient.from_connection_string(connection_string, **CLIENT_OPTIONS)
            self._blob_services[connection_string] = service
        return service.get_container_client(container_name)

    async def close(self) -> None:
        """Close every service client (the clients derived from them share their transport)."""
        for service in [*self._queue_services.values(), *self._blob_services.values()]:
            with contextlib.suppress(Exception):
                await service.close()
        self._queue_services.clear()
        self._blob_services.clear()
