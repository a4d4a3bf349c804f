"""The jobs of a paused type, set aside until it is resumed.

A worker that receives a message of a paused type parks the job instead of running it: one
entity-group transaction marks the record `parked` (conditional on its ETag, so a cancelled or
already-parked job is left alone) and adds an index row `s.parked.<type>.<row>` beside it. The
host then deletes the message. A parked job stays `queued` and costs nothing while it waits: no
message goes round, and the reconciler leaves parked records alone.

Resuming marks the type's flow row `release`; the resume request releases what it can in a few
seconds and the reconciler the rest, page by page. Releasing a job reads its record (1 call),
clears the mark and makes it due now (1, conditional), puts its message (1), and drops the index
row (in transactions of up to 100). The index row goes last, so a crash between these steps leaves
it there and the next pass releases the job again; a second message is dropped by the claim.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.job import Job, Status, partition_key
from shared.messages import enqueue
from shared.storage import Storage
from shared.store import ConcurrencyConflict, JobStore

PREFIX = "s.parked."
RELEASE_FIELDS = ("not_before", "updated_at", "parked")
PAGE = 100


def index_row(job: Job) -> str:
    return f"{PREFIX}{job.type}.{job.key.row_key}"


class Parking:
    def __init__(self, storage: Storage, store: JobStore) -> None:
        self.storage = storage
        self.store = store

    async def park(self, job: Job, etag: str) -> bool:
        """Set the queued job aside (one call). False if it changed since `etag`: it was
        cancelled, or a second delivery of its message parked it already."""
        pk, row = job.key.partition_key, job.key.row_key
        mark = {"PartitionKey": pk, "RowKey": row, "parked": True}
        entry = {"PartitionKey": pk, "RowKey": index_row(job), "job_type": job.type}
        condition = {"mode": UpdateMode.MERGE, "etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            await self.storage.table.submit_transaction([("update", mark, condition), ("upsert", entry)])
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                return False
            raise
        return True

    async def release(self, job_types: list[str], now: datetime, budget_seconds: float, limit: int) -> tuple[int, bool]:
        """Release the parked jobs of `job_types`, for at most about `budget_seconds` and `limit`
        jobs: how many were released, and whether none is left (nothing stopped the pass early).
        The caller checks that the types are no longer paused."""
        released, complete = 0, True
        deadline = time.monotonic() + budget_seconds
        for job_type in job_types:
            for shard in range(self.store.partitions):
                while True:
                    if released >= limit or time.monotonic() >= deadline:
                        return released, False
                    rows = await self._page(shard, job_type)
                    if rows:
                        released += await self._release_page(shard, rows, now)
                    if len(rows) < PAGE:
                        break
        return released, complete

    async def _page(self, shard: int, job_type: str, size: int = PAGE) -> list[dict[str, Any]]:
        prefix = f"{PREFIX}{job_type}."
        # The range also holds the rows of types whose names extend this one's (`a.b` for `a`).
        query = (
            f"PartitionKey eq '{partition_key(shard)}' and RowKey ge '{prefix}' and RowKey lt '{prefix[:-1]}/'"
            f" and job_type eq '{job_type}'"
        )
        pages = self.storage.table.query_entities(query, results_per_page=size, select=["RowKey"]).by_page()
        try:
            return [row async for row in await pages.__anext__()]
        except StopAsyncIteration:
            return []

    async def _release_page(self, shard: int, rows: list[dict[str, Any]], now: datetime) -> int:
        released, done = 0, []
        for row in rows:
            job_id = f"{shard:02d}{row['RowKey'].rsplit('.', 1)[1]}"
            found = await self.store.get(job_id, load_blobs=False)
            if found is not None and found.job.status is Status.QUEUED:
                try:
                    written = await self.store.update(
                        replace(found.job, not_before=now, updated_at=now, parked=False), found.etag, RELEASE_FIELDS
                    )
                except ConcurrencyConflict:
                    continue  # it changed meanwhile: the next pass looks again
                await enqueue(self.storage, written.job, written.etag, now)
                released += 1
            done.append(row)
        await self._drop_entries(shard, done)
        return released

    async def _drop_entries(self, shard: int, rows: list[dict[str, Any]]) -> None:
        """Delete the index rows, each only if unchanged since it was read: a worker that had not
        yet seen the resume may have parked its job again meanwhile, and that row must stay."""
        if not rows:
            return
        ops = [
            ("delete", {"PartitionKey": partition_key(shard), "RowKey": row["RowKey"]},
             {"etag": row.metadata["etag"], "match_condition": MatchConditions.IfNotModified})
            for row in rows
        ]  # fmt: skip
        try:
            await self.storage.table.submit_transaction(ops)  # type: ignore[arg-type]
            return
        except TableTransactionError as exc:
            if exc.status_code not in (404, 409, 412):
                raise
        for _, entity, condition in ops:  # one of them changed: the others one by one
            with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
                await self.storage.table.delete_entity(entity["PartitionKey"], entity["RowKey"], **condition)
