"""The worker: one queue message in, one attempt of one job run (or a good reason not to).

    message {id, attempt}
      -> read the record (1 transaction; none when the message carries a snapshot)
      -> drop it if stale or a duplicate; set it aside if malformed
      -> claim: queued -> running, conditional on the ETag (1)
      -> run the handler, renewing the lease every 20 s while it runs (shared/heartbeat.py)
      -> succeeded | queued for the next attempt + a new hidden message | dead_lettered (1, +1)
The host deletes the message when this returns (1), or retries it if this raises: an error
outside the handler (storage down, a bug) is left to the host's maxDequeueCount and poison queue.

Async handlers run on the event loop and are cancelled at their time limit (or when the job is
cancelled); sync handlers run in a bounded thread pool (shared/threads.py), taken before the
claim, where they cannot be interrupted: past the limit the attempt fails as timed out, its lease
is not renewed and its result is discarded.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from shared import signals
from shared.config import Config
from shared.flow.control import FlowControl, Park, Start, Verdict, Wait, backoff
from shared.flow.slots import Slot
from shared.heartbeat import Heartbeat
from shared.job import Job, Priority, Status, to_ms, utcnow
from shared.messages import (
    JobMessage,
    MalformedMessage,
    Snapshot,
    enqueue,
    operation_of,
    send_later,
    set_aside,
    snapshot_of,
)
from shared.operations import Operations
from shared.priority import PriorityGate
from shared.registry import HandlerSpec, JobCancelled, JobContext, Registry
from shared.retry import PermanentError, RetryLater, RetryPolicy
from shared.storage import Storage
from shared.store import ConcurrencyConflict, JobStore, Refused, Versioned
from shared.telemetry import Telemetry, job_attributes
from shared.threads import HandlerThreads, Ticket
from shared.watchlist import WatchList

log = logging.getLogger("jobs.worker")
LEASE_EXPIRED = "lease expired: the worker running this attempt was lost"
LOST_MARGIN = timedelta(seconds=60)  # of a waiting job's due time before the reconciler's grace runs out


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
    PAUSED = "paused"  # its type is paused: set aside (parked) until resumed
    WAITING = "waiting"  # over its type's concurrency or rate limit: sent again, hidden until it may start


CLAIM_FIELDS = ("status", "started_at", "lease_until", "updated_at")
RESULT_FIELDS = ("status", "result", "result_blob", "finished_at", "lease_until", "updated_at")
ENDED = frozenset({Outcome.SUCCEEDED, Outcome.DEAD_LETTERED, Outcome.CANCELLED})


@dataclass(frozen=True)
class Claim:
    record: Versioned  # the record as the claim wrote it
    at: datetime  # when the attempt started
    slot: Slot | None  # the concurrency slot it holds
    watched: str | None  # the ETag of its watch list entry, if it was put there first (shared/watchlist.py)


@dataclass(frozen=True)
class Changed:
    """The job changed since the ETag an attempt was to start from. `found`: the record, if it
    was read since (`read`), for the fallback to go on from rather than read it again."""

    found: Versioned | None = None
    read: bool = False


@dataclass
class Worker:
    storage: Storage
    store: JobStore
    registry: Registry
    config: Config
    telemetry: Telemetry
    watchlist: WatchList  # jobs too old for the reconciler's window are watched while they run
    operations: Operations | None = None  # bulk operations ride on the jobs queue
    flow: FlowControl | None = None  # pauses and limits per type (shared/flow)
    gate: PriorityGate = field(default_factory=PriorityGate)  # higher priorities go first here
    threads: HandlerThreads = field(init=False, repr=False)  # sync handlers' (JOBS_SYNC_HANDLER_THREADS)

    def __post_init__(self) -> None:
        self.threads = HandlerThreads(self.config.sync_handler_threads)

    @property
    def defaults(self) -> RetryPolicy:
        c = self.config
        return RetryPolicy(c.max_attempts, c.backoff_base_seconds, c.backoff_max_seconds)

    def policy_for(self, job_type: str) -> RetryPolicy:
        spec = self.registry.get(job_type)
        return spec.policy(self.defaults) if spec else self.defaults

    async def process(self, body: bytes | str, priority: Priority = Priority.NORMAL) -> Outcome:
        """Handle one message from the queue of `priority`, after the higher priorities' messages
        in progress in this process (a bounded wait)."""
        async with self.gate.turn(priority):
            return await self._process(body, priority)

    async def _process(self, body: bytes | str, priority: Priority) -> Outcome:
        try:
            message = JobMessage.decode(body)
        except MalformedMessage as exc:
            op_id = operation_of(body)
            if op_id is not None and self.operations is not None:
                log.debug("bulk operation %s: %s", op_id, await self.operations.process(op_id))
                return Outcome.OPERATION
            await set_aside(self.storage, body, str(exc))
            return Outcome.SET_ASIDE
        attrs = {signals.JOB_ID: message.id, signals.ATTEMPT: message.attempt}
        with self.telemetry.span(signals.SPAN_ATTEMPT, parent=message.trace, kind=SpanKind.CONSUMER, **attrs) as span:
            outcome = await self._from_snapshot(message, priority)
            if not isinstance(outcome, Outcome):
                outcome = await self._from_record(message, body, outcome)
            if message.noted and outcome is not Outcome.WAITING:
                await self._forget_noted(message)  # it started, ended or was dropped: nothing to wake
            span.set_attribute(signals.OUTCOME, str(outcome))
            return outcome

    async def _from_snapshot(self, message: JobMessage, priority: Priority) -> Outcome | Changed | None:
        """Claim straight from the message: the claim is conditional on the ETag the record had
        when it scheduled this attempt, so it succeeds only if nothing happened since. Anything
        else (a cancel, a repair, a second delivery) falls back to the record: None if the
        message cannot start it, Changed (with the record, if read) if the job changed."""
        snap = message.snapshot
        if snap is None:
            return None
        spec = self.registry.get(snap.type)
        now = utcnow()
        if spec is None or (snap.due > now + timedelta(seconds=1) and not _woken_early(message)):
            return None
        job = Job.from_message(
            message.id, message.attempt, snap.type, snap.payload, snap.max_attempts, snap.due, message.trace, priority
        )
        return await self._start_attempt(spec, job, message, priority, snap.etag, snap, complete=False)

    async def _from_record(self, message: JobMessage, body: bytes | str, changed: Changed | None) -> Outcome:
        found = changed.found if changed is not None and changed.read else await self.store.get(message.id)
        if found is None:
            await set_aside(self.storage, body, f"no job {message.id}")
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
                await self._enqueue(job, found.etag)
            return self._drop(job, Outcome.STALE, f"message is for attempt {message.attempt}")
        if job.status is Status.RUNNING:
            if not job.lease_expired(now):
                return self._drop(job, Outcome.DUPLICATE, "attempt is held by another worker")
            return _outcome_of(await self.fail_attempt(found, LEASE_EXPIRED))
        if job.not_before > now + timedelta(seconds=1) and not _woken_early(message):
            await self._enqueue(job, found.etag)
            return self._drop(job, Outcome.NOT_DUE, "attempt is not due yet")
        spec = self.registry.get(job.type)
        if spec is None:
            return _outcome_of(await self.dead_letter(found, f"no handler for job type {job.type!r}"))
        started = await self._start_attempt(
            spec, job, message, job.priority, found.etag, snapshot_of(job, found.etag), complete=True
        )
        if isinstance(started, Outcome):
            return started
        return self._drop(job, Outcome.DUPLICATE, "another worker claimed it first")

    async def _start_attempt(
        self, spec: HandlerSpec, job: Job, message: JobMessage, priority: Priority, etag: str,
        snapshot: Snapshot | None, complete: bool,
    ) -> Outcome | Changed:  # fmt: skip
        """Take what the attempt needs, claim it and run it; Changed if the job changed since `etag`.
        A sync handler's thread comes first (see shared/threads.py), then the type's say: a job
        never holds a concurrency slot while it waits for a thread."""
        thread = None
        if not spec.is_async and (thread := await self.threads.take(self.config.lease_seconds)) is None:
            log.warning(
                "no handler thread came free in %g s (all %d busy; a sync handler past its time limit "
                "keeps its thread until it returns): job sent back for later",
                self.config.lease_seconds, self.threads.size, extra=job_attributes(job),
            )  # fmt: skip
            # Not a wait for its type's limits: no waiter row to clear later, and any start time
            # a rate limit holds for it goes along.
            later = Wait(utcnow() + timedelta(seconds=backoff(message.waits)), reserved=message.reserved)
            return await self._hold(later, message, priority, job, etag, snapshot, counted=False) or Changed()
        try:
            verdict = await self._admit(spec, job, message)
            if not isinstance(verdict, Start):
                return await self._hold(verdict, message, priority, job, etag, snapshot) or Changed()
            claim = await self._claim(spec, job, message.attempt, etag, verdict.slot)
            if isinstance(claim, Changed):
                return claim
            return await self._run(spec, job, claim, complete, thread)
        finally:
            if thread is not None:
                thread.release()  # unless its handler has it

    async def _claim(self, spec: HandlerSpec, job: Job, attempt: int, etag: str, slot: Slot | None) -> Claim | Changed:
        """queued -> running (one conditional write), or Changed if the job changed since `etag`. A
        job whose lease could outlast the reconciler's window is put on its watch list first.
        Unless the claim is made, the concurrency slot goes back at once, not when its lease ends."""
        now = utcnow()  # once it holds what it needed (a slot, a thread): its start time says so
        running = job.claim(attempt, self._lease(spec), now)
        assert running.lease_until is not None
        watched = None
        try:
            if self.watchlist.needed(job.id, running.lease_until):
                watched = await self.watchlist.add(job.id)
            found: Versioned | None = None
            try:
                # Read whole on a refusal: the caller's fallback to the record goes on from it.
                written = await self.store.write_own(Versioned(job, etag), running, CLAIM_FIELDS, whole=True)
            except Refused as refused:
                found, written = refused.found, None
        except BaseException:
            await asyncio.shield(self._give_back(slot))
            raise
        if written is None:
            await self._give_back(slot)
            return Changed(found, read=True)
        return Claim(written, now, slot, watched)

    # --- flow control: may it start now? ------------------------------------------------------

    async def _admit(self, spec: HandlerSpec, job: Job, message: JobMessage) -> Verdict:
        if self.flow is None:
            return Start()
        return await self.flow.admit(job, message.reserved, message.waits, self._lease(spec), message.under)

    async def _forget_noted(self, message: JobMessage) -> None:
        """Delete the waiter row naming this message (flow/rate.py): it no longer waits under it."""
        if self.flow is not None and message.noted:
            await self.flow.rate.forget(message.noted, message.id)

    async def _give_back(self, slot: Slot | None) -> None:
        if slot is not None and self.flow is not None:
            await self.flow.give_back(slot)

    async def _hold(
        self, verdict: Verdict, message: JobMessage, priority: Priority, job: Job, etag: str,
        snapshot: Snapshot | None, counted: bool = True,
    ) -> Outcome | None:  # fmt: skip
        """Park the job (its type is paused) or send its message again for later (over a limit, or
        no handler thread free; `counted`: as one more of its waits for its type's limits); None if
        the job changed since `etag` (the caller looks at the record again)."""
        if isinstance(verdict, Park):
            assert self.flow is not None
            if job.parked:  # a second delivery of its message
                return self._drop(job, Outcome.DUPLICATE, "the job is parked already")
            if not await self.flow.parking.park(job, etag):
                return None
            log.info("job parked: its type is paused", extra=job_attributes(job))
            return Outcome.PAUSED
        assert isinstance(verdict, Wait)
        now = utcnow()
        if verdict.until + LOST_MARGIN >= job.not_before + timedelta(seconds=self.config.reconcile_grace_seconds):
            # Hidden this long, its message would look lost to the reconciler: move the due time.
            try:
                written = await self.store.update(
                    replace(job, not_before=verdict.until, updated_at=now), etag, ("not_before", "updated_at")
                )
            except ConcurrencyConflict:
                return None
            snapshot = snapshot and replace(snapshot, etag=written.etag, due_ms=to_ms(verdict.until))
        reserved = to_ms(verdict.reserved) if verdict.reserved else None
        noted = job.type if verdict.noted_under is not None else None
        later = replace(message, snapshot=snapshot, waits=message.waits + counted, reserved_ms=reserved, noted=noted,
                        under=verdict.noted_under if noted else None)  # fmt: skip
        sent = await send_later(self.storage, later, priority, verdict.until)
        if verdict.for_slot and self.flow is not None:
            await self.flow.wait_for_slot(job, priority, sent, verdict.until)
        if noted and self.flow is not None:
            await self.flow.wait_for_rate(job, priority, sent, verdict)  # names the new message
        elif message.noted:
            await self._forget_noted(message)  # it waits now for something no rate change ends
        log.debug("job waits for its type's limit until %s", verdict.until, extra=job_attributes(job))
        return Outcome.WAITING

    def _time_limit(self, spec: HandlerSpec) -> float:
        return spec.time_limit_seconds or self.config.time_limit_seconds

    def _lease(self, spec: HandlerSpec) -> timedelta:
        """A claim's lease, never past the attempt's time limit."""
        return timedelta(seconds=min(self.config.lease_seconds, self._time_limit(spec)))

    async def _run(
        self, spec: HandlerSpec, queued: Job, claim: Claim, complete: bool, thread: Ticket | None
    ) -> Outcome:
        """Run the claimed attempt and record how it ended, then give back its concurrency slot
        (as last renewed: the row's ETag moves with each renewal, and only it frees the row)."""
        held, watched = [claim.slot], [claim.watched]
        try:
            outcome = await self._attempt(spec, queued, claim, complete, held, watched, thread)
        finally:
            await asyncio.shield(self._give_back(held[0]))
        if watched[0] is not None and outcome in ENDED:
            # Nothing left to guard; the reconciler would read the entry every run until it did this.
            try:
                await self.watchlist.remove(queued.id, watched[0])  # unless a redrive since wrote it
            except Exception as exc:  # noqa: BLE001 - the reconciler removes it on a later run
                log.warning("could not take the job off the watch list: %s", exc, extra=job_attributes(queued))
        return outcome

    async def _attempt(
        self, spec: HandlerSpec, queued: Job, claim: Claim, complete: bool, held: list[Slot | None],
        watched: list[str | None], thread: Ticket | None,
    ) -> Outcome:  # fmt: skip
        """`complete` says whether the claimed record is whole (read from the table) or only what
        the message carried. `held[0]`: the attempt's concurrency slot, kept current as the
        heartbeat renews it; `watched[0]`: the ETag of its watch list entry, if it is on the list."""
        claimed, now = claim.record, claim.at
        job = claimed.job
        wait_ms = max(0.0, (now - queued.not_before).total_seconds() * 1000)  # woken early: 0
        self.telemetry.record(signals.QUEUE_WAIT, wait_ms, job)
        trace.get_current_span().set_attributes({**job_attributes(job), signals.QUEUE_WAIT_MS: wait_ms})
        # Debug only: the attempt's span already marks its start, and every exported line is billed.
        log.debug("attempt started", extra=job_attributes(job))
        limit = self._time_limit(spec)
        running: asyncio.Future[Any] | None = None

        def on_lost() -> None:  # a renewal was refused: cancelled, or taken by the reconciler
            if running is not None and spec.is_async:
                running.cancel()

        async def renew_slot(until: datetime) -> None:  # a slot is leased like the attempt holding it
            if held[0] is not None and self.flow is not None:
                held[0] = await self.flow.renew(held[0], until) or held[0]

        async def watch(until: datetime) -> None:  # before a renewal takes the lease out of the window's reach
            if watched[0] is None and self.watchlist.needed(job.id, until):
                watched[0] = await self.watchlist.add(job.id)

        beat = Heartbeat(self.store, claimed, self._lease(spec), self.config.heartbeat_seconds,
                         now + timedelta(seconds=limit), on_lost, renew_slot if held[0] else None, watch,
                         unstoppable=not spec.is_async)  # fmt: skip
        ctx = JobContext(
            id=job.id, type=job.type, payload=job.payload, attempt=job.attempt, max_attempts=job.max_attempts,
            idempotency_key=job.idempotency_token, _checkpoint=lambda: beat.lost,
        )  # fmt: skip
        started = time.perf_counter()
        failure: tuple[str, bool, float | None] | None = None
        beat.start()
        try:
            running = self._start(spec, ctx, thread)
            # At the limit wait_for cancels the future: an async handler stops there; a sync one
            # runs on in its thread, and what it returns is dropped.
            result = await asyncio.wait_for(running, timeout=limit)
        except (JobCancelled, asyncio.CancelledError):
            if not beat.lost:
                await asyncio.shield(beat.stop())
                raise  # this invocation itself is being cancelled (the host stopping): not the job's doing
            log.info("attempt stopped: the job was cancelled or taken over", extra=job_attributes(job))
        except TimeoutError:
            failure = (f"TimeoutError: the handler ran past its time limit of {limit:g} s", True, None)
        except RetryLater as exc:
            failure = (_describe(exc), True, exc.delay)
        except PermanentError as exc:
            failure = (_describe(exc), False, None)
        except Exception as exc:  # noqa: BLE001 - any handler error is a failed attempt
            failure = (_describe(exc), True, None)
        finally:
            self.telemetry.record(signals.ATTEMPT_DURATION, (time.perf_counter() - started) * 1000, job)
        latest = await beat.stop()
        if beat.lost:  # the final write would fail: the job is someone else's now
            return _outcome_of(_lost_race(await self.store.get(job.id, load_blobs=False), job))
        if failure is None:
            try:
                json.dumps(result, allow_nan=False)  # NaN and Infinity are no JSON: no client could read them
            except (TypeError, ValueError, RecursionError) as exc:  # nested too deep: RecursionError
                failure = (f"handler returned a result that is not JSON: {exc}", False, None)
        if failure is not None:
            error, retryable, delay = failure
            # The error history is on the record: read it unless we hold the whole record.
            current = latest if complete else await self.store.get(job.id)
            if current is None or (current.etag != latest.etag and not current.job.renewed_from(latest.job)):
                return _outcome_of(_lost_race(current, job))
            return _outcome_of(await self.fail_attempt(current, error, retryable, delay, holder=True))
        done = await self._write(latest, job.succeed(result), RESULT_FIELDS, holder=True)
        if done is not None and done.job.status is Status.SUCCEEDED:
            self.telemetry.count(signals.SUCCEEDED, done.job)
            log.info("attempt succeeded", extra=job_attributes(done.job))
        return _outcome_of(done)

    def _start(self, spec: HandlerSpec, ctx: JobContext, thread: Ticket | None) -> asyncio.Future[Any]:
        """The handler running: a task on the loop, or a sync function in the thread taken for it."""
        if thread is None:
            return asyncio.ensure_future(spec.func(ctx))
        return thread.run(functools.partial(contextvars.copy_context().run, spec.func, ctx))

    async def fail_attempt(
        self, current: Versioned, error: str, retryable: bool = True, delay: float | None = None, holder: bool = False
    ) -> Versioned | None:
        """A failed attempt: schedule the next one (record first, then its hidden message) or
        dead-letter the job. The new state, or what won if someone else changed the job first.
        `holder`: the attempt's own worker writes it (JobStore.write_own), not the reconciler."""
        new = current.job.fail(error, self.policy_for(current.job.type), retryable=retryable, delay=delay)
        written = await self._write(current, new, holder=holder)
        if written is None or written.job.status is Status.CANCELLED:
            return written
        if written.job.status is Status.QUEUED:
            await self._enqueue(written.job, written.etag)
            self.telemetry.count(signals.RETRIED, written.job)
            log.warning("attempt failed, retry scheduled: %s", error, extra=job_attributes(written.job))
        else:
            self.telemetry.count(signals.DEAD_LETTERED, written.job)
            log.error("attempt failed, job dead-lettered: %s", error, extra=job_attributes(written.job))
        return written

    async def dead_letter(self, current: Versioned, reason: str) -> Versioned | None:
        written = await self._write(current, current.job.dead_letter(reason))
        if written is not None and written.job.status is Status.DEAD_LETTERED:
            self.telemetry.count(signals.DEAD_LETTERED, written.job)
            log.error("job dead-lettered: %s", reason, extra=job_attributes(written.job))
        return written

    async def poisoned(self, body: bytes | str, reason: str) -> Outcome:
        """The host gave up on this message: the job it names ends dead-lettered with the reason."""
        try:
            message = JobMessage.decode(body)
        except MalformedMessage:
            return Outcome.SET_ASIDE
        # The payload is not needed to dead-letter, and may be why the message failed.
        found = await self.store.get(message.id, load_blobs=False)
        if found is None:
            return Outcome.SET_ASIDE
        job = found.job
        if job.status.terminal or job.attempt != message.attempt:
            return Outcome.STALE
        if job.status is Status.RUNNING and not job.lease_expired():
            # A copy of the message failed, while a worker runs the attempt and renews its lease;
            # should that worker be gone, the lease runs out and the reconciler repairs it then.
            return self._drop(job, Outcome.DUPLICATE, "poisoned copy of an attempt that is running")
        with self.telemetry.span(signals.SPAN_REPAIR, job, parent=job.trace, reason="poisoned"):
            return _outcome_of(await self.dead_letter(found, reason))

    async def _enqueue(self, job: Job, etag: str | None) -> None:
        """Put the message of the job's attempt. A start too far ahead for a queue message (over 7
        days: a handler's RetryLater) goes on the watch list instead, which the reconciler reads
        every run and enqueues the job from once it is due: the window has passed it by."""
        if not await enqueue(self.storage, job, etag):
            await self.watchlist.add(job.id)

    async def _write(
        self, current: Versioned, new: Job, fields: tuple[str, ...] | None = None, holder: bool = False
    ) -> Versioned | None:
        try:
            return await self.store.write_own(current, new, fields, holder=holder)
        except Refused as refused:
            return _lost_race(refused.found, new)

    def _drop(self, job: Job, outcome: Outcome, why: str) -> Outcome:
        log.info("message dropped: %s", why, extra={**job_attributes(job), signals.OUTCOME: str(outcome)})
        return outcome


def _lost_race(found: Versioned | None, attempted: Job) -> Versioned | None:
    """Our write lost to another (`found`, read since): say so, and return the winner if it was
    a cancel."""
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _woken_early(message: JobMessage) -> bool:
    """Whether a job not due yet came back early from a wait that moved its due time to the end
    of the wait (so the reconciler would not take its hidden message for lost; worker._hold):
    woken because its limit changed, it is due all the same. Only a wait, which begins once the
    attempt is due, sends a message with a reserved start or a count of waits."""
    return message.waits > 0 or message.reserved_ms is not None
