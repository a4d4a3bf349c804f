"""Services wired to a real Azurite, with their own table, queues and container per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared import config as config_module
from shared.app import Services, build
from shared.messages import JobMessage
from shared.worker import Outcome


def make_services(azurite, unique_name: str, telemetry=None, **overrides: str) -> Services:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_QUEUE_NAME": unique_name,
        "JOBS_TABLE_NAME": unique_name,
        "JOBS_CONTAINER_NAME": unique_name,
        "JOBS_BACKOFF_BASE_SECONDS": "0.2",
        "JOBS_BACKOFF_MAX_SECONDS": "0.4",
        **overrides,
    }
    return build(config_module.load(env), env=env, telemetry=telemetry)


@pytest.fixture
def services_factory(azurite, unique_name) -> Iterator[Callable[..., Services]]:
    made: list[Services] = []

    def factory(**overrides: str) -> Services:
        s = make_services(azurite, unique_name, **overrides)
        made.append(s)
        return s

    yield factory
    for s in made:
        for client in (s.storage.queue, s.storage.poison_queue):
            client.delete_queue()
        s.storage.table.delete_table()
        s.storage.container.delete_container()
        s.storage.close()


@pytest.fixture
def services(services_factory) -> Services:
    return services_factory()


def deliver(services: Services, max_messages: int = 32) -> list[Outcome]:
    """Play the host once: receive visible messages, run the worker, delete on success."""
    outcomes = []
    queue = services.storage.queue
    for message in next(queue.receive_messages(messages_per_page=max_messages, visibility_timeout=60).by_page(), []):
        outcomes.append(services.worker.process(message.content))
        queue.delete_message(message)
    return outcomes


def run_until(services: Services, done: Callable[[], bool], timeout: float = 15.0) -> list[Outcome]:
    import time

    deadline = time.monotonic() + timeout
    outcomes: list[Outcome] = []
    while not done():
        assert time.monotonic() < deadline, f"condition not reached; outcomes so far: {outcomes}"
        outcomes += deliver(services)
        time.sleep(0.05)
    return outcomes


def messages_in(services: Services) -> list[JobMessage]:
    return [JobMessage.decode(m.content) for m in services.storage.queue.peek_messages(max_messages=32)]
