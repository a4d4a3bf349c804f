"""Create, read, change and delete schedules; fire the due ones. What the HTTP routes call."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.idempotency import RequestHash, hash_key, recorded
from shared.job import utcnow
from shared.schedules.firing import Firing
from shared.schedules.schedule import CatchUp, JobTemplate, Overlap, Schedule, new_id
from shared.schedules.store import ScheduleStore
from shared.store import ConcurrencyConflict

CONFLICT_RETRIES = 5


class ScheduleNotFound(Exception):
    pass


class ScheduleBusy(Exception):
    """The schedule kept changing under a PATCH or DELETE (a fire every instant, say)."""


class RevisionMismatch(Exception):
    """If-Match named a revision the schedule is no longer at."""

    def __init__(self, current: Schedule) -> None:
        super().__init__(f"the schedule is at revision {current.revision}")
        self.current = current


# The revisions If-Match names, as its entity tags hold them: a change applies at those only.
Revisions = frozenset[str]


@dataclass
class ScheduleService:
    store: ScheduleStore
    firing: Firing

    async def create(
        self,
        cron: str,
        time_zone: str,
        job: JobTemplate,
        overlap: Overlap = Overlap.ALLOW,
        catch_up: CatchUp = CatchUp.ONCE,
        paused: bool = False,
        name: str | None = None,
        idempotency_key: str | None = None,
        request_hash: RequestHash | None = None,
        now: datetime | None = None,
    ) -> tuple[Schedule, bool]:
        """A new schedule (validated by the caller), next firing after now unless paused; with an
        Idempotency-Key used before, the schedule it made (created False)."""
        now = now or utcnow()
        key_hash = hash_key(idempotency_key) if idempotency_key else None
        schedule = Schedule(
            id=new_id(now), cron=cron, time_zone=time_zone, job=job, overlap=overlap, catch_up=catch_up,
            next_fire=None, created_at=now, updated_at=now, name=name, idempotency_key=key_hash,
            request_hash=recorded(request_hash) or None,
        )  # fmt: skip
        if not paused:
            schedule = replace(schedule, next_fire=schedule.timing().next_after(now))
        return await self.store.insert(schedule, key_hash, request_hash)

    async def get(self, schedule_id: str) -> Schedule:
        found = await self.store.get(schedule_id)
        if found is None:
            raise ScheduleNotFound(schedule_id)
        return found

    async def page(self, limit: int, continuation: str | None) -> tuple[list[Schedule], str | None]:
        return await self.store.page(limit, continuation)

    async def update(
        self,
        schedule_id: str,
        changes: dict[str, Any],
        job_changes: dict[str, Any],
        now: datetime | None = None,
        if_revision: Revisions | None = None,
        read: Schedule | None = None,
    ) -> Schedule:
        """Apply a PATCH, decided again on a fresh read if a fire moved the schedule meanwhile (a
        fire leaves the revision as it was; another change does not). One that changes nothing
        writes nothing. `read`: the schedule as the caller just read it, for the first try."""
        for _ in range(CONFLICT_RETRIES):
            if read is not None:
                current, read = _at_revision(read, if_revision), None
            else:
                current = await self._at(schedule_id, if_revision)
            changed = current.patched(changes, job_changes, now or utcnow())
            if changed is current:
                return current
            try:
                return await self.store.replace(changed, current)
            except ConcurrencyConflict:
                continue
        raise ScheduleBusy(schedule_id)

    async def delete(self, schedule_id: str, if_revision: Revisions | None = None) -> None:
        """Delete it (jobs it made stay). Once gone, it fires nothing more."""
        for _ in range(CONFLICT_RETRIES):
            current = await self._at(schedule_id, if_revision)
            try:
                return await self.store.delete(current)
            except ConcurrencyConflict:
                continue
        raise ScheduleBusy(schedule_id)

    async def _at(self, schedule_id: str, if_revision: Revisions | None) -> Schedule:
        return _at_revision(await self.get(schedule_id), if_revision)

    async def fire_due(self, now: datetime | None = None) -> Counter[str]:
        return await self.firing.fire_due(now)


def _at_revision(current: Schedule, if_revision: Revisions | None) -> Schedule:
    """The schedule, if it is at one of the revisions an If-Match allows (None: any)."""
    if if_revision is not None and str(current.revision) not in if_revision:
        raise RevisionMismatch(current)
    return current
