"""Rate limits: at most N starts of a type in any period, across every instance.

One row per limited type (`rate.<type>` in the `flow` partition) keeps the last N start times,
oldest first. A job asks for a start time: the earliest that keeps any N consecutive starts at
least a period apart, and never before the last one given (first come, first served); a log kept
under another limit keeps only the starts that happened, so a raised limit applies to the next
job at once and a lowered one counts what already started. It is
written with a conditional write, so two instances never hand out the same place (1 read and 1
write per start; a lost race reads again). A time in the future is a reservation: the job's
message is hidden until then and carries it, so a rate-limited job waits exactly once instead of
polling. A reservation is honoured only close to its time (RESERVATION_SLACK); a message that
comes later asks again.

A job given a start more than NOTED_BEYOND ahead also leaves a waiter row naming its hidden message
(`rate.<type>.w.<job id>`, waiters.py; 1 upsert, and 1 delete when it starts), with the limit its
place was given under. When the limit is changed through the API, the jobs holding places under
the old one are woken to ask again under the new one: a raised or removed limit speeds up the
backlog already waiting, not only the jobs that come after (flow/control.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueMessage

from shared.flow.limits import RateLimit
from shared.flow.settings import PARTITION
from shared.flow.waiters import Waiters, by_priority_then_earliest
from shared.job import Priority, to_ms
from shared.rows import write_if_unchanged
from shared.storage import Storage

RESERVE_RETRIES = 10  # busy types see lost races: each retry is a read and a write
# How late a reserved start may still be taken: messages become visible to the second and the host
# polls every 2 s when idle (host.json maxPollingInterval).
RESERVATION_SLACK = timedelta(seconds=3)
# A job given a start further ahead leaves a waiter row, so a changed limit can wake it. Nearer
# starts are not worth the two calls: after a change they wait at most this long under the old limit.
NOTED_BEYOND = timedelta(seconds=30)


class NewerLimit(Exception):
    """The start log was kept under a limit set after the one this instance knows: its view of
    the settings is stale, and resetting the log to the older limit would let a burst through."""


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.waiters = Waiters(storage, "rate")

    async def reserve(self, job_type: str, rate: RateLimit, now: datetime, version: int = 0) -> datetime | None:
        """The start time given to this job (now, or later) under `rate`, set through the API at
        `version` (0: the code's), or None if the row stayed too busy. NewerLimit if the log was
        kept under a limit set later."""
        key = f"rate.{job_type}"
        period_ms = int(rate.period_seconds * 1000)
        table = self.storage.table
        ours = signature(rate, version)
        for _ in range(RESERVE_RETRIES):
            try:
                row = await table.get_entity(PARTITION, key)
                etag: str | None = row.metadata["etag"]
                starts = [int(t) for t in (row.get("starts") or "").split(",") if t]
                if row.get("rate") != ours:
                    if _version(row.get("rate")) > version:
                        raise NewerLimit(job_type)
                    # Kept under another limit (changed through the API or in the code): the starts
                    # that happened count under the new one, so a lowered limit holds at once; the
                    # places still ahead do not, so a raised one does not keep new jobs behind the
                    # old, slower places (their jobs are woken to ask again if far; control.py).
                    starts = [t for t in starts if t <= to_ms(now)]
            except ResourceNotFoundError:
                etag, starts = None, []
            start = to_ms(now)
            if starts:
                start = max(start, starts[-1])
            if len(starts) >= rate.limit:
                start = max(start, starts[-rate.limit] + period_ms)
            starts = [*starts, start][-rate.limit :]
            entity = {"PartitionKey": PARTITION, "RowKey": key, "starts": ",".join(map(str, starts)), "rate": ours}
            if await write_if_unchanged(table, entity, etag) is None:
                continue  # another instance took a place meanwhile: look again
            return now + timedelta(milliseconds=start - to_ms(now))
        return None

    async def note(
        self, job_type: str, job_id: str, priority: Priority, sent: QueueMessage, start: datetime, under: str
    ) -> None:
        """Record that a job holds a start under the limit `under` (its signature), with the hidden
        message that brings it then."""
        await self.waiters.add(job_type, job_id, priority, sent.id, sent.pop_receipt, start, rate=under)

    async def forget(self, job_type: str, job_id: str) -> None:
        """Delete the row of a job that no longer holds a noted start."""
        await self.waiters.forget(job_type, job_id)

    async def wake_changed(
        self, job_type: str, rate: RateLimit | None, version: int, now: datetime, seconds: float
    ) -> int:
        """Wake, for about `seconds`, the jobs holding a start given under another limit than `rate`
        set at `version` (None: no limit), earliest first, to ask again: how many were woken."""
        current = signature(rate, version) if rate is not None else None
        return await self.waiters.wake(
            job_type, now, None, seconds, order=by_priority_then_earliest, chosen=lambda row: row.get("rate") != current
        )


def signature(rate: RateLimit, version: int = 0) -> str:
    """The limit a start log (or a waiter row) was kept under, as its row records it, with when it
    was set through the API (`@` and ms; none for the code's)."""
    return f"{rate.limit}/{rate.period_seconds:g}s" + (f"@{version}" if version else "")


def _version(written: Any) -> int:
    """When the limit a row was kept under was set (0: the code's, or unknown)."""
    _, at, version = str(written or "").partition("@")
    return int(version) if at and version.isdigit() else 0
