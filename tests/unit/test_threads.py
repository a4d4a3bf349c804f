"""Handler threads: a ticket is given back unless its handler has it."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.threads import HandlerThreads


def test_a_ticket_whose_handler_could_not_start_is_given_back():
    async def scenario():
        threads = HandlerThreads(1)
        threads._pool = ThreadPoolExecutor(1)
        threads._pool.shutdown()  # stands for any failure to start ("can't start new thread")
        ticket = await threads.take(0.1)
        with pytest.raises(RuntimeError):
            ticket.run(lambda: None)
        ticket.release()  # what the worker does when the attempt did not start
        threads._pool = None
        return await threads.take(0.1)

    assert asyncio.run(scenario()) is not None


def test_a_thread_is_free_again_only_when_its_handler_returns():
    """The attempt may give up on a handler (its time limit); its thread stays taken until the
    handler returns, and a second ticket waits for it."""

    async def scenario():
        threads = HandlerThreads(1)
        release = threading.Event()
        first = await threads.take(0.1)
        running = first.run(release.wait)
        first.release()  # a no-op: the handler has it
        assert await threads.take(0.2) is None  # still running
        release.set()
        await running
        return await threads.take(1)

    assert asyncio.run(scenario()) is not None
