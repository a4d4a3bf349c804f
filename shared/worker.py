"""The worker: one queue message in, one attempt of one job run (or a good reason not to).

    message {id, attempt}
      -> read the record (1 transaction)
      -> drop it if stale or a duplicate; set it aside if malformed
      -> claim: queued -> running, conditional on the ETag (1)
      -> run the handler
      -> succeeded | queued for the next attempt + a new hidden message | dead_lettered (1, +1)
The host deletes the message when this returns (1), or retries it if this raises: an error
outside the handler (storage down, a bug) is left to the host's maxDequeueCount and poison queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared import signals
from shared.config import Config
from shared.job import Job, Status, utcnow
from shared.messages import JobMessage, MalformedMessage, enqueue, operation_of, set_aside
from shared.operations import Operations
from shared.registry import HandlerSpec, JobCancelled, JobContext, Registry
from shared.retry import PermanentError, RetryLater, RetryPolicy
from shared.storage import Storage
from shared.store import ConcurrencyConflict, JobStore, Versioned
from shared.telemetry import Telemetry, job_attributes

log = logging.getLogger("jobs.worker")
LEASE_EXPIRED = "lease expired: the worker running this attempt was lost"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"
    STALE = "stale"  # the message is for an attempt that is over
    DUPLICATE = "duplicate"  # another worker holds this attempt
    NOT_DUE = "not_due"  # the message came before the attempt is due: sent again, hidden
    SET_ASIDE = "set_aside"  # not a job message: moved to the poison queue
    OPERATION = "operation"  # a bulk operation's message: a step of it was run


CLAIM_FIELDS = ("status", "started_at", "lease_until", "updated_at")
RESULT_FIELDS = ("status", "result", "result_blob", "finished_at", "lease_until", "updated_at")


@dataclass
class Worker:
    storage: Storage
    store: JobStore
    registry: Registry
    config: Config
    telemetry: Telemetry
    operations: Operations | None = None  # bulk operations ride on the jobs queue

    @property
    def defaults(self) -> RetryPolicy:
        c = self.config
        return RetryPolicy(c.max_attempts, c.backoff_base_seconds, c.backoff_max_seconds)

    def policy_for(self, job_type: str) -> RetryPolicy:
        spec = self.registry.get(job_type)
        return spec.policy(self.defaults) if spec else self.defaults

    def process(self, body: bytes | str) -> Outcome:
        try:
            message = JobMessage.decode(body)
        except MalformedMessage as exc:
            op_id = operation_of(body)
            if op_id is not None and self.operations is not None:
                log.debug("bulk operation %s: %s", op_id, self.operations.process(op_id))
                return Outcome.OPERATION
            set_aside(self.storage, body, str(exc))
            return Outcome.SET_ASIDE
        attrs = {signals.JOB_ID: message.id, signals.ATTEMPT: message.attempt}
        with self.telemetry.span(signals.SPAN_ATTEMPT, parent=message.trace, kind=SpanKind.CONSUMER, **attrs) as span:
            outcome = self._from_snapshot(message)
            if outcome is None:
                outcome = self._from_record(message, body)
            span.set_attribute(signals.OUTCOME, str(outcome))
            return outcome

    def _from_snapshot(self, message: JobMessage) -> Outcome | None:
        """Claim straight from the message: the claim is conditional on the ETag the record had
        when it scheduled this attempt, so it succeeds only if nothing happened since. Anything
        else (a cancel, a repair, a second delivery) falls back to reading the record."""
        snap = message.snapshot
        if snap is None:
            return None
        spec = self.registry.get(snap.type)
        now = utcnow()
        if spec is None or snap.due > now + timedelta(seconds=1):
            return None
        job = Job.from_message(
            message.id, message.attempt, snap.type, snap.payload, snap.max_attempts, snap.due, message.trace
        )
        try:
            claimed = self.store.update(job.claim(message.attempt, self._lease, now), snap.etag, CLAIM_FIELDS)
        except ConcurrencyConflict:
            return None
        return self._run(spec, job, claimed, now, complete=False)

    def _from_record(self, message: JobMessage, body: bytes | str) -> Outcome:
        found = self.store.get(message.id)
        if found is None:
            set_aside(self.storage, body, f"no job {message.id}")
            return Outcome.SET_ASIDE
        job = found.job
        trace.get_current_span().set_attributes(job_attributes(job))
        now = utcnow()
        if job.status.terminal:
            return self._drop(job, Outcome.STALE, f"job is already {job.status}")
        if message.attempt != job.attempt:
            if job.status is Status.QUEUED and message.attempt == job.attempt - 1:
                # The attempt this message was for scheduled the next one, then the process died
                # before the host deleted it: the next attempt's message may never have been put.
                enqueue(self.storage, job, found.etag)
            return self._drop(job, Outcome.STALE, f"message is for attempt {message.attempt}")
        if job.status is Status.RUNNING:
            if not job.lease_expired(now):
                return self._drop(job, Outcome.DUPLICATE, "attempt is held by another worker")
            return _outcome_of(self.fail_attempt(found, LEASE_EXPIRED))
        if job.not_before > now + timedelta(seconds=1):
            enqueue(self.storage, job, found.etag)
            return self._drop(job, Outcome.NOT_DUE, "attempt is not due yet")
        spec = self.registry.get(job.type)
        if spec is None:
            return _outcome_of(self.dead_letter(found, f"no handler for job type {job.type!r}"))
        try:
            claimed = self.store.update(job.claim(message.attempt, self._lease, now), found.etag, CLAIM_FIELDS)
        except ConcurrencyConflict:
            return self._drop(job, Outcome.DUPLICATE, "another worker claimed it first")
        return self._run(spec, job, claimed, now, complete=True)

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self.config.lease_seconds)

    def _run(self, spec: HandlerSpec, queued: Job, claimed: Versioned, now: datetime, complete: bool) -> Outcome:
        """Run the claimed attempt and record how it ended. `complete` says whether `claimed`
        holds the whole record (read from the table) or only what the message carried."""
        job = claimed.job
        wait_ms = (now - queued.not_before).total_seconds() * 1000
        self.telemetry.record(signals.QUEUE_WAIT, wait_ms, job)
        trace.get_current_span().set_attributes({**job_attributes(job), signals.QUEUE_WAIT_MS: wait_ms})
        # Debug only: the attempt's span already marks its start, and every exported line is billed.
        log.debug("attempt started", extra=job_attributes(job))
        ctx = JobContext(
            id=job.id, type=job.type, payload=job.payload, attempt=job.attempt, max_attempts=job.max_attempts,
            idempotency_key=job.idempotency_token, _checkpoint=lambda: self._is_cancelled(job.id),
        )  # fmt: skip
        started = time.perf_counter()
        failure: tuple[str, bool, float | None] | None = None
        try:
            result = _call(spec, ctx, self.config.lease_seconds)
        except JobCancelled:
            log.info("attempt stopped: job cancelled", extra=job_attributes(job))
            return Outcome.CANCELLED
        except RetryLater as exc:
            failure = (_describe(exc), True, exc.delay)
        except PermanentError as exc:
            failure = (_describe(exc), False, None)
        except Exception as exc:  # noqa: BLE001 - any handler error is a failed attempt
            failure = (_describe(exc), True, None)
        finally:
            self.telemetry.record(signals.ATTEMPT_DURATION, (time.perf_counter() - started) * 1000, job)
        if failure is None:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                failure = (f"handler returned a result that is not JSON: {exc}", False, None)
        if failure is not None:
            error, retryable, delay = failure
            current = claimed if complete else self.store.get(job.id)  # the error history is on the record
            if current is None or current.etag != claimed.etag:
                return _outcome_of(_lost_race(self.store, job))
            return _outcome_of(self.fail_attempt(current, error, retryable=retryable, delay=delay))
        done = self._write(claimed, job.succeed(result), RESULT_FIELDS)
        if done is not None and done.job.status is Status.SUCCEEDED:
            self.telemetry.count(signals.SUCCEEDED, done.job)
            log.info("attempt succeeded", extra=job_attributes(done.job))
        return _outcome_of(done)

    def fail_attempt(
        self, current: Versioned, error: str, retryable: bool = True, delay: float | None = None
    ) -> Versioned | None:
        """A failed attempt: schedule the next one (record first, then its hidden message) or
        dead-letter the job. The new state, or what won if someone else changed the job first."""
        new = current.job.fail(error, self.policy_for(current.job.type), retryable=retryable, delay=delay)
        written = self._write(current, new)
        if written is None or written.job.status is Status.CANCELLED:
            return written
        if written.job.status is Status.QUEUED:
            enqueue(self.storage, written.job, written.etag)
            self.telemetry.count(signals.RETRIED, written.job)
            log.warning("attempt failed, retry scheduled: %s", error, extra=job_attributes(written.job))
        else:
            self.telemetry.count(signals.DEAD_LETTERED, written.job)
            log.error("attempt failed, job dead-lettered: %s", error, extra=job_attributes(written.job))
        return written

    def dead_letter(self, current: Versioned, reason: str) -> Versioned | None:
        written = self._write(current, current.job.dead_letter(reason))
        if written is not None and written.job.status is Status.DEAD_LETTERED:
            self.telemetry.count(signals.DEAD_LETTERED, written.job)
            log.error("job dead-lettered: %s", reason, extra=job_attributes(written.job))
        return written

    def poisoned(self, body: bytes | str, reason: str) -> Outcome:
        """The host gave up on this message: the job it names ends dead-lettered with the reason."""
        try:
            message = JobMessage.decode(body)
        except MalformedMessage:
            return Outcome.SET_ASIDE
        # The payload is not needed to dead-letter, and may be why the message failed.
        found = self.store.get(message.id, load_blobs=False)
        if found is None:
            return Outcome.SET_ASIDE
        job = found.job
        if job.status.terminal or job.attempt != message.attempt:
            return Outcome.STALE
        with self.telemetry.span(signals.SPAN_REPAIR, job, parent=job.trace, reason="poisoned"):
            return _outcome_of(self.dead_letter(found, reason))

    def _write(self, current: Versioned, new: Job, fields: tuple[str, ...] | None = None) -> Versioned | None:
        try:
            if fields is None:
                return self.store.replace(new, current.etag, was=current.job.status)
            return self.store.update(new, current.etag, fields)
        except ConcurrencyConflict:
            return _lost_race(self.store, new)

    def _is_cancelled(self, job_id: str) -> bool:
        found = self.store.get(job_id, load_blobs=False)
        return found is None or found.job.status is Status.CANCELLED

    def _drop(self, job: Job, outcome: Outcome, why: str) -> Outcome:
        log.info("message dropped: %s", why, extra={**job_attributes(job), signals.OUTCOME: str(outcome)})
        return outcome


def _lost_race(store: JobStore, attempted: Job) -> Versioned | None:
    """Our write lost to another: say so, and return the winner if it was a cancel."""
    found = store.get(attempted.id, load_blobs=False)
    current = found.job if found else None
    log.warning(
        "job changed under us; our %s write was not applied (now %s)",
        attempted.status,
        current.status if current else "deleted",
        extra=job_attributes(attempted),
    )
    return found if current is not None and current.status is Status.CANCELLED else None


def _outcome_of(written: Versioned | None) -> Outcome:
    if written is None:
        return Outcome.STALE
    return {
        Status.SUCCEEDED: Outcome.SUCCEEDED,
        Status.QUEUED: Outcome.RETRY_SCHEDULED,
        Status.DEAD_LETTERED: Outcome.DEAD_LETTERED,
        Status.CANCELLED: Outcome.CANCELLED,
    }.get(written.job.status, Outcome.STALE)


def _call(spec: HandlerSpec, ctx: JobContext, time_limit: float) -> Any:
    if spec.is_async:
        # An async handler can be stopped at its time limit; a sync one cannot be interrupted.
        return asyncio.run(asyncio.wait_for(spec.func(ctx), timeout=time_limit))
    return spec.func(ctx)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError: the handler ran past the lease"
    return f"{type(exc).__name__}: {exc}"
