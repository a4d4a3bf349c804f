"""The threads sync handlers run in, taken before the claim.

A thread cannot be stopped: a sync handler past its time limit keeps its thread until it
returns. So the worker takes a thread before it claims a job with a sync handler, never after:
the attempt's time limit (and its `started_at`) begins when its handler can begin, and a
`running` job never waits for a thread. If none comes free in time (every thread busy, for
example with handlers that hang), the job is sent back for later without spending its attempt,
and may run on another instance.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class HandlerThreads:
    """`size` threads, made as they are first needed, each lent to one handler at a time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = asyncio.Semaphore(size)  # bound to the loop that first waits on it
        self._pool: ThreadPoolExecutor | None = None

    async def take(self, within: float) -> Ticket | None:
        """A thread for one handler, waiting up to `within` seconds for one to come free; None
        if none did."""
        if self._free.locked():
            try:
                await asyncio.wait_for(self._free.acquire(), within)
            except TimeoutError:
                return None
        else:
            await self._free.acquire()  # free: returns at once, with no task or timer made
        return Ticket(self)

    def _run(self, func: Callable[[], Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()

        def call() -> Any:
            try:
                return func()
            finally:  # the thread is free only now, however long after the attempt gave up on it
                with contextlib.suppress(RuntimeError):  # the loop closed first (shutdown)
                    loop.call_soon_threadsafe(self._free.release)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="handler")
        return loop.run_in_executor(self._pool, call)


class Ticket:
    """A thread taken for one attempt: handed to its handler by `run`, or given back unused by
    `release` (which does nothing once `run` has it)."""

    def __init__(self, threads: HandlerThreads) -> None:
        self._threads: HandlerThreads | None = threads

    def run(self, func: Callable[[], Any]) -> asyncio.Future[Any]:
        assert self._threads is not None, "a ticket runs one handler"
        running = self._threads._run(func)  # if this raises, the ticket is still ours to release
        self._threads = None
        return running

    def release(self) -> None:
        threads, self._threads = self._threads, None
        if threads is not None:
            threads._free.release()
