"""The reconciler's watch list: jobs its recent window may not see.

The reconciler's window is a range of row keys, and a job's row key is its first due time, which
never changes. A job that is still live long after it was first due (redriven from the dead
letters, claimed after a long pause or backlog, or simply running for hours) is outside that
window, so nothing would repair it if its message were lost or its worker died. Such a job gets
an entry here before the write that makes it live again (a redrive, or a claim or lease renewal
that reaches past the window's reach), and keeps it until it ends: the attempt that ends it
removes the entry, or the reconciler does, which reads the entries every run. A plain job is never
watched and pays nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from shared.config import Config
from shared.job import JobKey
from shared.rows import delete_if_unchanged
from shared.storage import Storage

PARTITION = "watch"
# A lease that ends within this of the job leaving the window is watched: the reconciler may run
# late (its cadence, a deferred window, a missed tick) and must still find the job in one place.
MARGIN = timedelta(minutes=5)


class Entry(NamedTuple):
    job_id: str
    since: datetime  # when the entry was last written
    etag: str


def window(config: Config) -> timedelta:
    """How far back, by first due time, every reconciler run looks."""
    return timedelta(seconds=max(3600.0, 2 * (config.lease_seconds + config.reconcile_grace_seconds)))


def first_due(job_id: str) -> datetime:
    key = JobKey.parse(job_id)
    assert key is not None, job_id
    return key.due


class WatchList:
    def __init__(self, storage: Storage, config: Config) -> None:
        self.table = storage.table
        self.window = window(config)

    def needed(self, job_id: str, lease_until: datetime) -> bool:
        """Whether a lease until `lease_until` may run out after the window has passed the job by."""
        return lease_until + MARGIN >= first_due(job_id) + self.window

    def ahead_of_window(self, job_id: str, now: datetime) -> bool:
        """Whether the job's first due time is still ahead: the window reaches it once it is due,
        so it needs no entry until then (a job put back with its start time)."""
        return first_due(job_id) > now

    async def add(self, job_id: str) -> str:
        """Watch the job; the entry's ETag, for `remove`."""
        written = await self.table.upsert_entity({"PartitionKey": PARTITION, "RowKey": job_id})
        return written["etag"]

    async def add_many(self, job_ids: list[str]) -> None:
        """Entries for many jobs, 100 per entity-group transaction (they share a partition)."""
        rows = [("upsert", {"PartitionKey": PARTITION, "RowKey": job_id}) for job_id in dict.fromkeys(job_ids)]
        for start in range(0, len(rows), 100):
            await self.table.submit_transaction(rows[start : start + 100])

    async def entries(self, after: str = "", limit: int = 1000) -> list[Entry]:
        """Up to `limit` watched jobs' entries, in turn: those after `after` first, then from the
        start of the list (one query each, at most)."""
        found = await self._page(f"RowKey gt '{_quoted(after)}'", limit)
        if len(found) < limit and after:
            found += await self._page(f"RowKey le '{_quoted(after)}'", limit - len(found))
        return found

    async def _page(self, rows: str, limit: int) -> list[Entry]:
        query = self.table.query_entities(
            f"PartitionKey eq '{PARTITION}' and {rows}", select=["RowKey", "Timestamp"], results_per_page=limit
        )
        async for page in query.by_page():
            return [Entry(row["RowKey"], row.metadata["timestamp"], row.metadata["etag"]) async for row in page]
        return []

    async def remove(self, job_id: str, etag: str | None = None) -> None:
        """Stop watching the job; with `etag`, only if nobody wrote its entry since (a redrive
        writes it again before it makes the job live again)."""
        await delete_if_unchanged(self.table, PARTITION, job_id, etag)


def _quoted(value: str) -> str:
    return value.replace("'", "''")
