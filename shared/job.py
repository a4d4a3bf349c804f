"""The job record and its state machine.

    queued -> running -> succeeded
    running -> queued            (a retry: attempt + 1, not before its backoff delay)
    running -> dead_lettered     (attempts exhausted, or a non-retryable error)
    queued | running -> cancelled
    dead_lettered | cancelled -> queued   (redrive, as a new attempt; or, cancelled before its
                                           attempt started, as it was)

The transitions here are pure: they take a Job and return a new one, or raise InvalidTransition.
Making a transition stick is the store's business (a conditional write on the entity's ETag).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.properties import PROPERTY_CHARS, property_chars, property_json
from shared.retry import RetryPolicy


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.DEAD_LETTERED, Status.CANCELLED})


class Priority(StrEnum):
    """Which queue a job's messages go on. Each priority has its own queue and trigger, so the
    host drains them side by side: a high job never waits behind a backlog of normal or low ones,
    and a flood of low ones (a backfill) never delays normal work."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


# Errors kept on a record: enough to diagnose, bounded so an entity never outgrows its limits.
MAX_ERRORS_KEPT = 20
MAX_ERROR_CHARS = 2000

# A job id is <shard:2 digits><inverted due time in ms:13 digits><random:10 hex>. The shard and the
# inverted time are the entity's keys, so a point read needs no lookup, and ids sort newest first.
_ID = re.compile(r"^(\d{2})(\d{13})([0-9a-f]{10})$")
MS_CEILING = 10**13 - 1


