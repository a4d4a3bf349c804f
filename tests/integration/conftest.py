"""Services wired to a real Azurite, with their own table, queues and container per test.

The services are async (as the app runs them); tests use them through a `Blocking` view on one
event loop in a background thread (tests/blocking.py), so a test reads as plain calls.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from shared import api
from shared import config as config_module
from shared.app import Services, build
from shared.job import Priority
from shared.messages import JobMessage
from shared.worker import Outcome
from tests.blocking import Portal, drop_resources, service_view, unwrap


def make_services(azurite, unique_name: str, telemetry=None, job_registry=None, **overrides: str) -> Services:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_QUEUE_NAME": unique_name,
        "JOBS_TABLE_NAME": unique_name,
        "JOBS_CONTAINER_NAME": unique_name,
        "JOBS_BACKOFF_BASE_SECONDS": "0.2",
        "JOBS_BACKOFF_MAX_SECONDS": "0.4",
        **overrides,
    }
    return build(config_module.load(env), job_registry, env=env, telemetry=telemetry)


def blocking(services: Services, portal: Portal) -> Any:
    return service_view(services, portal)


def drop(services: Services, portal: Portal) -> None:
    drop_resources(services, portal)


@pytest.fixture
def services_factory(azurite, unique_name, portal) -> Iterator[Callable[..., Any]]:
    made: list[Services] = []

    def factory(job_registry=None, **overrides: str) -> Any:
        s = make_services(azurite, unique_name, job_registry=job_registry, **overrides)
        made.append(s)
        return blocking(s, portal)

    yield factory
    for s in made:
        drop(s, portal)


@pytest.fixture
def services(services_factory) -> Any:
    return services_factory()


def call_api(services: Any, route: api.Route, request: api.ApiRequest) -> api.ApiResponse:
    """One route through `api.handle`, on the services' loop."""
    raw = unwrap(services)

    async def provide() -> Services:
        return raw

    return services._portal.run(api.handle(route, provide, request))


def deliver(services: Any, max_messages: int = 32, priority: Priority = Priority.NORMAL) -> list[Outcome]:
    """Play the host once on the queue of `priority`: receive visible messages, run the worker,
    delete on success."""
    raw: Services = unwrap(services)

    async def once() -> list[Outcome]:
        queue = raw.storage.queues[priority]
        pages = queue.receive_messages(messages_per_page=max_messages, visibility_timeout=60).by_page()
        try:
            batch = [m async for m in await pages.__anext__()]
        except StopAsyncIteration:
            return []
        outcomes = []
        for message in batch:
            outcomes.append(await raw.worker.process(message.content, priority))
            await queue.delete_message(message)
        return outcomes

    return services._portal.run(once())


def run_until(services: Any, done: Callable[[], bool], timeout: float = 15.0) -> list[Outcome]:
    deadline = time.monotonic() + timeout
    outcomes: list[Outcome] = []
    while not done():
        assert time.monotonic() < deadline, f"condition not reached; outcomes so far: {outcomes}"
        outcomes += deliver(services)
        time.sleep(0.05)
    return outcomes


def messages_in(services: Any) -> list[JobMessage]:
    return [JobMessage.decode(m.content) for m in services.storage.queue.peek_messages(max_messages=32)]


@contextlib.contextmanager
def record_reads(services: Any) -> Iterator[list[str]]:
    """The ids of the job records read (one table call each) while the block runs."""
    store = unwrap(services).store
    reads: list[str] = []
    get = store.get

    async def counted(job_id: str, **kwargs: Any) -> Any:
        reads.append(job_id)
        return await get(job_id, **kwargs)

    store.get = counted
    try:
        yield reads
    finally:
        store.get = get
