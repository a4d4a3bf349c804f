"""Sync access to the app's async services, for tests that read like the behaviour they pin.

A `Portal` runs one event loop in a background thread (the idea of anyio's blocking portal); a
`Blocking` proxy in front of a service object turns each call that returns a coroutine into its
result, and each async iterator (a storage query) into a list. Everything still runs against the
real Azurite, on one loop, as the Python worker runs the app.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Portal:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="portal", daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T], timeout: float = 120) -> T:
        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)

    def resolve(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            return self.resolve(self.run(value))
        if hasattr(value, "__aiter__"):

            async def collect() -> list[Any]:
                return [item async for item in value]

            return self.run(collect())
        return value

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


class Blocking:
    """A sync view of an async object: calls are run on the portal's loop; attributes that are
    themselves service objects (of `wrapped` types) come back as Blocking views too."""

    def __init__(self, target: Any, portal: Portal, wrapped: tuple[type, ...]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_portal", portal)
        object.__setattr__(self, "_wrapped", wrapped)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if isinstance(value, self._wrapped):
            return Blocking(value, self._portal, self._wrapped)
        if isinstance(value, dict) and value and all(isinstance(v, self._wrapped) for v in value.values()):
            return {k: Blocking(v, self._portal, self._wrapped) for k, v in value.items()}  # e.g. the queues
        if callable(value) and not isinstance(value, type):
            return _blocking_call(value, self._portal)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)


def _blocking_call(fn: Callable[..., Any], portal: Portal) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return portal.resolve(fn(*args, **kwargs))

    return call


def service_view(services: Any, portal: Portal) -> Any:
    """A Blocking view of the app's Services (shared.app), its storage resources ensured."""
    from azure.data.tables.aio import TableClient
    from azure.storage.blob.aio import ContainerClient
    from azure.storage.queue.aio import QueueClient

    from shared.flow.control import FlowControl
    from shared.flow.parking import Parking
    from shared.flow.rate import RateLimiter
    from shared.flow.settings import FlowSettings
    from shared.flow.slots import Slots
    from shared.operations import Operations
    from shared.reconciler import Reconciler
    from shared.schedules.firing import Firing
    from shared.schedules.service import ScheduleService
    from shared.schedules.store import ScheduleStore
    from shared.service import JobService
    from shared.stats import Stats
    from shared.storage import Storage
    from shared.store import JobStore
    from shared.watchlist import WatchList
    from shared.worker import Worker

    wrapped = (Storage, JobStore, JobService, Worker, Reconciler, Operations, Stats, TableClient, QueueClient,
               ContainerClient, FlowControl, FlowSettings, Slots, RateLimiter, Parking, ScheduleService,
               ScheduleStore, Firing, WatchList)  # fmt: skip
    portal.run(services.storage.ensure_resources())
    return Blocking(services, portal, wrapped)


def drop_resources(services: Any, portal: Portal) -> None:
    """Delete a test's queues, table and container, and close its clients."""

    async def clean() -> None:
        storage = services.storage
        for client in (*storage.queues.values(), *storage.poison_queues.values()):
            await client.delete_queue()
        await storage.table.delete_table()
        await storage.container.delete_container()
        await storage.close()

    portal.run(clean())


def unwrap(value: Any) -> Any:
    """The async object behind a Blocking view (or the value itself)."""
    return value._target if isinstance(value, Blocking) else value
