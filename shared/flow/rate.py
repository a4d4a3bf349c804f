"""Rate limits: at most N starts of a type in any period, across every instance.

One row per limited type (`rate.<type>` in the `flow` partition) keeps the last N start times,
oldest first. A job asks for a start time: the earliest that keeps any N consecutive starts at
least a period apart, and never before the last one given (first come, first served); a log kept
under another limit starts afresh, so a raised limit applies to the next job at once. It is
written with a conditional write, so two instances never hand out the same place (1 read and 1
write per start; a lost race reads again). A time in the future is a reservation: the job's
message is hidden until then and carries it, so a rate-limited job waits exactly once instead of
polling. A reservation is honoured only close to its time (RESERVATION_SLACK); a message that
comes later asks again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError

from shared.flow.limits import RateLimit
from shared.flow.settings import PARTITION
from shared.job import to_ms
from shared.rows import write_if_unchanged
from shared.storage import Storage

RESERVE_RETRIES = 10  # busy types see lost races: each retry is a read and a write
# How late a reserved start may still be taken: messages become visible to the second and the host
# polls every 2 s when idle (host.json maxPollingInterval).
RESERVATION_SLACK = timedelta(seconds=3)


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def reserve(self, job_type: str, rate: RateLimit, now: datetime) -> datetime | None:
        """The start time given to this job (now, or later), or None if the row stayed too busy."""
        key = f"rate.{job_type}"
        period_ms = int(rate.period_seconds * 1000)
        table = self.storage.table
        for _ in range(RESERVE_RETRIES):
            try:
                row = await table.get_entity(PARTITION, key)
                etag: str | None = row.metadata["etag"]
                starts = [int(t) for t in (row.get("starts") or "").split(",") if t]
                if row.get("rate") != _written_for(rate):
                    # Given under another limit (changed through the API or in the code): a raised
                    # or removed limit must not keep new jobs behind the old, slower places.
                    starts = []
            except ResourceNotFoundError:
                etag, starts = None, []
            start = to_ms(now)
            if starts:
                start = max(start, starts[-1])
            if len(starts) >= rate.limit:
                start = max(start, starts[-rate.limit] + period_ms)
            starts = [*starts, start][-rate.limit :]
            entity = {
                "PartitionKey": PARTITION,
                "RowKey": key,
                "starts": ",".join(map(str, starts)),
                "rate": _written_for(rate),
            }
            if await write_if_unchanged(table, entity, etag) is None:
                continue  # another instance took a place meanwhile: look again
            return now + timedelta(milliseconds=start - to_ms(now))
        return None


def _written_for(rate: RateLimit) -> str:
    """The limit a start log was kept under, as its row records it."""
    return f"{rate.limit}/{rate.period_seconds:g}s"