class InvalidTransition(Exception):
    """The job is not in a state that allows the requested change; `reason` says why, and
    `retry_at` when the change may be allowed, if a time is all it waits for."""

    def __init__(self, reason: str, retry_at: datetime | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_at = retry_at


class AlreadyApplied(InvalidTransition):
    """The bulk operation asking for the change already made it."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class JobKey:
    shard: int
    inverted_ms: int
    suffix: str

    @property
    def id(self) -> str:
        return f"{self.shard:02d}{self.inverted_ms:013d}{self.suffix}"

    @property
    def partition_key(self) -> str:
        return partition_key(self.shard)

    @property
    def row_key(self) -> str:
        return f"{self.inverted_ms:013d}{self.suffix}"

    @property
    def due(self) -> datetime:
        """The job's first due time, which its row key holds (to the millisecond)."""
        return datetime.fromtimestamp((MS_CEILING - self.inverted_ms) / 1000, UTC)

    @classmethod
    def new(cls, shard: int, due: datetime) -> JobKey:
        return cls(shard, MS_CEILING - to_ms(due), secrets.token_hex(5))

    @classmethod
    def parse(cls, job_id: str) -> JobKey | None:
        m = _ID.match(job_id)
        return cls(int(m[1]), int(m[2]), m[3]) if m else None


def partition_key(shard: int) -> str:
    return f"p{shard:02d}"


def row_key_at(moment: datetime) -> str:
    """The smallest row key of a job due at `moment` (row keys grow as due times go back)."""
    return f"{MS_CEILING - to_ms(moment):013d}"


@dataclass(frozen=True)
class Job:
    id: str
    type: str
    status: Status
    attempt: int
    max_attempts: int
    payload: Any
    created_at: datetime
    updated_at: datetime
    due_at: datetime  # when the first attempt may start (created_at + delay)
    not_before: datetime  # when the current attempt's message becomes visible
    result: Any = None
    errors: tuple[dict[str, Any], ...] = ()
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_until: datetime | None = None
    idempotency_key: str | None = None  # a hash of the client's key, never the key itself
    trace: str | None = None  # traceparent of the submit, so every attempt joins the job's trace
    operation: str | None = None  # the last bulk operation that changed it: none applies twice
    priority: Priority = Priority.NORMAL
    parked: bool = False  # set aside while its type is paused (shared/flow/parking.py)
    extra: dict[str, Any] = field(default_factory=dict)  # storage details (e.g. blob names)

    @property
    def key(self) -> JobKey:
        key = JobKey.parse(self.id)
        assert key is not None, self.id
        return key

    @classmethod
    def new(
        cls,
        job_type: str,
        payload: Any,
        max_attempts: int,
        shard: int,
        delay: timedelta = timedelta(0),
        now: datetime | None = None,
        idempotency_key: str | None = None,
        trace: str | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> Job:
        now = now or utcnow()
        due = now + delay
        return cls(
            id=JobKey.new(shard, due).id,
            type=job_type,
            status=Status.QUEUED,
            attempt=1,
            max_attempts=max_attempts,
            payload=payload,
            created_at=now,
            updated_at=now,
            due_at=due,
            not_before=due,
            idempotency_key=idempotency_key,
            trace=trace,
            priority=priority,
        )

    @classmethod
    def from_message(
        cls,
        job_id: str,
        attempt: int,
        job_type: str,
        payload: Any,
        max_attempts: int,
        due: datetime,
        trace: str | None,
        priority: Priority = Priority.NORMAL,
    ) -> Job:
        """The job as a message snapshot knows it: enough to claim it, run it and write its
        result with merges. Its timestamps other than `not_before` are placeholders that are
        never written."""
        return cls(
            id=job_id, type=job_type, status=Status.QUEUED, attempt=attempt, max_attempts=max_attempts,
            payload=payload, created_at=due, updated_at=due, due_at=due, not_before=due, trace=trace,
            priority=priority,
        )  # fmt: skip

    def holds_write(self, written: Job) -> bool:
        """Whether this record is what our write of `written` left. The SDK sends a write again
        when its answer is lost (a timeout, a 503); if the first try was applied, the second meets
        its own change and a failed condition. Every write sets these fields, and `updated_at`
        (to the microsecond, from the writer's clock) is ours alone; a lease renewal leaves it."""
        return (self.status, self.attempt, self.lease_until, self.updated_at) == (
            written.status, written.attempt, written.lease_until, written.updated_at,
        )  # fmt: skip

    def renewed_from(self, held: Job) -> bool:
        """Whether this record is `held` but for its lease: only renewals changed it since, and
        only the attempt holding it renews it. One whose answer was an error (a timeout after the
        SDK's retries) may have landed all the same, leaving the holder with an old ETag."""
        return (self.status, self.attempt, self.updated_at) == (held.status, held.attempt, held.updated_at)

    # --- transitions -------------------------------------------------------------------------

    def claim(self, attempt: int, lease: timedelta, now: datetime | None = None) -> Job:
        """queued -> running, for the attempt the message names."""
        now = now or utcnow()
        if self.status is not Status.QUEUED:
            raise InvalidTransition(f"job is {self.status}, not queued")
        if attempt != self.attempt:
            raise InvalidTransition(f"message is for attempt {attempt}, job is on attempt {self.attempt}")
        return replace(self, status=Status.RUNNING, started_at=now, lease_until=now + lease, updated_at=now)

    def succeed(self, result: Any, now: datetime | None = None) -> Job:
        now = now or utcnow()
        self._require(Status.RUNNING)
        return replace(self, status=Status.SUCCEEDED, result=result, finished_at=now, lease_until=None, updated_at=now)

    def fail(
        self,
        error: str,
        policy: RetryPolicy,
        retryable: bool = True,
        delay: float | None = None,
        now: datetime | None = None,
    ) -> Job:
        """running -> queued (next attempt after a backoff) or -> dead_lettered (no attempts left).

        `delay` overrides the policy's backoff (a handler asking to be retried later)."""
        now = now or utcnow()
        self._require(Status.RUNNING)
        errors = self._with_error(error, now)
        if not retryable or self.attempt >= self.max_attempts:
            return replace(
                self, status=Status.DEAD_LETTERED, errors=errors, finished_at=now, lease_until=None, updated_at=now
            )
        wait = policy.backoff(self.attempt) if delay is None else delay
        return replace(
            self,
            status=Status.QUEUED,
            attempt=self.attempt + 1,
            errors=errors,
            lease_until=None,
            started_at=None,
            not_before=now + timedelta(seconds=wait),
            updated_at=now,
        )

    def cancel(self, now: datetime | None = None, operation: str | None = None) -> Job:
        now = now or utcnow()
        if operation is not None and self.operation == operation and self.status is Status.CANCELLED:
            raise AlreadyApplied(f"operation {operation} already cancelled this job")
        if self.status not in (Status.QUEUED, Status.RUNNING):
            raise InvalidTransition(f"job is {self.status}; only queued or running jobs can be cancelled")
        # A running attempt learns of the cancel at its next renewal or checkpoint: its lease stays
        # on the record, as how long it may still run, and a retry waits for it (see redrive).
        return replace(
            self, status=Status.CANCELLED, finished_at=now, updated_at=now, operation=operation or self.operation,
            lease_until=self.lease_until if self.status is Status.RUNNING else None,
        )  # fmt: skip

    def redrive(self, extra_attempts: int = 1, now: datetime | None = None, operation: str | None = None) -> Job:
        """dead_lettered | cancelled -> queued, as a new attempt with `extra_attempts` more to spend;
        a job cancelled before its attempt started goes back as it was, with at least that many.
        A bulk `operation` redrives a job once: a second try by the same operation is refused."""
        now = now or utcnow()
        if operation is not None and self.operation == operation:
            raise AlreadyApplied(f"operation {operation} already redrove this job")
        if self.status not in (Status.DEAD_LETTERED, Status.CANCELLED):
            raise InvalidTransition(f"job is {self.status}; only dead-lettered or cancelled jobs can be retried")
        if self.status is Status.CANCELLED and self.lease_until is not None and self.lease_until > now:
            raise InvalidTransition(
                f"attempt {self.attempt} was running when the job was cancelled and may go on until"
                f" {isoformat(self.lease_until)} (its lease); retry after that, so two attempts never run at once",
                retry_at=self.lease_until,
            )
        if self.status is Status.CANCELLED and self.started_at is None:
            # Cancelled before its attempt started: put back as it was. The attempt was not spent,
            # so it keeps its number (a message still on its way for it is as good as the new one:
            # the claim lets one of them start it) and its attempts left, and a first attempt keeps
            # its start time.
            return replace(
                self,
                operation=operation or self.operation,
                status=Status.QUEUED,
                max_attempts=max(self.max_attempts, self.attempt + extra_attempts - 1),
                finished_at=None,
                not_before=max(now, self.due_at) if self.attempt == 1 else now,
                updated_at=now,
            )
        return replace(
            self,
            operation=operation or self.operation,
            status=Status.QUEUED,
            attempt=self.attempt + 1,
            max_attempts=self.attempt + extra_attempts,
            finished_at=None,
            started_at=None,
            lease_until=None,
            not_before=now,
            updated_at=now,
        )

    def dead_letter(self, reason: str, now: datetime | None = None) -> Job:
        """Any non-terminal state -> dead_lettered (the host gave up on the message)."""
        now = now or utcnow()
        if self.status.terminal:
            raise InvalidTransition(f"job is already {self.status}")
        return replace(
            self,
            status=Status.DEAD_LETTERED,
            errors=self._with_error(reason, now),
            finished_at=now,
            lease_until=None,
            updated_at=now,
        )

    def requeued(self, now: datetime | None = None) -> Job:
        """A queued job whose message was lost gets a new one: only its visibility time moves."""
        now = now or utcnow()
        self._require(Status.QUEUED)
        return replace(self, not_before=now, updated_at=now)

    # --- helpers ------------------------------------------------------------------------------

    def lease_expired(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.status is Status.RUNNING and self.lease_until is not None and self.lease_until <= now

    @property
    def idempotency_token(self) -> str:
        """Stable per attempt: a handler may see an attempt twice after a crash, never two attempts."""
        return f"{self.id}:{self.attempt}"

    def _require(self, status: Status) -> None:
        if self.status is not status:
            raise InvalidTransition(f"job is {self.status}, not {status}")

    def _with_error(self, error: str, now: datetime) -> tuple[dict[str, Any], ...]:
        """The errors with this one, the oldest dropped past MAX_ERRORS_KEPT or once they would
        outgrow their property: 20 long errors, or a few long ones in a script whose escapes
        were 6 characters each, once made the failure impossible to write."""
        entry = {"attempt": self.attempt, "error": error[:MAX_ERROR_CHARS], "at": isoformat(now)}
        errors = (*self.errors, entry)[-MAX_ERRORS_KEPT:]
        while len(errors) > 1 and property_chars(property_json(list(errors))) > PROPERTY_CHARS:
            errors = errors[1:]
        return errors

    def to_resource(self) -> dict[str, Any]:
        """The job as the HTTP API returns it."""
        last_error = self.errors[-1]["error"] if self.errors else None
        return {
            "id": self.id,
            "type": self.type,
            "status": str(self.status),
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "priority": str(self.priority),
            "payload": self.payload,
            "result": self.result,
            "errors": list(self.errors),
            "last_error": last_error,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "due_at": isoformat(self.due_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "trace_id": self.trace_id,
        }

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id of the job's trace (its submit's), as Application Insights shows it
        (the operation id), or None when the submit was not traced."""
        parts = (self.trace or "").split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
