"""The reconciler: a timer's sweep that finds what a crash left behind. Each run:

1. poison sync: a job whose message the host gave up on ends dead_lettered, with the reason;
2. flow control: the jobs parked while their type was paused are released once it is resumed
   (shared/flow/parking.py), and jobs holding a start under a rate limit since changed are woken to
   ask again (shared/flow/rate.py); watch list: redriven jobs whose message was lost are enqueued again;
3. recent window: queued jobs whose message was lost (the API died between insert and enqueue,
   or the delay was too long for a queue) are enqueued again; running jobs whose lease expired
   (the worker died) get their next attempt or are dead-lettered;
4. bulk operations: a running one whose record stopped moving gets its message again;
5. retention: finished jobs (and bulk operations) older than the retention period are deleted;
6. the dashboard's aggregates: recent minutes counted by status, with the queue figures
   (shared/stats.py).

Its cost follows the recent window and the backlog of work to do, never the total history: the
window is a range of row keys, and retention reads only rows past the cutoff.
Re-enqueueing is safe because the claim protocol drops a duplicate message. It is also avoided
when it is not needed: an overdue job is left alone while the queue's oldest visible message is
older than the job's due time, because its message may still be waiting behind that backlog.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from shared import signals
from shared.config import Config
from shared.flow.control import RELEASE_PER_RUN, FlowControl
from shared.job import Job, Priority, Status, isoformat, parse_time, utcnow
from shared.messages import JobMessage, MalformedMessage, enqueue, operation_of
from shared.operations import Operations
from shared.schedules.service import ScheduleService
from shared.service import JobService
from shared.stats import Stats
from shared.storage import Storage
from shared.store import ConcurrencyConflict, JobStore, Versioned
from shared.telemetry import Telemetry, job_attributes
from shared.watchlist import window as watch_window
from shared.worker import LEASE_EXPIRED, Worker

log = logging.getLogger("jobs.reconciler")

STATE_KEY = ("reconciler", "state")
POISON_BATCHES = 10  # of 32 messages: a run handles at most 320 poisoned messages
MAX_REPAIRS = 1000
MAX_DELETES = 5000
# Watched jobs read per run, in turn (a bulk retry of thousands of old jobs watches them all),
# READS_AT_ONCE at a time.
WATCHED_PER_RUN = 1000
READS_AT_ONCE = 16
# A message set aside in the poison queue (not a job message) stays hidden this long per look.
SET_ASIDE_HIDE_SECONDS = 3600
POISON_REASON = "the host gave up on this job's message after repeated failures (poison queue)"
RELEASE_SECONDS = 10.0  # spent releasing parked jobs of resumed types per run (and as much waking rate waiters)
# A job's message is put just after its due time is set; this covers that gap and clock skew
# between the app and the storage service.
ENQUEUE_SLACK = timedelta(seconds=60)
# A watch entry is written just before the write it guards (a redrive's): younger than this, it
# stays even if its job still looks finished.
ENTRY_SETTLE = timedelta(seconds=60)


@dataclass
class Reconciler:
    storage: Storage
    store: JobStore
    service: JobService
    worker: Worker
    config: Config
    telemetry: Telemetry
    operations: Operations
    stats: Stats
    flow: FlowControl
    schedules: ScheduleService | None = None  # fires due schedules, as the scheduler's timer does

    @property
    def window(self) -> timedelta:
        return watch_window(self.config)

    async def run(self, now: datetime | None = None) -> Counter[str]:
        now = now or utcnow()
        with self.telemetry.span(signals.SPAN_RECONCILE) as span:
            done = await self._run(now)
            span.set_attributes({f"reconcile.{k}": v for k, v in done.items()})
        return done

    async def _run(self, now: datetime) -> Counter[str]:
        done: Counter[str] = Counter()
        depths, poison_depths = await self._measure_depths()
        backlog = QueueBacklog(self.storage, empty={p for p, n in depths.items() if n == 0})
        await self._sync_poison(done, {p for p, n in poison_depths.items() if n > 0})
        flow = await self.flow.settings.read()
        done["released"] += await self.flow.release(flow, RELEASE_SECONDS, RELEASE_PER_RUN)
        done["rate_woken"] += await self.flow.wake_rate_waiters(flow, RELEASE_SECONDS)
        state = await self._state()
        last = parse_time(state.get("last_run"))
        watch_cursor = await self._check_watched(now, backlog, done, state.get("watch_cursor") or "")
        start = min(last, now) - self.window if last else now - self.window
        resume = await self._check_window(start, now, backlog, done)
        done["operations_requeued"] += await self.operations.repair(now)
        await self._fire_schedules(now, done)
        cutoff = now - timedelta(days=self.config.retention_days)
        done["deleted"] += await self.store.delete_finished_before(cutoff, MAX_DELETES)
        done["operations_deleted"] += await self.operations.prune(cutoff)
        # A job left for later must stay inside the next run's window, however long it waits.
        await self._save_run(min(now, resume) if resume else now, watch_cursor)
        await self.stats.refresh(now, sum(depths.values()), sum(poison_depths.values()), await backlog.oldest())
        log.info("reconcile run: %s", dict(done) or "nothing to do", extra={"reconcile": dict(done)})
        return done

    async def _measure_depths(self) -> tuple[dict[Priority, int], dict[Priority, int]]:
        """Each queue's and poison queue's depth (one call per queue per run, whatever the
        backlog), and their gauges, summed over the priorities. Azure's count is approximate but
        never lower than the truth, so a 0 lets the run skip reading that queue."""
        depths = []
        for metric, queues in (
            (signals.QUEUE_DEPTH, self.storage.queues),
            (signals.POISON_DEPTH, self.storage.poison_queues),
        ):
            counts = {p: (await q.get_queue_properties()).approximate_message_count for p, q in queues.items()}
            depths.append(counts)
            self.telemetry.set_gauge(metric, sum(counts.values()))
        return depths[0], depths[1]

    async def _sync_poison(self, done: Counter[str], holding: set[Priority]) -> None:
        """Dead-letter the jobs of the poison queues that held messages when measured (what comes
        later is the next run's)."""
        for priority, queue in self.storage.poison_queues.items():
            if priority in holding:
                await self._sync_poison_queue(queue, done)

    async def _sync_poison_queue(self, queue: QueueClient, done: Counter[str]) -> None:
        for _ in range(POISON_BATCHES):
            # One call per batch: the first page only (max_messages would ask again until empty).
            pages = queue.receive_messages(messages_per_page=32, visibility_timeout=SET_ASIDE_HIDE_SECONDS).by_page()
            try:
                batch = [message async for message in await pages.__anext__()]
            except StopAsyncIteration:
                batch = []
            if not batch:
                return
            for message in batch:
                try:
                    JobMessage.decode(message.content)
                except MalformedMessage:
                    op_id = operation_of(message.content)
                    if op_id is None:
                        done["poison_set_aside"] += 1  # left for an operator; hidden for an hour
                        continue
                    done["poison_operation_failed"] += await self.operations.fail(op_id, POISON_REASON)
                    await queue.delete_message(message)
                    continue
                outcome = await self.worker.poisoned(message.content, POISON_REASON)
                done[f"poison_{outcome}"] += 1
                await queue.delete_message(message)

    async def _check_watched(self, now: datetime, backlog: QueueBacklog, done: Counter[str], cursor: str) -> str:
        """The jobs too old for the window that are live again (shared/watchlist.py), each
        watched until it ends: a lost message is put again, an expired lease repaired. At most
        WATCHED_PER_RUN of them per run, in turn from `cursor`: where the next run goes on."""
        watchlist = self.service.watchlist
        entries = await watchlist.entries(cursor, WATCHED_PER_RUN)
        records = await self._read_all([entry.job_id for entry in entries])
        for entry, found in zip(entries, records, strict=True):
            if found is None or found.job.status.terminal:
                # Finished or gone: nothing left to guard. A fresh entry may be a redrive's, made
                # just before its write: it is left for the next run, and one written since it
                # was listed is kept.
                if entry.since < now - ENTRY_SETTLE:
                    await watchlist.remove(entry.job_id, entry.etag)
                continue
            if found.job.status is Status.RUNNING:
                if found.job.lease_expired(now):
                    await self._repair_lease(found, done)
                continue
            if found.job.parked:
                continue  # set aside while its type is paused: released on resume
            if watchlist.ahead_of_window(entry.job_id, now):
                # A bulk retry watched it before its write: reading it every run until it is due
                # would only cost.
                if entry.since < now - ENTRY_SETTLE:
                    await watchlist.remove(entry.job_id, entry.etag)
                continue
            if self._message_lost(found, now):
                if await backlog.may_hold(found.job):
                    done["requeue_deferred"] += 1  # the watch entry stays: looked at again next run
                else:
                    await self._requeue(found, now, done)
        if len(entries) < WATCHED_PER_RUN:
            return ""  # every entry was read: the next run starts from the first
        done["watched_deferred"] += 1
        return entries[-1].job_id

    async def _read_all(self, job_ids: list[str]) -> list[Versioned | None]:
        """The records of `job_ids`, READS_AT_ONCE at a time: a run stays short however many."""
        gate = asyncio.Semaphore(READS_AT_ONCE)

        async def read(job_id: str) -> Versioned | None:
            async with gate:
                return await self.store.get(job_id, load_blobs=False)

        return list(await asyncio.gather(*(read(job_id) for job_id in job_ids)))

    async def _check_window(
        self, start: datetime, now: datetime, backlog: QueueBacklog, done: Counter[str]
    ) -> datetime | None:
        """Repairs in the window. Returns where the next run must start from if some were left
        for later (the window is keyed by each job's first due time, `due_at`)."""
        repairs = 0
        resume: datetime | None = None
        async for found in self.store.window(start, now, (Status.QUEUED, Status.RUNNING)):
            job = found.job
            if repairs >= MAX_REPAIRS:
                done["repairs_deferred"] += 1
                return start + self.window  # not advanced: the next run covers this window again
            if job.status is Status.QUEUED and job.parked:
                continue  # set aside while its type is paused: released on resume, not lost
            if job.status is Status.QUEUED and self._message_lost(found, now):
                if await backlog.may_hold(job):
                    done["requeue_deferred"] += 1
                    resume = min(resume or job.due_at, job.due_at)
                    continue
                await self._requeue(found, now, done)
                repairs += 1
            elif job.lease_expired(now):
                await self._repair_lease(found, done)
                repairs += 1
        return resume

    async def _repair_lease(self, found: Versioned, done: Counter[str]) -> None:
        """The worker of a running attempt was lost: the next attempt, or the dead letters."""
        job = found.job
        with self.telemetry.span(signals.SPAN_REPAIR, job, parent=job.trace, reason="lease expired"):
            after = await self.worker.fail_attempt(found, LEASE_EXPIRED)
        done["lease_expired"] += 1 if after is not None else 0

    def _message_lost(self, found: Versioned, now: datetime) -> bool:
        return found.job.not_before + timedelta(seconds=self.config.reconcile_grace_seconds) <= now

    async def _requeue(self, found: Versioned, now: datetime, done: Counter[str]) -> None:
        with self.telemetry.span(signals.SPAN_REPAIR, found.job, parent=found.job.trace, reason="message lost"):
            try:
                written = await self.store.replace(found.job.requeued(now), found.etag, was=Status.QUEUED)
            except ConcurrencyConflict:
                return  # a worker claimed it meanwhile: its message was not lost after all
            if await enqueue(self.storage, written.job, written.etag, now):
                log.warning("re-enqueued a queued job whose message was lost", extra=job_attributes(written.job))
                done["requeued"] += 1

    async def _state(self) -> dict[str, Any]:
        try:
            return dict(await self.storage.table.get_entity(*STATE_KEY))
        except ResourceNotFoundError:
            return {}

    async def _save_run(self, now: datetime, watch_cursor: str) -> None:
        pk, rk = STATE_KEY
        state = {"PartitionKey": pk, "RowKey": rk, "last_run": isoformat(now), "watch_cursor": watch_cursor}
        await self.storage.table.upsert_entity(state)

    # --- schedules (shared/schedules/) ----------------------------------------------------------

    async def _fire_schedules(self, now: datetime, done: Counter[str]) -> None:
        """Fire what is due, should the scheduler's timer not have run (one query when nothing
        is). Its trouble must not stop the repairs after it."""
        if self.schedules is None:
            return
        try:
            done.update(await self.schedules.fire_due(now))
        except Exception:
            log.exception("firing due schedules failed; the next run or the scheduler's timer tries again")


class QueueBacklog:
    """Each queue's oldest visible message, peeked once per run and only when needed (one call
    per queue). Queues are roughly first in, first out: while that message was put before a job
    was due, the job's own message may still be waiting behind it, so it is not lost yet."""

    def __init__(self, storage: Storage, empty: set[Priority] | None = None) -> None:
        self.storage = storage
        # Peeked once per queue, on first need; a queue measured empty this run is not peeked.
        self._oldest: dict[Priority, datetime | None] = dict.fromkeys(empty or (), None)

    async def oldest_in(self, priority: Priority) -> datetime | None:
        if priority not in self._oldest:
            head = await self.storage.queues[priority].peek_messages(max_messages=1)
            self._oldest[priority] = head[0].inserted_on if head else None
        return self._oldest[priority]

    async def oldest(self) -> datetime | None:
        """The oldest waiting message of any priority."""
        found = [t for t in [await self.oldest_in(p) for p in Priority] if t is not None]
        return min(found, default=None)

    async def may_hold(self, job: Job) -> bool:
        oldest = await self.oldest_in(job.priority)
        return oldest is not None and oldest <= job.not_before + ENQUEUE_SLACK
