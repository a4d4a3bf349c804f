"""The job service: submit, read, list, cancel and redrive jobs. What the HTTP API calls.

Write order is chosen so that a crash between any two calls loses nothing:
- submit: insert the record, then put the message. A lost put is found by the reconciler,
  which scans recently due jobs.
- redrive: note the job on the reconciler's watch list, write the record, put the message. The
  job may be old (outside the reconciler's window), so the watch entry is what finds a lost put.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from opentelemetry.trace import SpanKind

from shared import signals
from shared.config import Config
from shared.idempotency import RequestHash, hash_key
from shared.job import AlreadyApplied, InvalidTransition, Job, Priority, utcnow
from shared.messages import enqueue
from shared.registry import Registry
from shared.storage import Storage
from shared.store import ConcurrencyConflict, JobStore, Page, Versioned
from shared.telemetry import Telemetry, job_attributes
from shared.watchlist import WatchList

log = logging.getLogger("jobs.service")
CONFLICT_RETRIES = 5
PARALLEL_PUTS = 8  # a batch's messages put at once
HEALTH_CHECK_SECONDS = 5.0


class NotFound(Exception):
    pass


class Conflict(Exception):
    """The job's state does not allow the change; `reason` says why."""

    def __init__(self, reason: str, already_applied: bool = False, retry_at: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.already_applied = already_applied  # the bulk operation asking made this change before
        self.retry_at = retry_at  # when the change may be allowed, if a time is all it waits for


@dataclass(frozen=True)
class Submission:
    """One validated job request."""

    type: str
    payload: Any
    max_attempts: int | None = None
    delay_seconds: float = 0
    run_at: datetime | None = None  # instead of delay_seconds
    priority: Priority | None = None


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False when an Idempotency-Key returned an existing job


@dataclass
class JobService:
    storage: Storage
    store: JobStore
    registry: Registry
    config: Config
    telemetry: Telemetry
    watchlist: WatchList  # the reconciler's, for jobs too old for its window

    async def submit(
        self,
        job_type: str,
        payload: Any,
        max_attempts: int | None = None,
        delay_seconds: float = 0,
        idempotency_key: str | None = None,
        request_hash: RequestHash | None = None,
        run_at: datetime | None = None,
        priority: Priority | str | None = None,
    ) -> Submitted:
        """Insert the job, then put its message. `run_at` (an absolute time) or `delay_seconds` say
        when it may start; `priority` picks its queue (default: its type's, else normal)."""
        attempts = self._attempts(job_type, max_attempts)
        key_hash = hash_key(idempotency_key) if idempotency_key else None
        shard = int(key_hash, 16) % self.config.partitions if key_hash else random.randrange(self.config.partitions)
        with self.telemetry.span(signals.SPAN_SUBMIT, kind=SpanKind.PRODUCER) as span:
            now = utcnow()
            job = Job.new(
                job_type, payload, attempts, shard, delay=_delay(delay_seconds, run_at, now), now=now,
                idempotency_key=key_hash, trace=self.telemetry.current_traceparent(),
                priority=self._priority(job_type, priority),
            )  # fmt: skip
            span.set_attributes(job_attributes(job))
            stored = await self.store.insert(job, request_hash=request_hash)
            if stored.job.id != job.id:
                return Submitted(stored.job, created=False)
            await enqueue(self.storage, stored.job, stored.etag)
        self.telemetry.count(signals.SUBMITTED, job)
        log.info("job submitted", extra=job_attributes(job))
        return Submitted(stored.job, created=True)

    async def submit_batch(
        self, subs: list[Submission], idempotency_key: str | None = None, request_hash: RequestHash | None = None
    ) -> tuple[list[Job | Exception], bool]:
        """Jobs that share one partition, inserted in entity-group transactions, then enqueued.
        A result per submission (its job, or why it was not stored), and whether an
        Idempotency-Key returned an earlier batch instead."""
        key_hash = hash_key(idempotency_key) if idempotency_key else None
        shard = int(key_hash, 16) % self.config.partitions if key_hash else random.randrange(self.config.partitions)
        with self.telemetry.span(signals.SPAN_SUBMIT, kind=SpanKind.PRODUCER, batch=len(subs)):
            trace = self.telemetry.current_traceparent()
            now = utcnow()
            jobs = [
                Job.new(
                    sub.type, sub.payload, self._attempts(sub.type, sub.max_attempts), shard,
                    delay=_delay(sub.delay_seconds, sub.run_at, now), now=now, trace=trace,
                    priority=self._priority(sub.type, sub.priority),
                )
                for sub in subs
            ]  # fmt: skip
            if key_hash:  # the first job points at the key's record, so retention deletes both
                jobs[0] = replace(jobs[0], idempotency_key=key_hash)
            results, replayed = await self.store.insert_batch(jobs, key_hash, request_hash)
            if replayed:
                return [r.job if isinstance(r, Versioned) else r for r in results], True
            stored = [r for r in results if isinstance(r, Versioned)]
            await gather_bounded([enqueue(self.storage, v.job, v.etag) for v in stored], PARALLEL_PUTS)
        for v in stored:
            self.telemetry.count(signals.SUBMITTED, v.job)
        log.info("batch submitted: %d of %d jobs", len(stored), len(subs))
        return [r.job if isinstance(r, Versioned) else r for r in results], False

    def _priority(self, job_type: str, requested: Priority | str | None) -> Priority:
        if requested is not None:
            return Priority(requested)
        spec = self.registry.get(job_type)
        return (spec.priority if spec else None) or Priority.NORMAL

    def _attempts(self, job_type: str, requested: int | None) -> int:
        spec = self.registry.get(job_type)
        return requested or (spec.max_attempts if spec else None) or self.config.max_attempts

    async def get(self, job_id: str) -> Job:
        try:
            found = await self.store.get(job_id)
        except ResourceNotFoundError:
            # Its payload or result blob is gone (deleted by hand, say): the record still answers.
            log.warning("job %s: a payload or result blob is missing", job_id)
            found = await self.store.get(job_id, load_blobs=False)
        if found is None:
            raise NotFound(job_id)
        return found.job

    async def list(
        self,
        status: str | None,
        job_type: str | None,
        limit: int,
        continuation: str | None,
        since: datetime | None = None,
        until: datetime | None = None,
        order: str = "newest",
    ) -> Page:
        return await self.store.list(status, job_type, limit, continuation, since, until, order)

    async def cancel(self, job_id: str, operation: str | None = None) -> Job:
        job = (await self._transition(job_id, lambda job: job.cancel(operation=operation))).job
        self.telemetry.count(signals.CANCELLED, job)
        log.info("job cancelled", extra=job_attributes(job))
        return job

    async def redrive(
        self, job_id: str, extra_attempts: int = 1, operation: str | None = None, watched: bool = False
    ) -> Job:
        """Watch first, then write, then enqueue: a crash anywhere leaves the watch entry, which
        the reconciler follows to re-enqueue (the job may be too old for its window). `watched`:
        the caller has already written the entry (a bulk operation, for a page at once)."""
        watched_ids: list[str] = [job_id] if watched else []

        async def watch_once(job: Job) -> None:
            if self.watchlist.ahead_of_window(job.id, utcnow()):
                return
            if not watched_ids:
                await self.watchlist.add(job.id)
                watched_ids.append(job.id)

        written = await self._transition(
            job_id, lambda job: job.redrive(extra_attempts, operation=operation), before_write=watch_once
        )
        with self.telemetry.span(signals.SPAN_REPAIR, written.job, parent=written.job.trace, reason="redrive"):
            await enqueue(self.storage, written.job, written.etag)
        log.info("job redriven", extra=job_attributes(written.job))
        return written.job

    async def _transition(
        self, job_id: str, change: Callable[[Job], Job], before_write: Callable[[Job], Awaitable[None]] | None = None
    ) -> Versioned:
        for _ in range(CONFLICT_RETRIES):
            found = await self.store.get(job_id, load_blobs=False)
            if found is None:
                raise NotFound(job_id)
            try:
                new = change(found.job)
            except InvalidTransition as exc:
                raise Conflict(exc.reason, isinstance(exc, AlreadyApplied), exc.retry_at) from None
            if before_write is not None:
                await before_write(new)
            try:
                return await self.store.replace(new, found.etag, was=found.job.status)
            except ConcurrencyConflict:
                continue  # a worker moved it meanwhile: decide again on the fresh state
        raise Conflict("the job is changing too fast; try again")

    # --- health ------------------------------------------------------------------------------

    async def health(self) -> dict[str, str]:
        """'ok' or the error, per dependency, looked at together, each for at most half the API's
        time limit (and 5 s): a storage that does not answer is named, not waited for."""
        seconds = min(HEALTH_CHECK_SECONDS, self.config.api_timeout_seconds / 2)

        async def check(probe: Awaitable[Any], row: bool = False) -> str:
            try:
                await asyncio.wait_for(probe, seconds)
            except TimeoutError:
                return f"no answer in {seconds:g} s"
            except ResourceNotFoundError as exc:
                # The table answered that the probed row is not there: healthy. A missing table is not.
                return "ok" if row and exc.error_code != "TableNotFound" else short_error(exc)
            except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, and we say which
                return short_error(exc)
            return "ok"

        table, queue = await asyncio.gather(
            check(self.storage.table.get_entity("health", "probe"), row=True),
            check(self.storage.queue.get_queue_properties()),
        )
        return {"table": table, "queue": queue}


def _delay(delay_seconds: float, run_at: datetime | None, now: datetime) -> timedelta:
    """How long until a job may start: until `run_at` (none if it has passed), else the delay."""
    if run_at is not None:
        return max(run_at - now, timedelta(0))
    return timedelta(seconds=delay_seconds)


async def gather_bounded(calls: list[Coroutine[Any, Any, Any]], limit: int) -> list[Any]:
    """Await the calls, at most `limit` at a time; their results in order, or the first error
    (the other calls still run to their end)."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Coroutine[Any, Any, Any]) -> Any:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(c) for c in calls)))


def short_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
