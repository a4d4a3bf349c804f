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
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from shared.config import Config
from shared.job import Job, Status, utcnow
from shared.messages import JobMessage, MalformedMessage, enqueue, set_aside
from shared.registry import HandlerSpec, JobCancelled, JobContext, Registry
from shared.retry import PermanentError, RetryLater, RetryPolicy
from shared.storage import Storage
from shared.store import ConcurrencyConflict, JobStore, Versioned

log = logging.getLogger("jobs.worker")


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"
    STALE = "stale"  # the message is for an attempt that is over
    DUPLICATE = "duplicate"  # another worker holds this attempt
    NOT_DUE = "not_due"  # the message came before the attempt is due: sent again, hidden
    SET_ASIDE = "set_aside"  # not a job message: moved to the poison queue


def job_fields(job: Job) -> dict[str, Any]:
    """Log attributes carried by every record about a job."""
    return {"job_id": job.id, "job_type": job.type, "attempt": job.attempt, "status": str(job.status)}


@dataclass
class Worker:
    storage: Storage
    store: JobStore
    registry: Registry
    config: Config

    @property
    def defaults(self) -> RetryPolicy:
        c = self.config
        return RetryPolicy(c.max_attempts, c.backoff_base_seconds, c.backoff_max_seconds)

    def process(self, body: bytes | str) -> Outcome:
        try:
            message = JobMessage.decode(body)
        except MalformedMessage as exc:
            set_aside(self.storage, body, str(exc))
            return Outcome.SET_ASIDE
        found = self.store.get(message.id)
        if found is None:
            set_aside(self.storage, body, f"no job {message.id}")
            return Outcome.SET_ASIDE
        job, etag = found.job, found.etag
        now = utcnow()

        if job.status.terminal:
            return self._drop(job, Outcome.STALE, f"job is already {job.status}")
        if message.attempt != job.attempt:
            if job.status is Status.QUEUED and message.attempt == job.attempt - 1:
                # The attempt this message was for scheduled the next one, then the process died
                # before the host deleted it: the next attempt's message may never have been put.
                enqueue(self.storage, job.id, job.attempt, job.not_before)
            return self._drop(job, Outcome.STALE, f"message is for attempt {message.attempt}")
        if job.status is Status.RUNNING:
            if not job.lease_expired(now):
                return self._drop(job, Outcome.DUPLICATE, "attempt is held by another worker")
            after = record_failure(
                self.storage,
                self.store,
                found,
                "lease expired: the worker running this attempt was lost",
                self.policy_for(job.type),
            )
            return _outcome_of(after)
        if job.not_before > now + timedelta(seconds=1):
            enqueue(self.storage, job.id, job.attempt, job.not_before)
            return self._drop(job, Outcome.NOT_DUE, "attempt is not due yet")

        spec = self.registry.get(job.type)
        if spec is None:
            dead = job.dead_letter(f"no handler for job type {job.type!r}")
            self._write(Versioned(job, etag), dead)
            return Outcome.DEAD_LETTERED

        try:
            claimed = self.store.replace(
                job.claim(message.attempt, timedelta(seconds=self.config.lease_seconds)), etag
            )
        except ConcurrencyConflict:
            return self._drop(job, Outcome.DUPLICATE, "another worker claimed it first")
        log.info("attempt started", extra=job_fields(claimed.job))
        return self._run(spec, claimed)

    def _run(self, spec: HandlerSpec, claimed: Versioned) -> Outcome:
        job = claimed.job
        ctx = JobContext(
            id=job.id,
            type=job.type,
            payload=job.payload,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            idempotency_key=job.idempotency_token,
            _checkpoint=lambda: self._is_cancelled(job.id),
        )
        policy = self.policy_for(job.type)
        try:
            result = _call(spec, ctx, self.config.lease_seconds)
        except JobCancelled:
            log.info("attempt stopped: job cancelled", extra=job_fields(job))
            return Outcome.CANCELLED
        except RetryLater as exc:
            after = record_failure(self.storage, self.store, claimed, _describe(exc), policy, delay=exc.delay)
        except PermanentError as exc:
            after = record_failure(self.storage, self.store, claimed, _describe(exc), policy, retryable=False)
        except Exception as exc:  # noqa: BLE001 - any handler error is a failed attempt
            after = record_failure(self.storage, self.store, claimed, _describe(exc), policy)
        else:
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                error = f"handler returned a result that is not JSON: {exc}"
                after = record_failure(self.storage, self.store, claimed, error, policy, retryable=False)
            else:
                after = self._write(claimed, job.succeed(result))
                if after is not None:
                    log.info("attempt succeeded", extra=job_fields(after))
        return _outcome_of(after)

    def _write(self, current: Versioned, new: Job) -> Job | None:
        try:
            return self.store.replace(new, current.etag).job
        except ConcurrencyConflict:
            return _lost_race(self.store, new)

    def policy_for(self, job_type: str) -> RetryPolicy:
        spec = self.registry.get(job_type)
        return spec.policy(self.defaults) if spec else self.defaults

    def _is_cancelled(self, job_id: str) -> bool:
        found = self.store.get(job_id)
        return found is None or found.job.status is Status.CANCELLED

    def _drop(self, job: Job, outcome: Outcome, why: str) -> Outcome:
        log.info("message dropped: %s", why, extra={**job_fields(job), "outcome": str(outcome)})
        return outcome

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
        after = self._write(found, job.dead_letter(reason))
        if after is not None:
            log.error("job dead-lettered: %s", reason, extra=job_fields(after))
        return _outcome_of(after)


def record_failure(
    storage: Storage,
    store: JobStore,
    current: Versioned,
    error: str,
    policy: RetryPolicy,
    retryable: bool = True,
    delay: float | None = None,
) -> Job | None:
    """A failed attempt: schedule the next one (record first, then its hidden message) or
    dead-letter the job. None if someone else changed the job first (a cancel, say)."""
    new = current.job.fail(error, policy, retryable=retryable, delay=delay)
    try:
        written = store.replace(new, current.etag).job
    except ConcurrencyConflict:
        return _lost_race(store, new)
    if written.status is Status.QUEUED:
        enqueue(storage, written.id, written.attempt, written.not_before)
        log.warning("attempt failed, retry scheduled: %s", error, extra=job_fields(written))
    else:
        log.error("attempt failed, job dead-lettered: %s", error, extra=job_fields(written))
    return written


def _lost_race(store: JobStore, attempted: Job) -> Job | None:
    found = store.get(attempted.id)
    current = found.job if found else None
    log.warning(
        "job changed under us; our %s write was not applied (now %s)",
        attempted.status,
        current.status if current else "deleted",
        extra=job_fields(attempted),
    )
    return None if current is None or current.status is not Status.CANCELLED else current


def _outcome_of(job: Job | None) -> Outcome:
    if job is None:
        return Outcome.STALE
    return {
        Status.SUCCEEDED: Outcome.SUCCEEDED,
        Status.QUEUED: Outcome.RETRY_SCHEDULED,
        Status.DEAD_LETTERED: Outcome.DEAD_LETTERED,
        Status.CANCELLED: Outcome.CANCELLED,
    }.get(job.status, Outcome.STALE)


def _call(spec: HandlerSpec, ctx: JobContext, time_limit: float) -> Any:
    if spec.is_async:
        # An async handler can be stopped at its time limit; a sync one cannot be interrupted.
        return asyncio.run(asyncio.wait_for(spec.func(ctx), timeout=time_limit))
    return spec.func(ctx)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "TimeoutError: the handler ran past the lease"
    return f"{type(exc).__name__}: {exc}"
