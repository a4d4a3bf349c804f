"""Why a queued job has not started, for answers about that one job.

A job held back by flow control stays `queued` with nothing written to its record (waiting keeps
its attempt and costs no record write), so the reason is read from where flow control keeps it:
- `pause`: the record is marked parked, or its type is paused and its message not yet received;
- `concurrency_limit`: a waiter row names the job, with when its message comes back to ask again;
- `rate_limit`: a waiter row names the job, with the start reserved for it (only starts over
  NOTED_BEYOND ahead leave one; a nearer start is not shown, and comes soon).

It costs nothing for a job that is not queued but the instance's cached settings (read at most
once per CACHE_SECONDS); for a queued job of a limited type, a point read per limit it has (its
waiter row of that kind). A wait for a far start moves the record's `not_before` to it, so a job
not due may still be one held back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from azure.core.exceptions import ResourceNotFoundError

from shared.flow.settings import PARTITION, FlowSettings
from shared.flow.waiters import Waiters, orphaned
from shared.job import Job, Status, isoformat, parse_time, utcnow
from shared.storage import Storage

Reason = Literal["pause", "concurrency_limit", "rate_limit"]


@dataclass(frozen=True)
class Hold:
    reason: Reason
    until: datetime | None = None  # when it asks again (a slot) or its reserved start (a rate)

    def to_resource(self) -> dict[str, str | None]:
        return {"reason": self.reason, "until": isoformat(self.until) if self.until else None}


class Holds:
    def __init__(self, storage: Storage, settings: FlowSettings, slot: Waiters, rate: Waiters) -> None:
        self.storage = storage
        self.settings = settings
        self.waiters: dict[Reason, Waiters] = {"concurrency_limit": slot, "rate_limit": rate}

    async def of(self, job: Job) -> Hold | None:
        """What holds the job back now, if flow control does (see the module's docstring)."""
        if job.status is not Status.QUEUED:
            return None
        if job.parked:
            return Hold("pause")
        now = utcnow()
        flow = await self.settings.for_type(job.type)
        if flow.paused and job.not_before <= now:  # a job not due yet waits for its own time first
            return Hold("pause")
        kinds: list[Reason] = []
        if flow.max_concurrency is not None:
            kinds.append("concurrency_limit")
        if flow.rate_limit is not None:
            kinds.append("rate_limit")
        rows = await asyncio.gather(*(self._row(reason, job) for reason in kinds))
        found = [(reason, row) for reason, row in zip(kinds, rows, strict=True) if row is not None]
        for reason, row in sorted(found, key=lambda f: f[1].get("back", ""), reverse=True):  # the later, if both
            back = parse_time(row.get("back"))
            if back is None or orphaned(row, now):
                continue
            if reason == "concurrency_limit":  # past its back-off, it is asking for a slot again
                return Hold(reason, back if back > now else None)
            if back > now:  # a reserved start that has come is a job starting
                return Hold(reason, back)
        return None

    async def _row(self, reason: Reason, job: Job) -> dict | None:
        """The job's waiter row of this kind: a point read (a query on other keys would scan the
        partition, which every admission writes)."""
        try:
            return await self.storage.table.get_entity(PARTITION, self.waiters[reason].row(job.type, job.id))
        except ResourceNotFoundError:
            return None
