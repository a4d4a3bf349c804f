"""The composition root: every long-lived object of a process, built once on first use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from shared import config as config_module
from shared import telemetry as telemetry_module
from shared.config import Config
from shared.flow.control import FlowControl
from shared.operations import Operations
from shared.reconciler import Reconciler
from shared.registry import Registry, registry
from shared.schedules.firing import Firing
from shared.schedules.service import ScheduleService
from shared.schedules.store import ScheduleStore
from shared.service import JobService
from shared.stats import Stats
from shared.storage import Storage
from shared.store import JobStore
from shared.telemetry import Telemetry
from shared.watchlist import WatchList
from shared.worker import Worker


@dataclass(frozen=True)
class Services:
    config: Config
    storage: Storage
    store: JobStore
    registry: Registry
    service: JobService
    worker: Worker
    reconciler: Reconciler
    telemetry: Telemetry
    operations: Operations
    stats: Stats
    flow: FlowControl
    schedules: ScheduleService


def build(
    config: Config,
    job_registry: Registry | None = None,
    env: dict[str, str] | None = None,
    telemetry: Telemetry | None = None,
) -> Services:
    import shared.handlers  # noqa: F401 - registers the shipped job types

    reg = job_registry or registry
    telemetry = telemetry or Telemetry()
    storage = Storage(config, env)
    store = JobStore(storage)
    watchlist = WatchList(storage, config)
    service = JobService(storage, store, reg, config, telemetry, watchlist)
    operations = Operations(storage, service)
    flow = FlowControl(storage, store, reg, config)
    worker = Worker(storage, store, reg, config, telemetry, watchlist, operations, flow)
    stats = Stats(storage, store)
    schedules = ScheduleService(ScheduleStore(storage), Firing(ScheduleStore(storage), service, store, config))
    reconciler = Reconciler(
        storage, store, service, worker, config, telemetry, operations, stats, flow, schedules=schedules
    )
    return Services(config, storage, store, reg, service, worker, reconciler, telemetry, operations, stats, flow,
                    schedules)  # fmt: skip


_services: Services | None = None
_lifetime: AsyncIterator[Services] | None = None  # held here: the loop tracks it only weakly


async def _live() -> AsyncIterator[Services]:
    """The services for as long as the event loop that first asked for them runs, then their
    storage clients closed on that loop. The Python worker has no shutdown hook for an app, but
    `asyncio.run` finalises the async generators still open before it closes its loop, so this
    `finally` runs on a normal stop (the local host's, or the worker's); a killed process leaves
    its sockets to the operating system."""
    services = build(config_module.get())
    try:
        while True:
            yield services
    finally:
        await services.storage.close()


async def services() -> Services:
    """The process-wide services, so storage clients are created once and reused. Every function
    runs on the worker's one event loop, so no lock is needed to build them once; the first calls
    may both ensure the table and queues exist, which is harmless."""
    global _services, _lifetime
    if _services is None:
        telemetry_module.configure()
        _lifetime = _live()
        _services = await anext(_lifetime)
    await _services.storage.ensure_resources()
    return _services
