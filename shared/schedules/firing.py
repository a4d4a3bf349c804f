"""Firing: every due schedule makes its job, exactly once per fire time.

A pass (the scheduler's timer, every few seconds, and the reconciler's run as a backstop) reads
the due range of the index (one query) and, for each due schedule:

1. reads its definition (with the ETag);
2. decides: a fire later than JOBS_SCHEDULER_GRACE_SECONDS was missed (the app was down), and
   every fire time up to now goes by the catch-up policy as one (`once`: one job, `skip`: none);
   with overlap `skip`, a fire is skipped while the previous fire's job has not finished (one
   read of that job, decided now, at fire time);
3. submits the job with the Idempotency-Key `schedule:<id>:<fire time in ms>` (one transaction:
   the job and its key record; then the queue put);
4. advances the schedule to its next fire time (one transaction: the definition, conditional
   on its ETag, and the index row moved).

So a fire costs 4 calls (read, insert, put, advance) plus its share of the pass's query.
At each crash point:
- before 3: nothing was written; the index row is still due, and the next pass fires it;
- inside 3 (the job inserted, not enqueued): the reconciler re-enqueues it as any such job;
- between 3 and 4: the next pass decides again and submits with the same key, which returns
  the job already made: one job. If it now decides to skip (the fire has since become missed),
  it first looks up that key's record (one read), and records the job if there is one;
- two passes at once (two instances, or the timer and the reconciler): both submit with the same
  key (one job), one advance wins, the other finds the schedule moved on and stops.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError

from shared.config import Config
from shared.job import isoformat, partition_key, to_ms, utcnow
from shared.schedules.schedule import CatchUp, Overlap, Schedule, SkipReason
from shared.schedules.store import ScheduleStore
from shared.service import JobService, gather_bounded
from shared.store import ConcurrencyConflict, JobStore, idempotency_record

log = logging.getLogger("jobs.schedules")

MAX_DUE = 500  # schedules a pass takes from the index (one query page); the rest wait for the next pass
MAX_FIRES = 100  # fires of one schedule in one pass (a schedule every second, after a pause of the timer)
PARALLEL = 8  # schedules fired at once
MISSED_COUNTED = 10_000  # missed fire times counted per catch-up (walking more costs CPU for nothing)
RECORD_RETRIES = 3


def fire_key(schedule_id: str, fire: datetime) -> str:
    """The Idempotency-Key of the job a fire makes: the same for every pass that fires it."""
    return f"schedule:{schedule_id}:{to_ms(fire)}"


@dataclass
class Firing:
    store: ScheduleStore
    service: JobService
    jobs: JobStore
    config: Config

    @property
    def grace(self) -> timedelta:
        return timedelta(seconds=self.config.scheduler_grace_seconds)

    async def fire_due(self, now: datetime | None = None) -> Counter[str]:
        """Fire every schedule due by `now`; counts of what was done."""
        now = now or utcnow()
        due = await self.store.due(now, MAX_DUE)
        done: Counter[str] = Counter()
        for counts in await gather_bounded([self._fire_safely(schedule_id, now) for _, schedule_id in due], PARALLEL):
            done.update(counts)
        if due:
            log.info("schedules: %s", dict(done), extra={"schedules": dict(done)})
        return done

    async def _fire_safely(self, schedule_id: str, now: datetime) -> Counter[str]:
        try:
            return await self.fire(schedule_id, now)
        except Exception:  # one schedule's trouble (storage, say) must not stop the others
            log.exception("schedule %s: firing failed; its index row stays due for the next pass", schedule_id)
            return Counter(schedule_errors=1)

    async def fire(self, schedule_id: str, now: datetime) -> Counter[str]:
        """Every fire of one schedule due by `now` (reading it once, then following its ETags)."""
        done: Counter[str] = Counter()
        schedule = await self.store.get(schedule_id)
        for _ in range(MAX_FIRES):
            if schedule is None or schedule.next_fire is None or schedule.next_fire > now:
                break
            schedule = await self._fire_once(schedule, now, done)
        return done

    async def _fire_once(self, s: Schedule, now: datetime, done: Counter[str]) -> Schedule | None:
        """Fire `s.next_fire` (or let it go, as the policies say) and advance the schedule.
        Returns the schedule as written, or None when someone else changed it meanwhile."""
        assert s.next_fire is not None
        fire, cron = s.next_fire, s.timing()
        missed = now - fire > self.grace
        if missed:  # the whole backlog up to now is one decision
            following = cron.next_after(now)
            later, latest = cron.count_between(fire, now, MISSED_COUNTED - 1)
            count = 1 + later
        else:
            following, count, latest = cron.next_after(fire), 1, fire
        run = not missed or s.catch_up is CatchUp.ONCE
        reason = SkipReason.MISSED if missed else SkipReason.OVERLAP
        if run and s.overlap is Overlap.SKIP and await self._previous_unfinished(s):
            run, reason = False, SkipReason.OVERLAP
        key = fire_key(s.id, fire)
        if run:
            job = s.job
            submitted = await self.service.submit(
                job.type, job.payload, max_attempts=job.max_attempts, idempotency_key=key, priority=job.priority
            )
            job_id: str | None = submitted.job.id
        else:
            job_id = await self._job_made_for(key)  # by a pass that stopped before advancing
        new = (
            s.fired_at(fire, job_id, following, count - 1, latest, now)
            if job_id
            else s.skipped_at(latest, count, reason, following, now)
        )
        try:
            written = await self.store.replace(new, s)
        except ConcurrencyConflict:
            return await self._after_conflict(s.id, fire, job_id, now)
        facts = {"schedule_id": s.id, "fire_at": isoformat(fire), "job_id": job_id, "missed": missed}
        if job_id:
            done["schedules_fired"] += 1
            if count > 1:
                done["schedules_skipped"] += count - 1
            log.info("schedule %s fired for %s: job %s%s", s.id, facts["fire_at"], job_id,
                     f" (catch-up of {count} missed fire times)" if missed else "", extra=facts)  # fmt: skip
        else:
            log.warning("schedule %s skipped %d fire time(s) from %s: %s", s.id, count, facts["fire_at"],
                        "the previous job has not finished" if reason is SkipReason.OVERLAP else "missed (downtime)",
                        extra=facts)  # fmt: skip
            done["schedules_skipped"] += count
        return written

    async def _previous_unfinished(self, s: Schedule) -> bool:
        if not s.last_job_id:
            return False
        found = await self.jobs.get(s.last_job_id, load_blobs=False)
        return found is not None and not found.job.status.terminal  # gone (retention): finished

    async def _job_made_for(self, key: str) -> str | None:
        shard, row = idempotency_record(key, self.config.partitions)
        try:
            record = await self.jobs.table.get_entity(partition_key(shard), row)
        except ResourceNotFoundError:
            return None
        return f"{shard:02d}{record['job_row']}"

    async def _after_conflict(
        self, schedule_id: str, fire: datetime, job_id: str | None, now: datetime
    ) -> Schedule | None:
        """Someone changed the schedule between our read and our advance: another pass (which
        fired the same fire time, with the same job) or an API call. If the fire is still due,
        fire it again from the fresh read (the same key: the same job); else make sure a job we
        made is on record, and stop."""
        for _ in range(RECORD_RETRIES):
            current = await self.store.get(schedule_id)
            if current is None or (current.last_fire is not None and current.last_fire >= fire):
                return None  # deleted, or the fire is on record
            if current.next_fire == fire:
                return current  # an API change that left the fire time: decide again
            if job_id is None:
                return None
            try:
                await self.store.replace(current.recorded(fire, job_id, now), current)
                return None
            except ConcurrencyConflict:
                continue
        log.warning("schedule %s: job %s of %s could not be noted on the schedule", schedule_id, job_id,
                    isoformat(fire))  # fmt: skip
        return None
