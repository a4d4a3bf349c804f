"""The lease of a running attempt, renewed while its handler runs.

A claim gives the attempt a lease of JOBS_LEASE_SECONDS (60 s). While the handler runs, the lease
is renewed every JOBS_HEARTBEAT_SECONDS (20 s) with a merge of `lease_until`, conditional on the
record's ETag. So a worker that dies is found when its lease runs out, about a minute later,
instead of after the whole time limit; and a renewal that fails tells the worker that someone
else changed the job (a cancel, or the reconciler declaring it lost): the attempt stops. Unless the
change is its own: the SDK resends a write whose answer was lost, and a first try that landed makes
the resend's condition fail; one read tells the two apart.

An attempt that ends before the first renewal is due costs nothing more: no renewal is made.
Renewals stop at the attempt's time limit: a handler that outlives it (a sync one cannot be
interrupted) keeps no lease, and its result is discarded.

A cancel stops an async handler at once, but a sync one only at its next `ctx.checkpoint()`. Until
it returns, its heartbeat goes on writing `lease_until` on the cancelled record (and renewing its
concurrency slot), still not past the time limit: a retry is refused until the lease has run out
(Job.redrive), so it cannot start beside the attempt still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from shared.job import Status, utcnow
from shared.store import ConcurrencyConflict, JobStore, Refused, Versioned

log = logging.getLogger("jobs.heartbeat")
LEASE_FIELDS = ("lease_until",)


class Heartbeat:
    def __init__(
        self,
        store: JobStore,
        claimed: Versioned,
        lease: timedelta,
        every: float,
        deadline: datetime,
        on_lost: Callable[[], None],
        also: Callable[[datetime], Awaitable[None]] | None = None,
        before: Callable[[datetime], Awaitable[None]] | None = None,
        unstoppable: bool = False,
    ) -> None:
        self.store = store
        self.current = claimed  # the record as last written: the final write is conditional on its ETag
        self.lease = lease
        self.every = every
        self.deadline = deadline  # the time limit: no lease past it
        self.lost = False  # someone else changed the job: a cancel, or the reconciler
        self.renewals = 0
        self._on_lost = on_lost
        self._also = also  # renewed with the lease: a concurrency slot the attempt holds
        self._before = before  # called with each new lease end before it is written
        self._unstoppable = unstoppable  # a sync handler: a cancel does not stop it
        self._cancelled: Versioned | None = None  # the cancelled record whose lease it keeps while it runs
        self._stop = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Schedule the first renewal. Until it is due there is only a timer: most attempts end
        before it, and a task per attempt (with its own timer to wait on) is CPU they need not pay."""
        self._timer = asyncio.get_running_loop().call_later(self.every, self._begin)

    def _begin(self) -> None:
        self._timer = None
        if not self._stop.is_set():
            self._task = asyncio.create_task(self._run(), name=f"heartbeat {self.current.job.id}")

    async def stop(self) -> Versioned:
        """Stop renewing and return the record as last written. A renewal already sent is let
        finish, never cut off: the final write needs the ETag it produced."""
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await self._task
        return self.current

    async def _renew(self, until: datetime) -> None:
        """One renewal; a refusal of our own making (JobStore.write_own) is no refusal."""
        self.current = await self.store.write_own(
            self.current, replace(self.current.job, lease_until=until), LEASE_FIELDS, holder=True
        )
        self.renewals += 1

    def _cancelled_while_running(self, refused: ConcurrencyConflict) -> Versioned | None:
        """The cancelled record, if the refusal was this attempt's job cancelled and its handler
        runs on; else None."""
        found = refused.found if isinstance(refused, Refused) else None
        if self._unstoppable and found is not None and found.job.status is Status.CANCELLED:
            return found if found.job.attempt == self.current.job.attempt else None
        return None

    async def _run(self) -> None:
        """Renew now (the first wait was the timer's), then every `every` seconds until stopped."""
        while not self._stop.is_set():
            until = min(utcnow() + self.lease, self.deadline)
            if until <= utcnow():
                return  # the time limit has passed: the lease is left to run out
            try:
                if self._cancelled is not None:
                    job = replace(self._cancelled.job, lease_until=until)
                    self._cancelled = await self.store.update(job, self._cancelled.etag, LEASE_FIELDS)
                else:
                    if self._before is not None:
                        await self._before(until)
                    await self._renew(until)
                if self._also is not None:
                    await self._also(until)
            except ConcurrencyConflict as refused:
                if self._cancelled is not None:
                    return  # the cancelled job changed again (its lease had run out): let it be
                self.lost = True
                log.info("lease renewal refused: the job changed", extra={"job_id": self.current.job.id})
                self._on_lost()
                self._cancelled = self._cancelled_while_running(refused)
                if self._cancelled is None:
                    return
                continue  # keep the cancelled record's lease now
            except Exception as exc:  # noqa: BLE001 - storage down: try again at the next beat
                log.warning("lease renewal failed: %s", exc, extra={"job_id": self.current.job.id})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)
                return  # stopped
