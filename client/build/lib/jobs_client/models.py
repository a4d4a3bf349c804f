"""What the API returns, as typed, immutable values.

Parsing is lenient on purpose: fields the server adds later are ignored (the whole resource stays
in `raw`), and a missing or malformed optional field becomes None rather than an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

JobStatus = Literal["queued", "running", "succeeded", "dead_lettered", "cancelled"]
OperationStatus = Literal["running", "succeeded", "failed"]

JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "dead_lettered", "cancelled")
TERMINAL_JOB_STATUSES = frozenset({"succeeded", "dead_lettered", "cancelled"})
PRIORITIES = ("high", "normal", "low")
TERMINAL_OPERATION_STATUSES = frozenset({"succeeded", "failed"})

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time as an aware datetime; None when absent or unreadable.
    (Python 3.10's fromisoformat takes neither 'Z' nor fractions other than 3 or 6 digits.)"""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), text, count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


@dataclass(frozen=True)
class JobError:
    """One failed attempt of a job."""

    attempt: int
    error: str
    at: datetime | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobError:
        return cls(_int(data.get("attempt")), str(data.get("error") or ""), parse_time(data.get("at")))


@dataclass(frozen=True)
class JobHold:
    """Why a queued job that is due has not started (only in `get`): `reason` is `pause`,
    `concurrency_limit` or `rate_limit`; `until` when it asks for a slot again, or its reserved start."""

    reason: str
    until: datetime | None

    @classmethod
    def from_dict(cls, data: Any) -> JobHold | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("reason"), str):
            return None
        return cls(data["reason"], parse_time(data.get("until")))


