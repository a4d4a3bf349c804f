"""A schedule: a cron expression in a time zone, the job each fire makes, and its policies.

The changes here are pure, as the job's are (shared/job.py): each takes a Schedule and returns a
new one. Making one stick is the store's business (a conditional write on the ETag, with the
index row moved in the same transaction).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.job import Priority, isoformat, to_ms
from shared.schedules.cron import Cron

UPCOMING = 5  # fire times a schedule's resource shows
RECENT = 10  # fires that made a job, kept on the schedule (newest first) so its jobs can be found


class Overlap(StrEnum):
    """What a fire does while the job of the previous fire has not finished."""

    ALLOW = "allow"  # make its job all the same
    SKIP = "skip"  # make none (counted as skipped)


class CatchUp(StrEnum):
    """What happens to fire times missed while nothing ran (later than the grace period)."""

    ONCE = "once"  # one job for all of them, then on schedule
    SKIP = "skip"  # none; on schedule from the next fire time


class SkipReason(StrEnum):
    OVERLAP = "overlap"
    MISSED = "missed"


@dataclass(frozen=True)
class JobTemplate:
    """What each fire submits. Unset max_attempts and priority take the job type's defaults at
    each fire, as a submit without them does."""

    type: str
    payload: Any = None
    max_attempts: int | None = None
    priority: Priority | None = None

    def to_resource(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "payload": self.payload,
            "max_attempts": self.max_attempts,
            "priority": str(self.priority) if self.priority else None,
        }


def new_id(now: datetime) -> str:
    """20 hex digits: the creation time in ms, then random; so listing by id is by age."""
    return f"{to_ms(now):012x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Schedule:
    id: str
    cron: str
    time_zone: str
    job: JobTemplate
    overlap: Overlap
    catch_up: CatchUp
    next_fire: datetime | None  # None while paused: only an active schedule is in the index
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    recent: tuple[tuple[datetime, str], ...] = ()  # (fire time, job id) of the last RECENT jobs made, newest first
    fired: int = 0  # jobs made
    skipped: int = 0  # fire times that made no job
    last_skip: datetime | None = None
    last_skip_reason: SkipReason | None = None
    idempotency_key: str | None = None  # a hash of the creating request's key
    request_hash: str | None = None
    # +1 with every change made through the API (not with fires): what If-Match compares, so an
    # edit based on what a client read fails if someone changed the schedule since.
    revision: int = 1
    etag: str = field(default="", compare=False)

    @property
    def paused(self) -> bool:
        return self.next_fire is None

    @property
    def last_fire(self) -> datetime | None:
        """The fire time of the last job made."""
        return self.recent[0][0] if self.recent else None

    @property
    def last_job_id(self) -> str | None:
        return self.recent[0][1] if self.recent else None

    def timing(self) -> Cron:
        return Cron(self.cron, self.time_zone, stored=True)

    # --- changes ---

    def patched(self, changes: dict[str, Any], job_changes: dict[str, Any], now: datetime) -> Schedule:
        """The schedule with `changes` (top-level fields) and `job_changes` (fields of the job
        template) applied. A new cron or zone, or a resume, fires next from now (fires missed
        while paused are not made up); a pause takes it out of the index. A patch that changes
        nothing returns the schedule itself: no new revision, so an If-Match others hold still holds."""
        fields = {k: v for k, v in changes.items() if k != "paused"}
        job = replace(self.job, **job_changes) if job_changes else self.job
        pause = changes.get("paused", self.paused)
        if job == self.job and pause == self.paused and all(getattr(self, k) == v for k, v in fields.items()):
            return self
        out = replace(self, **fields, job=job, updated_at=now, revision=self.revision + 1)
        retimed = (out.cron, out.time_zone) != (self.cron, self.time_zone)
        if pause:
            return replace(out, next_fire=None)
        if self.paused or retimed:
            return replace(out, next_fire=out.timing().next_after(now))
        return out

    def fired_at(
        self, fire: datetime, job_id: str, following: datetime, missed: int, latest: datetime, now: datetime
    ) -> Schedule:
        """A job was made for `fire`; `missed` later fire times, up to `latest`, were folded into it
        (catch-up): the last skip is the latest of those, not the fire that made the job."""
        out = replace(self, next_fire=following, fired=self.fired + 1, recent=self._with_recent(fire, job_id),
                      updated_at=now)  # fmt: skip
        return out._skip(latest, missed, SkipReason.MISSED) if missed else out

    def skipped_at(
        self, latest: datetime, count: int, reason: SkipReason, following: datetime, now: datetime
    ) -> Schedule:
        """`count` fire times, up to `latest`, made no job."""
        return replace(self, next_fire=following, updated_at=now)._skip(latest, count, reason)

    def recorded(self, fire: datetime, job_id: str, now: datetime) -> Schedule:
        """A job an earlier reading of the schedule made, noted without moving the next fire."""
        return replace(self, fired=self.fired + 1, recent=self._with_recent(fire, job_id), updated_at=now)

    def _with_recent(self, fire: datetime, job_id: str) -> tuple[tuple[datetime, str], ...]:
        kept = [(at, made) for at, made in self.recent if made != job_id]
        return tuple(sorted([(fire, job_id), *kept], reverse=True)[:RECENT])

    def _skip(self, fire: datetime, count: int, reason: SkipReason) -> Schedule:
        return replace(self, skipped=self.skipped + count, last_skip=fire, last_skip_reason=reason)

    # --- the HTTP resource ---

    def to_resource(self) -> dict[str, Any]:
        upcoming: list[datetime] = []
        if self.next_fire is not None:
            cron = self.timing()
            upcoming = [self.next_fire, *cron.upcoming(self.next_fire, UPCOMING - 1)]
            local = [cron.local(t).isoformat() for t in upcoming]
        return {
            "id": self.id,
            "name": self.name,
            "cron": self.cron,
            "time_zone": self.time_zone,
            "job": self.job.to_resource(),
            "overlap": str(self.overlap),
            "catch_up": str(self.catch_up),
            "paused": self.paused,
            "next_fire_at": isoformat(self.next_fire),
            "next_fires": [{"at": isoformat(t), "local": lt} for t, lt in zip(upcoming, local, strict=True)]
            if upcoming
            else [],
            "last_fire": {"at": isoformat(self.last_fire), "job_id": self.last_job_id} if self.last_job_id else None,
            "recent_fires": [{"at": isoformat(at), "job_id": job_id} for at, job_id in self.recent],
            "fired": self.fired,
            "skipped": self.skipped,
            "last_skip": {"at": isoformat(self.last_skip), "reason": str(self.last_skip_reason)}
            if self.last_skip and self.last_skip_reason
            else None,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "revision": self.revision,
        }

    @property
    def entity_tag(self) -> str:
        """The HTTP ETag of its definition: the revision, quoted (fires do not change it)."""
        return f'"{self.revision}"'
