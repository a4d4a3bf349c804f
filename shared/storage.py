"""Storage clients, created once per process and reused, and a count of the transactions they make.

The clients are the SDKs' async ones (`.aio`, on aiohttp): the functions are `async def` and run on
the Python worker's event loop, which costs less CPU per call than the sync clients' thread pool.

Locally `AzureWebJobsStorage` holds a connection string (Azurite). In Azure the connection is
identity-based, as the Functions host itself reads it: `AzureWebJobsStorage__accountName` (or the
`__tableServiceUri` / `__queueServiceUri` / `__blobServiceUri` trio), `__credential=managedidentity`
and `__clientId` for a user-assigned identity. No key ever appears in a setting.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.data.tables.aio import TableClient
from azure.storage.blob.aio import ContainerClient
from azure.storage.queue.aio import QueueClient

from shared.config import STORAGE_CONNECTION, Config
from shared.job import Priority


class StorageConfigError(RuntimeError):
    pass


# How long one try of a storage call may wait to connect, then for an answer. The SDKs' defaults
# (up to 300 s) leave a request hanging for minutes on a storage account that accepts connections
# but does not answer; Azure Storage's own server-side limit on an operation is 30 s.
CONNECT_SECONDS = 10
READ_SECONDS = 30


def transport_options(env: Mapping[str, str]) -> dict[str, Any]:
    """Options for the SDK's HTTP transport: the timeouts above, and proxies. By default the
    transport looks through the whole environment for proxy settings (`requests` on every call,
    stat-ing ~/.netrc too); with the hundred-odd variables of a Functions host that was about a
    quarter of a storage call's CPU. Skip it unless a proxy is configured, read once here."""
    proxied = any(k.lower() in ("http_proxy", "https_proxy", "all_proxy") for k in env)
    return {"use_env_settings": proxied, "connection_timeout": CONNECT_SECONDS, "read_timeout": READ_SECONDS}


class TransactionCounter:
    """Counts every request sent to storage, by service and HTTP method: each one is billed.

    Its policies are installed per retry, so a retried request counts twice, as Azure bills it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    def policy(self, service: str) -> SansIOHTTPPolicy:
        return _CountingPolicy(self, service)

    def add(self, service: str, method: str) -> None:
        with self._lock:
            self.counts[(service, method)] += 1

    def total(self, service: str | None = None) -> int:
        with self._lock:
            return sum(n for (s, _), n in self.counts.items() if service is None or s == service)

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.counts)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()


class _CountingPolicy(SansIOHTTPPolicy):
    def __init__(self, counter: TransactionCounter, service: str) -> None:
        self._counter = counter
        self._service = service

    def on_request(self, request: Any) -> None:
        self._counter.add(self._service, request.http_request.method)


@dataclass(frozen=True)
class Endpoints:
    connection_string: str | None = None
    table_url: str | None = None
    queue_url: str | None = None
    blob_url: str | None = None
    client_id: str | None = None
    credential_kind: str | None = None


def resolve_endpoints(env: Mapping[str, str], name: str = STORAGE_CONNECTION) -> Endpoints:
    """Read the storage connection the way the Functions host does."""
    if env.get(name):
        return Endpoints(connection_string=env[name])
    account = env.get(f"{name}__accountName")
    table = env.get(f"{name}__tableServiceUri")
    queue = env.get(f"{name}__queueServiceUri")
    blob = env.get(f"{name}__blobServiceUri")
    if account:
        table = table or f"https://{account}.table.core.windows.net"
        queue = queue or f"https://{account}.queue.core.windows.net"
        blob = blob or f"https://{account}.blob.core.windows.net"
    if not (table and queue and blob):
        raise StorageConfigError(
            f"no storage connection: set {name} (a connection string, locally) or "
            f"{name}__accountName (identity-based, in Azure)"
        )
    return Endpoints(
        table_url=table,
        queue_url=queue,
        blob_url=blob,
        client_id=env.get(f"{name}__clientId"),
        credential_kind=env.get(f"{name}__credential"),
    )


def _credential(endpoints: Endpoints) -> Any:
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if (endpoints.credential_kind or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=endpoints.client_id)
    return DefaultAzureCredential(managed_identity_client_id=endpoints.client_id)


class Storage:
    """The table, queues and container the job system uses, with a shared transaction counter."""

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.endpoints = resolve_endpoints(os.environ if env is None else env)
        self.counter = TransactionCounter()
        self._credential = None if self.endpoints.connection_string else _credential(self.endpoints)
        self._ensured = False

    def _kwargs(self, service: str) -> dict[str, Any]:
        options = transport_options(os.environ)
        if service == "table":
            return {**options, "per_retry_policies": [self.counter.policy(service)]}
        # The queue and blob SDKs build their own pipeline; their per-retry hook is this one.
        return {**options, "raw_request_hook": lambda request: self.counter.add(service, request.http_request.method)}

    @cached_property
    def table(self) -> TableClient:
        e = self.endpoints
        if e.connection_string:
            return TableClient.from_connection_string(
                e.connection_string, self.config.table_name, **self._kwargs("table")
            )
        return TableClient(e.table_url, self.config.table_name, credential=self._credential, **self._kwargs("table"))

    def _queue(self, name: str) -> QueueClient:
        e = self.endpoints
        if e.connection_string:
            return QueueClient.from_connection_string(e.connection_string, name, **self._kwargs("queue"))
        return QueueClient(e.queue_url, name, credential=self._credential, **self._kwargs("queue"))

    @cached_property
    def queue(self) -> QueueClient:
        """The normal-priority queue, which also carries the bulk operations' messages."""
        return self.queues[Priority.NORMAL]

    @cached_property
    def poison_queue(self) -> QueueClient:
        return self.poison_queues[Priority.NORMAL]

    @cached_property
    def queues(self) -> dict[Priority, QueueClient]:
        """One queue per priority, each drained by its own trigger."""
        return {p: self._queue(self.config.queue_name_for(p)) for p in Priority}

    @cached_property
    def poison_queues(self) -> dict[Priority, QueueClient]:
        return {p: self._queue(f"{self.config.queue_name_for(p)}-poison") for p in Priority}

    @cached_property
    def container(self) -> ContainerClient:
        e = self.endpoints
        name = self.config.container_name
        if e.connection_string:
            return ContainerClient.from_connection_string(e.connection_string, name, **self._kwargs("blob"))
        return ContainerClient(e.blob_url, name, credential=self._credential, **self._kwargs("blob"))

    async def ensure_resources(self) -> None:
        """Create the table, queues and container if missing: once per process (creating twice
        is harmless, so two first calls at once need no lock).

        In Azure the templates create them; this makes a fresh Azurite work with no set-up step."""
        if self._ensured:
            return
        for create in (
            self.table.create_table,
            *(queue.create_queue for queue in (*self.queues.values(), *self.poison_queues.values())),
            self.container.create_container,
        ):
            with contextlib.suppress(ResourceExistsError):
                await create()
        self._ensured = True

    async def close(self) -> None:
        self.__dict__.pop("queue", None)
        self.__dict__.pop("poison_queue", None)
        clients = [self.__dict__.pop(name, None) for name in ("table", "container")]
        for name in ("queues", "poison_queues"):
            clients += list(self.__dict__.pop(name, {}).values())
        for client in clients:
            if client is not None:
                await client.close()
        if self._credential is not None:
            await self._credential.close()