@dataclass(frozen=True)
class Job:
    """A job as the API returns it. `raw` is the resource exactly as received, unknown fields included."""

    id: str
    type: str
    status: str  # one of JOB_STATUSES (kept a plain string so a new status never breaks parsing)
    attempt: int
    max_attempts: int
    payload: Any
    result: Any
    errors: tuple[JobError, ...]
    last_error: str | None
    created_at: datetime | None
    updated_at: datetime | None
    due_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    priority: str = "normal"  # one of PRIORITIES
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    held_by: JobHold | None = None  # what flow control holds it back by (answers about one job)

    @property
    def finished(self) -> bool:
        """True once the job is succeeded, dead_lettered or cancelled."""
        return self.status in TERMINAL_JOB_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        return cls(
            id=str(data.get("id", "")),
            type=str(data.get("type", "")),
            status=str(data.get("status", "")),
            attempt=_int(data.get("attempt")),
            max_attempts=_int(data.get("max_attempts")),
            payload=data.get("payload"),
            result=data.get("result"),
            errors=tuple(JobError.from_dict(e) for e in _dicts(data.get("errors"))),
            last_error=_opt_str(data.get("last_error")),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            due_at=parse_time(data.get("due_at")),
            started_at=parse_time(data.get("started_at")),
            finished_at=parse_time(data.get("finished_at")),
            priority=str(data.get("priority") or "normal"),
            held_by=JobHold.from_dict(data.get("held_by")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class OperationError:
    """A job a bulk operation could not change, and why."""

    id: str
    error: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperationError:
        return cls(str(data.get("id", "")), str(data.get("error") or ""))


@dataclass(frozen=True)
class Operation:
    """A bulk retry or cancel, running on the server. `raw` is the resource exactly as received."""

    id: str
    action: str  # "retry" or "cancel"
    status: str  # "running", "succeeded" or "failed"
    filter: Mapping[str, Any] | None
    ids_count: int | None
    extra_attempts: int | None  # of a retry
    matched: int
    applied: int
    skipped: int
    failed: int
    errors: tuple[OperationError, ...]
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_OPERATION_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def processed(self) -> int:
        """Jobs the operation has dealt with so far: applied, skipped or failed (of `matched`, the
        jobs it has looked at so far: both grow while it runs)."""
        return self.applied + self.skipped + self.failed

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Operation:
        flt = data.get("filter")
        return cls(
            id=str(data.get("id", "")),
            action=str(data.get("action", "")),
            status=str(data.get("status", "")),
            filter=dict(flt) if isinstance(flt, Mapping) else None,
            ids_count=_opt_int(data.get("ids_count")),
            extra_attempts=_opt_int(data.get("extra_attempts")),
            matched=_int(data.get("matched")),
            applied=_int(data.get("applied")),
            skipped=_int(data.get("skipped")),
            failed=_int(data.get("failed")),
            errors=tuple(OperationError.from_dict(e) for e in _dicts(data.get("errors"))),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            finished_at=parse_time(data.get("finished_at")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Page:
    """One page of a listing; `continuation` is None on the last page. A page may hold fewer jobs
    than asked for (even none) and still have a continuation."""

    jobs: list[Job]
    continuation: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Page:
        return cls([Job.from_dict(j) for j in _dicts(data.get("jobs"))], _opt_str(data.get("continuation")) or None)


@dataclass(frozen=True)
class JobRequest:
    """One job to submit (what `submit_many` takes, besides plain dicts)."""

    type: str
    payload: Any = None
    max_attempts: int | None = None
    delay_seconds: float | None = None
    run_at: datetime | str | None = None  # instead of delay_seconds; a naive datetime is UTC
    priority: str | None = None  # one of PRIORITIES; default: the type's

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type}
        if self.payload is not None:
            body["payload"] = self.payload
        if self.max_attempts is not None:
            body["max_attempts"] = self.max_attempts
        if self.delay_seconds is not None:
            body["delay_seconds"] = self.delay_seconds
        if self.run_at is not None:
            body["run_at"] = format_time(self.run_at)
        if self.priority is not None:
            body["priority"] = self.priority
        return body


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` starts in any `period_seconds`, across every instance."""

    limit: int
    period_seconds: float

    def __str__(self) -> str:
        return f"{self.limit}/{self.period_seconds:g}s"


@dataclass(frozen=True)
class JobType:
    """A registered job type and how its jobs flow now. `raw` is the resource as received."""

    type: str
    priority: str
    max_attempts: int
    time_limit_seconds: float
    paused: bool
    max_concurrency: int | None
    rate_limit: RateLimit | None
    running: int | None  # attempts holding a concurrency slot now (None without a limit)
    released: int | None = None  # after a resume: jobs released by that request
    # What pauses it: "type" (its own pause), "all" (every type's), both or neither.
    paused_by: tuple[str, ...] = ()
    waiting: int | None = None  # jobs waiting for a concurrency slot (None without a limit)
    woken: int | None = None  # after a changed limit: waiting jobs that request woke (to start, or re-ask a rate)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobType:
        rate = data.get("rate_limit")
        return cls(
            type=str(data.get("type", "")),
            priority=str(data.get("priority") or "normal"),
            max_attempts=_int(data.get("max_attempts")),
            time_limit_seconds=float(data.get("time_limit_seconds") or 0),
            paused=bool(data.get("paused")),
            max_concurrency=_opt_int(data.get("max_concurrency")),
            rate_limit=RateLimit(_int(rate.get("limit")), float(rate.get("period_seconds") or 0))
            if isinstance(rate, Mapping)
            else None,
            running=_opt_int(data.get("running")),
            released=_opt_int(data.get("released")),
            paused_by=tuple(str(p) for p in data.get("paused_by") or () if isinstance(p, str)),
            waiting=_opt_int(data.get("waiting")),
            woken=_opt_int(data.get("woken")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class JobTypes:
    """Every registered type, whether everything is paused, and (after a resume) jobs released."""

    paused_all: bool
    types: tuple[JobType, ...]
    released: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobTypes:
        types = tuple(JobType.from_dict(t) for t in _dicts(data.get("types")))
        return cls(bool(data.get("paused_all")), types, _opt_int(data.get("released")))


def format_time(value: datetime | str | None) -> str | None:
    """RFC 3339 for the API. A naive datetime is taken as UTC; a string is passed on as it is."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# --- schedules -----------------------------------------------------------------------------------

OVERLAP_POLICIES = ("allow", "skip")
CATCH_UP_POLICIES = ("once", "skip")


@dataclass(frozen=True)
class FireTime:
    """One fire time of a schedule: `at` in UTC, `local` the same moment with the zone's offset."""

    at: datetime | None
    local: datetime | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FireTime:
        return cls(parse_time(data.get("at")), parse_time(data.get("local")))


@dataclass(frozen=True)
class Fire:
    """A fire of a schedule that made a job: the fire time (UTC) and the job's id."""

    at: datetime | None
    job_id: str

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fire:
        return cls(parse_time(data.get("at")), str(data.get("job_id", "")))


@dataclass(frozen=True)
class ScheduledJob:
    """The job each fire of a schedule submits (None: the job type's default)."""

    type: str
    payload: Any
    max_attempts: int | None
    priority: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduledJob:
        return cls(str(data.get("type", "")), data.get("payload"), _opt_int(data.get("max_attempts")),
                   _opt_str(data.get("priority")))  # fmt: skip


@dataclass(frozen=True)
class Schedule:
    """A recurring schedule as the API returns it. `raw` is the resource exactly as received."""

    id: str
    name: str | None
    cron: str
    time_zone: str
    job: ScheduledJob
    overlap: str  # one of OVERLAP_POLICIES
    catch_up: str  # one of CATCH_UP_POLICIES
    paused: bool
    next_fire_at: datetime | None
    next_fires: tuple[FireTime, ...]
    last_fire_at: datetime | None
    last_job_id: str | None
    recent_fires: tuple[Fire, ...]  # the last 10 that made a job, newest first
    fired: int
    skipped: int
    last_skip_at: datetime | None
    last_skip_reason: str | None  # "overlap" or "missed"
    created_at: datetime | None
    updated_at: datetime | None
    revision: int = 1  # +1 with every change through the API: `if_revision=` to change it only if unchanged
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        last_fire = data.get("last_fire") if isinstance(data.get("last_fire"), Mapping) else {}
        last_skip = data.get("last_skip") if isinstance(data.get("last_skip"), Mapping) else {}
        job = data.get("job") if isinstance(data.get("job"), Mapping) else {}
        return cls(
            id=str(data.get("id", "")),
            name=_opt_str(data.get("name")),
            cron=str(data.get("cron", "")),
            time_zone=str(data.get("time_zone", "")),
            job=ScheduledJob.from_dict(job),
            overlap=str(data.get("overlap", "")),
            catch_up=str(data.get("catch_up", "")),
            paused=data.get("paused") is True,
            next_fire_at=parse_time(data.get("next_fire_at")),
            next_fires=tuple(FireTime.from_dict(f) for f in _dicts(data.get("next_fires"))),
            last_fire_at=parse_time(last_fire.get("at")),
            last_job_id=_opt_str(last_fire.get("job_id")),
            recent_fires=tuple(Fire.from_dict(f) for f in _dicts(data.get("recent_fires"))),
            fired=_int(data.get("fired")),
            skipped=_int(data.get("skipped")),
            last_skip_at=parse_time(last_skip.get("at")),
            last_skip_reason=_opt_str(last_skip.get("reason")),
            created_at=parse_time(data.get("created_at")),
            updated_at=parse_time(data.get("updated_at")),
            revision=_int(data.get("revision")) or 1,
            raw=dict(data),
        )


@dataclass(frozen=True)
class SchedulePage:
    """One page of the schedules' listing; `continuation` is None on the last."""

    schedules: list[Schedule]
    continuation: str | None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SchedulePage:
        return cls([Schedule.from_dict(s) for s in _dicts(data.get("schedules"))],
                   _opt_str(data.get("continuation")) or None)  # fmt: skip
