"""Bulk operations: redrive or cancel every job matching a filter, or a list of ids.

An operation is a record in the jobs table (partition `ops`) and runs on the job machinery: the
API writes the record and puts a message `{"op": id}` on the jobs queue; the worker that
receives it works through pages of up to 100 jobs for a few seconds, saving the cursor and the
counts after each page with a conditional write, then puts the next message. So a large set never
runs inside an HTTP request, and a crash at any point loses nothing:

- after the record, before the first message: the reconciler re-enqueues a running operation
  whose record has not moved for a while (`repair`);
- in the middle of a page: the message comes back (the host retries it), and the page is done
  again from the saved cursor. Each job carries the id of the last operation that changed it, and
  an operation never redrives a job that carries its own id, so nothing is redriven twice;
- two messages for one operation (a crash after the next put, before the delete): both may work
  on the same page, only one can save it, and the other stops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.contract import JobFilter, OperationStatus
from shared.idempotency import RequestHash, hash_key, recorded
from shared.job import MS_CEILING, Status, isoformat, parse_time, to_ms, utcnow
from shared.properties import property_json
from shared.service import Conflict, JobService, NotFound, gather_bounded
from shared.storage import Storage
from shared.store import ConcurrencyConflict

log = logging.getLogger("jobs.operations")

PARTITION = "ops"
PAGE = 100  # jobs per page: one listing query per partition, one conditional write of the record
STEP_SECONDS = 10.0  # pages per message, so a message is not held for long
PARALLEL = 8  # jobs of a page changed at once
MAX_ERRORS = 20
STALLED = timedelta(minutes=2)  # a running operation whose record has not moved for this long is re-enqueued
ACTIONS: dict[str, tuple[Status, ...]] = {
    "retry": (Status.DEAD_LETTERED, Status.CANCELLED),
    "cancel": (Status.QUEUED, Status.RUNNING),
}


class OperationNotFound(Exception):
    pass


@dataclass(frozen=True)
class Operation:
    id: str
    action: str
    status: OperationStatus
    filter: JobFilter | None
    ids: tuple[str, ...] | None
    extra_attempts: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    phase: int = 0  # which of the action's statuses a filter without one is on
    cursor: str | None = None  # the listing's continuation within the phase
    position: int = 0  # the next index into `ids`
    matched: int = 0
    applied: int = 0
    skipped: int = 0
    failed: int = 0
    errors: tuple[dict[str, str], ...] = ()
    idempotency_key: str | None = None
    etag: str = field(default="", compare=False)

    @property
    def statuses(self) -> tuple[Status, ...]:
        if self.filter is not None and self.filter.status is not None:
            return (self.filter.status,)
        return ACTIONS[self.action]

    def to_resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "status": str(self.status),
            "filter": self.filter.model_dump(mode="json", exclude_none=True) if self.filter else None,
            "ids_count": len(self.ids) if self.ids is not None else None,
            "extra_attempts": self.extra_attempts,
            "matched": self.matched,
            "applied": self.applied,
            "skipped": self.skipped,
            "failed": self.failed,
            "errors": list(self.errors),
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "finished_at": isoformat(self.finished_at),
        }


@dataclass(frozen=True)
class Started:
    operation: Operation
    created: bool  # False when an Idempotency-Key returned an earlier operation


@dataclass(frozen=True)
class PageOutcome:
    applied: int = 0
    skipped: int = 0
    failed: int = 0
    errors: tuple[dict[str, str], ...] = ()


class Operations:
    """Starts, reads and runs bulk operations."""

    def __init__(self, storage: Storage, service: JobService) -> None:
        self.storage = storage
        self.table = storage.table
        self.service = service

    @staticmethod
    def statuses(action: str) -> tuple[Status, ...]:
        return ACTIONS[action]

    # --- the API side --------------------------------------------------------------------------

    async def start(
        self,
        action: str,
        job_filter: JobFilter | None,
        ids: list[str] | None,
        extra_attempts: int | None = None,
        idempotency_key: str | None = None,
        request_hash: RequestHash | None = None,
    ) -> Started:
        now = utcnow()
        op = Operation(
            id=f"o{MS_CEILING - to_ms(now):013d}{secrets.token_hex(4)}",
            action=action, status=OperationStatus.RUNNING, filter=job_filter,
            ids=tuple(dict.fromkeys(ids)) if ids is not None else None,  # each id once
            extra_attempts=extra_attempts if action == "retry" else None,
            created_at=now, updated_at=now,
            idempotency_key=hash_key(idempotency_key) if idempotency_key else None,
        )  # fmt: skip
        entity = _to_entity(op)
        if op.idempotency_key is None:
            op = replace(op, etag=(await self.table.create_entity(entity))["etag"])
        else:
            key_row = {"PartitionKey": PARTITION, "RowKey": f"k{op.idempotency_key}", "op": op.id,
                       "request_hash": recorded(request_hash)}  # fmt: skip
            try:
                written = await self.table.submit_transaction([("create", entity), ("create", key_row)])
                op = replace(op, etag=written[0]["etag"])
            except TableTransactionError as exc:
                if exc.error_code != "EntityAlreadyExists":
                    raise
                return Started(await self._for_key(op.idempotency_key, request_hash), created=False)
        await self._enqueue(op.id)
        log.info("bulk %s started: %s", action, op.id, extra={"operation": op.id})
        return Started(op, created=True)

    async def _for_key(self, key_hash: str, request_hash: RequestHash | None) -> Operation:
        row = await self.table.get_entity(PARTITION, f"k{key_hash}")
        if request_hash:
            request_hash.check(row)
        return await self.get(row["op"])

    async def get(self, op_id: str) -> Operation:
        if not (op_id.startswith("o") and 14 <= len(op_id) <= 40 and op_id[1:].isalnum()):
            raise OperationNotFound(op_id)
        try:
            entity = await self.table.get_entity(PARTITION, op_id)
        except ResourceNotFoundError:
            raise OperationNotFound(op_id) from None
        return _from_entity(entity)

    async def _enqueue(self, op_id: str) -> None:
        await self.storage.queue.send_message(json.dumps({"op": op_id}), time_to_live=-1)

    # --- the worker side -----------------------------------------------------------------------

    async def process(self, op_id: str, clock: Callable[[], float] = time.monotonic) -> str:
        """Work on the operation for up to STEP_SECONDS, a page at a time; then hand over to the
        next message. Returns what happened, for the log."""
        try:
            op = await self.get(op_id)
        except OperationNotFound:
            return "gone"
        if op.status is not OperationStatus.RUNNING:
            return "finished"
        started = clock()
        while op.status is OperationStatus.RUNNING:
            job_ids, advance = await self._next_page(op)
            outcome = await self._apply(op, job_ids)
            moved = advance(op)
            new = replace(
                moved, matched=op.matched + len(job_ids), applied=op.applied + outcome.applied,
                skipped=op.skipped + outcome.skipped, failed=op.failed + outcome.failed,
                errors=(*op.errors, *outcome.errors)[:MAX_ERRORS], updated_at=utcnow(),
            )  # fmt: skip
            if new.status is not OperationStatus.RUNNING:
                new = replace(new, finished_at=new.updated_at)
            try:
                op = await self._save(new, op.etag)
            except ConcurrencyConflict:
                return "superseded"  # another message of this operation saved first: it goes on
            if op.status is OperationStatus.RUNNING and clock() - started >= STEP_SECONDS:
                await self._enqueue(op.id)
                return "continued"
        log.info(
            "bulk %s %s: %d matched, %d applied, %d skipped, %d failed", op.action, op.status,
            op.matched, op.applied, op.skipped, op.failed, extra={"operation": op.id},
        )  # fmt: skip
        return str(op.status)

    async def _next_page(self, op: Operation) -> tuple[list[str], Callable[[Operation], Operation]]:
        """The ids of the next page, and how the operation's position moves past it."""
        if op.ids is not None:
            end = op.position + PAGE
            done = end >= len(op.ids)

            def past_ids(o: Operation) -> Operation:
                return replace(o, position=end, status=OperationStatus.SUCCEEDED if done else o.status)

            return list(op.ids[op.position : end]), past_ids
        f = op.filter or JobFilter()
        status = op.statuses[op.phase]
        page = await self.service.list(str(status), f.type, PAGE, op.cursor, since=f.since, until=f.until)
        last_phase = op.phase + 1 >= len(op.statuses)

        def past_page(o: Operation) -> Operation:
            if page.continuation is not None:
                return replace(o, cursor=page.continuation)
            if last_phase:
                return replace(o, cursor=None, status=OperationStatus.SUCCEEDED)
            return replace(o, cursor=None, phase=o.phase + 1)

        return [job.id for job in page.jobs], past_page

    async def _apply(self, op: Operation, job_ids: list[str]) -> PageOutcome:
        if not job_ids:
            return PageOutcome()
        if op.action == "retry":
            # The reconciler's watch entries for the whole page in one call, before any job is
            # written: a crash after a job's write and before its put leaves the entry that finds
            # it. A job that is then not redriven loses its entry at the reconciler's next run.
            await self.service.watchlist.add_many(job_ids)
        results = await gather_bounded([self._apply_one(op, job_id) for job_id in job_ids], PARALLEL)
        errors = tuple({"id": job_id, "error": r} for job_id, r in zip(job_ids, results, strict=True)
                       if r not in ("applied", "skipped"))  # fmt: skip
        return PageOutcome(results.count("applied"), results.count("skipped"), len(errors), errors)

    async def _apply_one(self, op: Operation, job_id: str) -> str:
        try:
            if op.action == "retry":
                await self.service.redrive(job_id, extra_attempts=op.extra_attempts or 1, operation=op.id, watched=True)
            else:
                await self.service.cancel(job_id, operation=op.id)
        except Conflict as exc:
            return "applied" if exc.already_applied else "skipped"
        except NotFound:
            return "skipped"
        except Exception as exc:  # noqa: BLE001 - one job's failure is counted, the rest go on
            log.warning("bulk %s of job %s failed: %s", op.action, job_id, exc, extra={"operation": op.id})
            return f"{type(exc).__name__}: {str(exc)[:300]}"
        return "applied"

    async def _save(self, op: Operation, etag: str) -> Operation:
        try:
            meta = await self.table.update_entity(
                _to_entity(op), mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyConflict(op.id) from exc
            raise
        return replace(op, etag=meta["etag"])

    async def fail(self, op_id: str, reason: str) -> bool:
        """The host gave up on the operation's message: it ends failed, with the reason."""
        try:
            op = await self.get(op_id)
        except OperationNotFound:
            return False
        if op.status is not OperationStatus.RUNNING:
            return False
        now = utcnow()
        error = {"id": op.id, "error": reason}
        failed = replace(op, status=OperationStatus.FAILED, updated_at=now, finished_at=now,
                         errors=(*op.errors, error)[:MAX_ERRORS])  # fmt: skip
        with contextlib.suppress(ConcurrencyConflict):
            await self._save(failed, op.etag)
            return True
        return False

    # --- the reconciler side -------------------------------------------------------------------

    async def running(self) -> AsyncIterator[Operation]:
        query = f"PartitionKey eq '{PARTITION}' and status eq '{OperationStatus.RUNNING}'"
        async for entity in self.table.query_entities(query):
            yield _from_entity(entity)

    async def repair(self, now: datetime) -> int:
        """Re-enqueue running operations whose record has not moved for a while: their message
        was lost (a crash between the record and the put). A duplicate message is harmless."""
        stalled = [op async for op in self.running() if op.updated_at + STALLED <= now]
        for op in stalled:
            with contextlib.suppress(ConcurrencyConflict):
                await self._save(replace(op, updated_at=now), op.etag)  # so the next run does not repeat it
                await self._enqueue(op.id)
                log.warning("re-enqueued a stalled bulk operation", extra={"operation": op.id})
        return len(stalled)

    async def prune(self, cutoff: datetime, max_rows: int = 1000) -> int:
        """Delete finished operations (and their idempotency rows) older than `cutoff`. Row keys
        grow as creation times go back, and an operation finished before `cutoff` was created
        before it: only those rows are read, not the whole retention period's."""
        created_before = f"o{MS_CEILING - to_ms(cutoff):013d}"
        query = (f"PartitionKey eq '{PARTITION}' and RowKey ge '{created_before}' and RowKey lt 'p' "
                 f"and status ne '{OperationStatus.RUNNING}'")  # fmt: skip
        deleted = 0
        async for entity in self.table.query_entities(query, select=["RowKey", "finished_at", "idem"]):
            finished = parse_time(entity.get("finished_at"))
            if finished is None or finished >= cutoff:
                continue
            for row in (entity["RowKey"], f"k{entity['idem']}" if entity.get("idem") else None):
                if row:
                    with contextlib.suppress(ResourceNotFoundError):
                        await self.table.delete_entity(PARTITION, row)
            deleted += 1
            if deleted >= max_rows:
                break
        return deleted


def _to_entity(op: Operation) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": op.id,
        "action": op.action,
        "status": str(op.status),
        "phase": op.phase,
        "position": op.position,
        "matched": op.matched,
        "applied": op.applied,
        "skipped": op.skipped,
        "failed": op.failed,
        "errors": property_json(list(op.errors)),  # 20 of 300 characters: always fits unescaped
        "created_at": op.created_at.isoformat(),
        "updated_at": op.updated_at.isoformat(),
    }
    if op.filter is not None:
        entity["filter"] = op.filter.model_dump_json(exclude_none=True)
    if op.ids is not None:
        entity["ids"] = ",".join(op.ids)  # at most 1,000 ids of 25 characters: under a property's 64 KiB
    for name, value in (("extra_attempts", op.extra_attempts), ("cursor", op.cursor), ("idem", op.idempotency_key)):
        if value is not None:
            entity[name] = value
    if op.finished_at is not None:
        entity["finished_at"] = op.finished_at.isoformat()
    return entity


def _from_entity(entity: dict[str, Any]) -> Operation:
    return Operation(
        id=entity["RowKey"],
        action=entity["action"],
        status=OperationStatus(entity["status"]),
        filter=JobFilter.model_validate_json(entity["filter"]) if entity.get("filter") else None,
        ids=tuple(entity["ids"].split(",")) if entity.get("ids") else None,
        extra_attempts=entity.get("extra_attempts"),
        created_at=parse_time(entity["created_at"]),  # type: ignore[arg-type]
        updated_at=parse_time(entity["updated_at"]),  # type: ignore[arg-type]
        finished_at=parse_time(entity.get("finished_at")),
        phase=int(entity.get("phase", 0)),
        cursor=entity.get("cursor"),
        position=int(entity.get("position", 0)),
        matched=int(entity.get("matched", 0)),
        applied=int(entity.get("applied", 0)),
        skipped=int(entity.get("skipped", 0)),
        failed=int(entity.get("failed", 0)),
        errors=tuple(json.loads(entity.get("errors") or "[]")),
        idempotency_key=entity.get("idem"),
        etag=entity.metadata["etag"] if hasattr(entity, "metadata") else "",
    )
