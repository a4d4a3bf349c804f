"""Within one instance, higher-priority messages go first.

Each priority has its own queue and trigger, so a high job is never behind a normal backlog in a
queue; but the host runs all three triggers' messages on one event loop, where a backlog of normal
jobs would still take most of the CPU. So a message waits before it starts while messages of a
higher priority are in progress in this process: normal ones while high ones are, low ones while
high or normal ones are. The wait is bounded (MAX_WAIT_SECONDS per message), so a steady stream
of urgent work slows the others down but never stops them. No storage call is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from shared.job import Priority

MAX_WAIT_SECONDS = 5.0
_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


class PriorityGate:
    def __init__(self, max_wait: float = MAX_WAIT_SECONDS) -> None:
        self.max_wait = max_wait
        self._in_progress = {p: 0 for p in Priority}
        self._changed: asyncio.Condition | None = None  # made on first use, on the running loop

    def _busier_than(self, priority: Priority) -> bool:
        return any(n and _RANK[p] < _RANK[priority] for p, n in self._in_progress.items())

    @contextlib.asynccontextmanager
    async def turn(self, priority: Priority) -> AsyncIterator[None]:
        """Wait (bounded) while higher priorities are in progress, then hold a place until done."""
        if self._changed is None:
            self._changed = asyncio.Condition()
        changed = self._changed
        if self._busier_than(priority):
            async with changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait_for(lambda: not self._busier_than(priority)), self.max_wait)
        self._in_progress[priority] += 1
        try:
            yield
        finally:
            self._in_progress[priority] -= 1
            if self._in_progress[priority] == 0:
                async with changed:
                    changed.notify_all()
