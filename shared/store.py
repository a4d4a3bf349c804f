"""The job records in Azure Table Storage.

Keys: PartitionKey `pNN` (the job's shard, chosen at random or from its idempotency key), RowKey
the inverted due time in ms plus a random suffix. So:
- a point read or write is one transaction (the id holds both keys);
- load is spread over JOBS_PARTITIONS partitions, each good for about 2,000 entities/s;
- each partition holds its jobs newest first, so listing and the reconciler read a range of row
  keys, never the whole history.
An idempotency record lives beside its job in the same partition (RowKey `k<hash>`), so the two
are written in one entity-group transaction: one billed call, all or nothing.

Status index (RQ's registries): a job that is dead-lettered or cancelled has a copy of its record
beside it, RowKey `s.<status>.<row>`, written and removed in the same entity-group transaction as
the transition into or out of that state. Listing those states reads the copies, a range of row
keys, so a page costs one query per partition however much history surrounds them. Only states
left through a conditional write of the whole record are indexed, and the hot path (insert,
claim, success) never touches them: a plain job's calls and CPU stay as they were.

Payloads and results too big for a property (64 KiB) go to a blob: the claim-check pattern.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode

from shared import oldest
from shared.idempotency import IdempotencyMismatch, RequestHash, hash_key, recorded
from shared.job import MS_CEILING, TERMINAL, Job, JobKey, Priority, Status, parse_time, partition_key, row_key_at, to_ms
from shared.properties import PROPERTY_CHARS, property_chars, property_json
from shared.rows import delete_if_unchanged
from shared.storage import Storage

# Table strings are UTF-16 and capped at 64 KiB: keep inline JSON well under 32K characters.
INLINE_LIMIT_CHARS = PROPERTY_CHARS
# Row keys of jobs are digits; idempotency records start with "k", index copies with "s.":
# listing stops below them.
JOB_ROWS_END = "a"
_IDEM_PREFIX = "k"
INDEX_PREFIX = "s."
# States with an index copy: rare, left only by a redrive or by retention, and what operators act on.
INDEXED = frozenset({Status.DEAD_LETTERED, Status.CANCELLED})
BATCH_LIMIT = 100  # operations in one entity-group transaction
BATCH_BYTES = 3_500_000  # of JSON per entity-group transaction (the service's limit is 4 MiB)
log = logging.getLogger("jobs.store")
_ROW = re.compile(r"^[0-9a-f]{1,23}$")


class ConcurrencyConflict(Exception):
    """Someone else changed the job since we read it (the ETag no longer matches)."""


class Refused(ConcurrencyConflict):
    """A write another change refused (see JobStore.write_own); `found`: the record as read
    since, or None if the job is gone."""

    def __init__(self, job_id: str, found: Versioned | None) -> None:
        super().__init__(job_id)
        self.found = found


class BadContinuation(ValueError):
    pass


@dataclass(frozen=True)
class Versioned:
    job: Job
    etag: str


@dataclass(frozen=True)
class _Deletion:
    """A finished job retention deletes: its row (at the version read), then its index copy and
    idempotency record, as (PartitionKey, RowKey) pairs."""

    entity: dict[str, Any]
    etag: str
    rows: list[tuple[str, str]]

    @classmethod
    def of(cls, entity: TableEntity) -> _Deletion:
        pk, row = entity["PartitionKey"], entity["RowKey"]
        rows = [(pk, row)]
        if entity["status"] in INDEXED:
            rows.append((pk, f"{INDEX_PREFIX}{entity['status']}.{row}"))
        if entity.get("idem"):
            rows.append((pk, _IDEM_PREFIX + entity["idem"]))
        return cls(entity, entity.metadata["etag"], rows)

    def operations(self) -> list[tuple[Any, ...]]:
        (pk, row), *companions = self.rows
        condition = {"etag": self.etag, "match_condition": MatchConditions.IfNotModified}
        ops: list[tuple[Any, ...]] = [("delete", {"PartitionKey": pk, "RowKey": row}, condition)]
        return ops + [("delete", {"PartitionKey": p, "RowKey": r}) for p, r in companions]


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    continuation: str | None


class JobStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.table = storage.table
        self.partitions = storage.config.partitions

    # --- point operations --------------------------------------------------------------------

    async def insert(self, job: Job, request_hash: RequestHash | None = None) -> Versioned:
        """Insert a new job. With an idempotency key, either insert it with its key record, or
        return the job that key already created (IdempotencyMismatch if the body differs)."""
        job = await self._offload(job)
        entity = self._to_entity(job)
        if job.idempotency_key is None:
            # Only the ETag is needed: without this the service echoes the whole record back, and
            # the SDK parses every property of it (about a tenth of an insert's CPU). Same call.
            meta = await self.table.create_entity(entity, response_preference="return-no-content")
            return Versioned(job, meta["etag"])
        idem = {
            "PartitionKey": entity["PartitionKey"],
            "RowKey": _IDEM_PREFIX + job.idempotency_key,
            "job_row": entity["RowKey"],
            "request_hash": recorded(request_hash),
        }
        try:
            results = await self.table.submit_transaction([("create", entity), ("create", idem)])
        except TableTransactionError as exc:
            if exc.error_code != "EntityAlreadyExists":
                raise
            await self._drop_blobs(entity)
            return await self._existing_for_key(job.key.shard, job.idempotency_key, request_hash)
        return Versioned(job, results[0]["etag"])

    async def insert_batch(
        self, jobs: list[Job], key_hash: str | None = None, request_hash: RequestHash | None = None
    ) -> tuple[list[Versioned | Exception], bool]:
        """Insert jobs of one partition in entity-group transactions of up to 100 rows and about
        3.5 MB (the service takes 4 MiB): each group is all or nothing. With an idempotency key,
        its record (the ids of all the jobs) goes in the first group; if the key was used before,
        nothing is written and the jobs it created come back. Returns (results, replayed)."""
        entities: list[tuple[Job | None, dict[str, Any]]] = []
        if key_hash:
            rows = ",".join(job.key.row_key for job in jobs)
            pk = jobs[0].key.partition_key
            entities.append((None, {"PartitionKey": pk, "RowKey": _IDEM_PREFIX + key_hash, "job_rows": rows,
                                    "request_hash": recorded(request_hash)}))  # fmt: skip
        for job in jobs:
            job = await self._offload(job)
            entities.append((job, self._to_entity(job)))
        results: list[Versioned | Exception] = []
        group: list[tuple[Job | None, dict[str, Any]]] = []
        size = 0
        for job, entity in [*entities, (None, None)]:
            entity_size = len(json.dumps(entity)) if entity else 0
            if group and (entity is None or len(group) == BATCH_LIMIT or size + entity_size > BATCH_BYTES):
                try:
                    written = await self.table.submit_transaction([("create", e) for _, e in group])
                    results += [Versioned(j, w["etag"]) for (j, _), w in zip(group, written, strict=True) if j]
                except (TableTransactionError, HttpResponseError) as exc:
                    if key_hash and not results and getattr(exc, "error_code", None) == "EntityAlreadyExists":
                        return await self._replay_batch(jobs[0].key.shard, key_hash, request_hash), True
                    results += [exc] * sum(1 for j, _ in group if j)
                group, size = [], 0
            if entity is not None:
                group.append((job, entity))
                size += entity_size
        return results, False

    async def _replay_batch(
        self, shard: int, key_hash: str, request_hash: RequestHash | None
    ) -> list[Versioned | Exception]:
        idem = await self._key_record(shard, key_hash, "job_rows", request_hash)
        out: list[Versioned | Exception] = []
        for row in idem["job_rows"].split(","):
            found = await self.get(f"{shard:02d}{row}", load_blobs=False)
            out.append(found if found is not None else ResourceNotFoundError(f"job {shard:02d}{row} is gone"))
        return out

    async def _existing_for_key(self, shard: int, key_hash: str, request_hash: RequestHash | None) -> Versioned:
        idem = await self._key_record(shard, key_hash, "job_row", request_hash)
        found = await self.get(f"{shard:02d}{idem['job_row']}")
        if found is None:  # cannot happen: the two rows are written and deleted together
            raise ResourceNotFoundError("job of idempotency key is missing")
        return found

    async def _key_record(self, shard: int, key_hash: str, names: str, request_hash: RequestHash | None) -> TableEntity:
        """A key's row, if it was used for the same kind of submit (`names`: one job or a batch's
        rows) with the same request."""
        idem = await self.table.get_entity(partition_key(shard), _IDEM_PREFIX + key_hash)
        if names not in idem:
            raise IdempotencyMismatch
        if request_hash:
            request_hash.check(idem)
        return idem

    async def get(self, job_id: str, load_blobs: bool = True) -> Versioned | None:
        key = JobKey.parse(job_id)
        if key is None or key.shard >= 100:
            return None
        try:
            entity = await self.table.get_entity(key.partition_key, key.row_key)
        except ResourceNotFoundError:
            return None
        job = self._from_entity(entity)
        return Versioned(await self._load_blobs(job) if load_blobs else job, entity.metadata["etag"])

    async def replace(self, job: Job, etag: str, was: Status) -> Versioned:
        """Write the job if nobody changed it since `etag`: the one way every transition sticks.
        `was` is the status it is leaving: a move into or out of an indexed state adds or removes
        the index copy in the same entity-group transaction (one billed call, all or nothing)."""
        job = await self._offload(job)
        entity = self._to_entity(job)
        index_ops: list[tuple[str, dict[str, Any]]] = []
        if was in INDEXED and job.status is not was:
            index_ops.append(("delete", {"PartitionKey": entity["PartitionKey"], "RowKey": index_row(was, job)}))
        if job.status in INDEXED and job.status is not was:
            index_ops.append(("upsert", {**entity, "RowKey": index_row(job.status, job)}))
        condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        try:
            if not index_ops:
                meta = await self.table.update_entity(entity, mode=UpdateMode.REPLACE, **condition)
            else:
                ops = [("update", entity, {"mode": UpdateMode.REPLACE, **condition}), *index_ops]
                meta = (await self.table.submit_transaction(ops))[0]  # type: ignore[arg-type]
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyConflict(job.id) from exc
            raise
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise ConcurrencyConflict(job.id) from exc
            raise
        return Versioned(job, meta["etag"])

    async def update(self, job: Job, etag: str, fields: tuple[str, ...]) -> Versioned:
        """Write only `fields` of the job (a merge), if nobody changed it since `etag`. The
        worker's claim and result writes use it: they change a few properties, and may start
        from a message snapshot rather than a full record."""
        assert "status" not in fields or job.status not in INDEXED, "indexed states are written by replace()"
        # Only the values being written are serialised: the payload never changes after insert.
        values = tuple(v for v in ("payload", "result") if v in fields)
        job = await self._offload(job, values)
        full = self._to_entity(job, values)
        entity: dict[str, Any] = {"PartitionKey": full["PartitionKey"], "RowKey": full["RowKey"]}
        for name in fields:
            if name in full:
                entity[name] = full[name]
            elif not name.endswith("_blob"):
                entity[name] = ""  # a cleared time (a merge cannot remove a property)
        try:
            meta = await self.table.update_entity(
                entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except ResourceNotFoundError as exc:
            raise ConcurrencyConflict(job.id) from exc
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise ConcurrencyConflict(job.id) from exc
            raise
        return Versioned(job, meta["etag"])

    async def write_own(
        self,
        current: Versioned,
        new: Job,
        fields: tuple[str, ...] | None = None,
        whole: bool = False,
        holder: bool = False,
    ) -> Versioned:
        """Write `new` over `current` (a replace, or a merge of `fields`) if nobody changed it,
        telling a refusal of our own making from another's change with one read. The SDK sends a
        write again when its answer is lost (a timeout, a 503), and a first try that landed makes
        the second's condition fail: if the record holds `new` (Job.holds_write), the write
        stands. The `holder` of a running attempt (its worker) renews its lease, and a renewal
        whose answer was an error may have landed too: if the record is `current` but for its
        lease (Job.renewed_from), the holder writes again from it, once. Anyone else (the
        reconciler repairing an expired lease) must not: that renewal is the attempt's worker
        alive, and writing over it would run two attempts at once. Otherwise Refused, with the
        record as read (`whole`: with its blobs)."""
        etag = current.etag
        for again in (True, False):
            try:
                if fields is None:
                    return await self.replace(new, etag, was=current.job.status)
                return await self.update(new, etag, fields)
            except ConcurrencyConflict:
                found = await self.get(new.id, load_blobs=whole)
            if found is not None and found.job.holds_write(new):
                log.info("our %s write was applied; its answer was lost", new.status, extra={"job_id": new.id})
                return Versioned(new, found.etag)
            renewed = (
                holder
                and found is not None
                and current.job.status is Status.RUNNING
                and found.job.renewed_from(current.job)
            )
            if not (again and renewed):
                await self._drop_unwritten_result(new, found)
                raise Refused(new.id, found)
            assert found is not None
            etag = found.etag
        raise AssertionError("unreachable: the second try returns or raises")

    # --- ranges ------------------------------------------------------------------------------

    async def list(
        self,
        status: str | None = None,
        job_type: str | None = None,
        limit: int = 50,
        continuation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        order: str = "newest",
    ) -> Page:
        """Newest first (by due time) across all partitions, one query per partition per page;
        `order="oldest"`: oldest first, by windows of due time (shared/oldest.py says how, and
        what a page costs). `since` and `until` bound the due time: a range of row keys, not a
        filter.

        Dead-lettered and cancelled jobs are read from their index copies, so such a page costs
        the same however many other jobs there are. Other filters are applied by the service as
        it scans: such a page may hold fewer than `limit` jobs (the service stops scanning after
        a while, and a page never waits for a slow partition). Follow `continuation` until None."""
        prefix = f"{INDEX_PREFIX}{status}." if status in INDEXED else ""
        bounds = row_range(since, until)
        if bounds is None:
            return Page([], None)
        low, high = bounds
        extra = _filters(None if prefix else status, job_type)
        if order == "oldest":
            return await self._list_oldest(prefix, extra, limit, continuation, low, high)
        end = prefix + (high or JOB_ROWS_END)
        scope = f"{prefix}|{low}|{high}{extra}"  # the token is only good for the same listing
        cursors = self._decode_cursor(continuation, scope, start=low or "0")
        fetched: list[tuple[str, int, dict[str, Any]]] = []
        # How far each partition is known: (row, 1) through that row, (row, 0) before it; None:
        # to the end. A query's continuation is opaque (Azure sends a hash of the next row key):
        # a partition with more is known through the last row it returned.
        frontier: dict[int, tuple[str, int] | None] = {}
        pages = await asyncio.gather(
            *(self.query_page(shard, f"RowKey {op} '{prefix}{row}' and RowKey lt '{end}'", extra, limit)
              for shard, (op, row) in cursors.items())
        )  # fmt: skip
        for (shard, (op, row)), (rows, more) in zip(cursors.items(), pages, strict=True):
            fetched += [(e["RowKey"][len(prefix) :], shard, e) for e in rows]
            if not more:
                frontier[shard] = None
            elif rows:
                frontier[shard] = (rows[-1]["RowKey"][len(prefix) :], 1)
            else:  # nothing returned, and more to come (the service stopped scanning)
                frontier[shard] = (row, 1 if op == "gt" else 0)
        # Rows a partition is known through are known completely: only those can be ordered.
        bound = min((f for f in frontier.values() if f is not None), default=None)
        fetched.sort(key=lambda item: item[0])
        emitted = [item for item in fetched if bound is None or (item[0], 0) < bound][:limit]
        last = {shard: row for row, shard, _ in emitted}
        next_cursors: dict[int, tuple[str, str]] = {}
        for shard, (op, row) in cursors.items():
            seen = [r for r, s, _ in fetched if s == shard]
            if shard in last:
                if frontier[shard] is None and last[shard] == seen[-1]:
                    continue  # this partition is exhausted
                next_cursors[shard] = ("gt", last[shard])
            elif seen or frontier[shard] is not None:
                next_cursors[shard] = (op, row)  # nothing of it emitted yet: same place again
        token = self._encode_cursor(next_cursors, scope) if next_cursors else None
        # Large payloads stay in their blobs here: a listing costs one call per partition, no more.
        return Page([self._from_entity(e) for _, _, e in emitted], token)

    async def _list_oldest(
        self, prefix: str, extra: str, limit: int, continuation: str | None, low: str | None, high: str | None
    ) -> Page:
        scope = hash_key(f"oldest|{prefix}|{low}|{high}{extra}")[:8]  # the token is only good for the same listing
        try:
            state = oldest.decode(continuation, scope) if continuation else None
        except LookupError as exc:
            raise BadContinuation(str(exc)) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise BadContinuation("continuation token is not one this service issued") from exc
        entities, state = await oldest.list_oldest(self, prefix, extra, limit, state, low, high)
        return Page([self._from_entity(e) for e in entities], oldest.encode(state, scope) if state else None)

    async def query_page(
        self, shard: int, row_condition: str, extra: str, limit: int, select: list[str] | None = None
    ) -> tuple[list[dict[str, Any]], bool]:
        """The first page of a query in one partition, and whether the service has more. (Its
        continuation is opaque: Azure sends a hash of the next row key, so never read it.)"""
        query = f"PartitionKey eq '{partition_key(shard)}' and {row_condition}{extra}"
        pages = self.table.query_entities(query, results_per_page=limit, select=select).by_page()
        try:
            rows = [entity async for entity in await pages.__anext__()]
        except StopAsyncIteration:
            rows = []
        return rows, bool(pages.continuation_token)

    async def window(self, start: datetime, end: datetime, statuses: Iterable[Status]) -> AsyncIterator[Versioned]:
        """Jobs due in [start, end) with one of `statuses`: what the reconciler looks at."""
        wanted = " or ".join(f"status eq '{s}'" for s in statuses)
        for shard in range(self.partitions):
            async for entity in self.table.query_entities(f"{_due_between(shard, start, end)} and ({wanted})"):
                # Repairs never need the payload: blobs stay where they are.
                yield Versioned(self._from_entity(entity), entity.metadata["etag"])

    async def due_rows(self, start: datetime, end: datetime, select: list[str]) -> list[dict[str, Any]]:
        """Some properties of every job due in [start, end), all partitions at once (the
        dashboard's counts): a range of row keys per partition, never the history."""
        pages = await asyncio.gather(*(self._rows(_due_between(shard, start, end), select)
                                       for shard in range(self.partitions)))  # fmt: skip
        return [row for page in pages for row in page]

    async def _rows(self, query: str, select: list[str]) -> list[dict[str, Any]]:
        return [row async for row in self.table.query_entities(query, select=select)]

    async def delete_finished_before(self, cutoff: datetime, max_jobs: int) -> int:
        """Delete terminal jobs that were due and finished before `cutoff`, with their blobs and
        idempotency records, in entity-group transactions of up to 100 rows. Each job's row is
        deleted only at the version read (a redrive racing this keeps its job), and its blobs only
        once its row is gone."""
        terminal = " or ".join(f"status eq '{s}'" for s in TERMINAL)
        deleted = 0
        for shard in range(self.partitions):
            query = (
                f"PartitionKey eq '{partition_key(shard)}' and RowKey ge '{row_key_at(cutoff)}' "
                f"and RowKey lt '{JOB_ROWS_END}' and ({terminal})"
            )
            batch: list[_Deletion] = []  # one per job, not yet submitted
            async for entity in self.table.query_entities(query):
                finished = parse_time(entity.get("finished_at"))
                if finished is not None and finished >= cutoff:
                    continue
                deletion = _Deletion.of(entity)
                if sum(len(d.rows) for d in batch) + len(deletion.rows) > BATCH_LIMIT:
                    deleted += await self._submit_deletes(batch)
                    batch = []
                batch.append(deletion)
                if deleted + len(batch) >= max_jobs:
                    break
            if batch:
                deleted += await self._submit_deletes(batch)
            if deleted >= max_jobs:
                break
        return deleted

    async def _submit_deletes(self, batch: list[_Deletion]) -> int:
        """Delete the jobs of `batch`; how many went. One transaction, or one job at a time when it
        fails (a row already gone, or a job that changed since it was read)."""
        try:
            await self.table.submit_transaction([op for deletion in batch for op in deletion.operations()])
            gone = batch
        except TableTransactionError:
            gone = [deletion for deletion in batch if await self._delete_one(deletion)]
        for deletion in gone:
            await self._drop_blobs(deletion.entity)
        return len(gone)

    async def _delete_one(self, deletion: _Deletion) -> bool:
        """The job row first, at the version read: if it changed (a redrive), the job and its
        companion rows stay. A row already gone is one less to delete."""
        (partition, job_row), *companions = deletion.rows
        if not await delete_if_unchanged(self.table, partition, job_row, deletion.etag):
            return False
        for row in companions:
            await self.table.delete_entity(*row)
        return True

    # --- entity mapping ----------------------------------------------------------------------

    def _to_entity(self, job: Job, values: tuple[str, ...] = ("payload", "result")) -> dict[str, Any]:
        key = job.key
        entity: dict[str, Any] = {
            "PartitionKey": key.partition_key,
            "RowKey": key.row_key,
            "type": job.type,
            "status": str(job.status),
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "errors": property_json(list(job.errors)),
        }
        for name in ("created_at", "updated_at", "due_at", "not_before", "started_at", "finished_at", "lease_until"):
            value = getattr(job, name)
            if value is not None:
                entity[name] = value.isoformat()
        if job.idempotency_key:
            entity["idem"] = job.idempotency_key
        if job.trace:
            entity["trace"] = job.trace
        if job.operation:
            entity["op"] = job.operation
        if job.priority is not Priority.NORMAL:  # a plain job's record stays as it was
            entity["priority"] = str(job.priority)
        for name in values:
            blob_name = job.extra.get(f"{name}_blob")
            if blob_name:
                entity[f"{name}_blob"] = blob_name
            elif name == "payload" or job.result is not None:
                entity[name] = property_json(getattr(job, name))
        return entity

    async def _offload(self, job: Job, values: tuple[str, ...] = ("payload", "result")) -> Job:
        """Move a payload or result too large for a property into a blob (once)."""
        extra = dict(job.extra)
        for name in values:
            value = getattr(job, name)
            if value is None or f"{name}_blob" in extra:
                continue
            if _too_large_inline(value):
                blob_name = _blob_name(job, name)
                text = json.dumps(value, separators=(",", ":"))  # escaped: a lone surrogate is no UTF-8
                await self.storage.container.upload_blob(blob_name, text.encode(), overwrite=True)
                extra[f"{name}_blob"] = blob_name
        return job if extra == job.extra else replace(job, extra=extra)

    async def _load_blobs(self, job: Job) -> Job:
        """The job with its payload and result read from their blobs, if they are in blobs."""
        loaded = {}
        for name in ("payload", "result"):
            blob_name = job.extra.get(f"{name}_blob")
            if blob_name:
                downloader = await self.storage.container.download_blob(blob_name)
                loaded[name] = json.loads(await downloader.readall())
        return replace(job, **loaded) if loaded else job

    @staticmethod
    def _get_value(entity: dict[str, Any], name: str) -> Any:
        if entity.get(f"{name}_blob"):  # the claim check wins over an inline placeholder
            return None
        return json.loads(entity[name]) if entity.get(name) else None

    def _from_entity(self, entity: dict[str, Any]) -> Job:
        """The job as its record holds it: a payload or result in a blob stays there (None)."""
        times = {
            name: parse_time(entity.get(name))
            for name in ("created_at", "updated_at", "due_at", "not_before", "started_at", "finished_at", "lease_until")
        }
        extra = {k: entity[k] for k in ("payload_blob", "result_blob") if entity.get(k)}
        row = entity["RowKey"]
        if row.startswith(INDEX_PREFIX):  # an index copy: s.<status>.<row>
            row = row.rsplit(".", 1)[1]
        job = Job(
            id=f"{entity['PartitionKey'][1:]}{row}",
            type=entity["type"],
            status=Status(entity["status"]),
            attempt=int(entity["attempt"]),
            max_attempts=int(entity["max_attempts"]),
            payload=self._get_value(entity, "payload"),
            result=self._get_value(entity, "result"),
            errors=tuple(json.loads(entity.get("errors") or "[]")),
            idempotency_key=entity.get("idem"),
            trace=entity.get("trace"),
            operation=entity.get("op"),
            priority=Priority(entity.get("priority") or Priority.NORMAL),
            # Written only by parking's merge: a replace (any transition) drops it.
            parked=bool(entity.get("parked")),
            extra=extra,
            **times,  # type: ignore[arg-type]
        )
        return job

    async def _drop_unwritten_result(self, new: Job, found: Versioned | None) -> None:
        """The result blob a refused write uploaded before it, which no record names."""
        if new.result is None or not _too_large_inline(new.result):
            return  # inline: no blob was uploaded
        name = _blob_name(new, "result")
        if found is None or found.job.extra.get("result_blob") != name:
            with contextlib.suppress(ResourceNotFoundError):
                await self.storage.container.delete_blob(name)

    async def _drop_blobs(self, entity: dict[str, Any]) -> None:
        for name in ("payload_blob", "result_blob"):
            blob_name = entity.get(name)
            if blob_name:
                with contextlib.suppress(ResourceNotFoundError):
                    await self.storage.container.delete_blob(blob_name)

    # --- continuation tokens -----------------------------------------------------------------

    def _encode_cursor(self, cursors: dict[int, tuple[str, str]], scope: str) -> str:
        raw = json.dumps({"f": hash_key(scope)[:8], "c": {str(s): list(c) for s, c in cursors.items()}})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def _decode_cursor(self, token: str | None, scope: str, start: str = "0") -> dict[int, tuple[str, str]]:
        if not token:
            return {shard: ("ge", start) for shard in range(self.partitions)}
        try:
            raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if not isinstance(raw, dict) or not isinstance(raw.get("c"), dict):
                raise BadContinuation("continuation token is not one this service issued")
            if raw["f"] != hash_key(scope)[:8]:
                raise BadContinuation("continuation token belongs to a listing with other filters")
            cursors = {int(s): (str(op), str(row)) for s, (op, row) in raw["c"].items()}
        except BadContinuation:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise BadContinuation("continuation token is not one this service issued") from exc
        for shard, (op, row) in cursors.items():
            if op not in ("gt", "ge") or not _ROW.match(row) or not 0 <= shard < 100:
                raise BadContinuation("continuation token is not one this service issued")
        return cursors


def _due_between(shard: int, start: datetime, end: datetime) -> str:
    """The rows of one partition's jobs due from `start` to `end` (row keys run newest first)."""
    pk = partition_key(shard)
    return f"PartitionKey eq '{pk}' and RowKey ge '{row_key_at(end)}' and RowKey le '{row_key_at(start)}~'"


def _filters(status: str | None, job_type: str | None) -> str:
    # Values are validated by the caller (a known status, a registered type); quotes are escaped
    # anyway so a filter can never be widened.
    out = ""
    if status:
        out += f" and status eq '{status.replace(chr(39), chr(39) * 2)}'"
    if job_type:
        out += f" and type eq '{job_type.replace(chr(39), chr(39) * 2)}'"
    return out


def index_row(status: Status, job: Job) -> str:
    return f"{INDEX_PREFIX}{status}.{job.key.row_key}"


def row_range(since: datetime | None, until: datetime | None) -> tuple[str | None, str | None] | None:
    """Row keys of jobs due in [since, until): (lowest included, first excluded), either open;
    None when no job can be in it (an empty range, or one outside the times a row key holds).
    Row keys grow as due times go back, so `until` gives the low end."""
    since_ms = min(max(to_ms(since), 0), MS_CEILING) if since else 0
    until_ms = min(to_ms(until), MS_CEILING + 1) if until else MS_CEILING + 1
    if until_ms <= since_ms:
        return None
    low = f"{MS_CEILING - until_ms + 1:013d}" if until_ms <= MS_CEILING else None
    high = f"{MS_CEILING - since_ms + 1:013d}" if since_ms > 0 else None
    return low, high


# --- idempotency records, for callers that derive their keys (shared/schedules/) -------------------


def idempotency_record(idempotency_key: str, partitions: int) -> tuple[int, str]:
    """Where a submit with this key keeps its record: the job's shard (as JobService.submit picks
    it) and the record's row key. Its `job_row` names the job the key made."""
    key_hash = hash_key(idempotency_key)
    return int(key_hash, 16) % partitions, _IDEM_PREFIX + key_hash


def _too_large_inline(value: Any) -> bool:
    """Whether a payload or result goes to a blob rather than into its record's property."""
    return property_chars(property_json(value)) > INLINE_LIMIT_CHARS


def _blob_name(job: Job, name: str) -> str:
    """Where a payload or result too large for a property goes. A result is named for its
    attempt: a stale attempt's late result, whose write is then refused, must not replace the
    result of the attempt that won."""
    return f"{job.id}/{name}.{job.attempt}.json" if name == "result" else f"{job.id}/{name}.json"
