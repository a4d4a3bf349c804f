"""The queue message of a job attempt, and putting it on the queue.

A message carries only the job's id and the attempt it is for: everything else lives in the
record, so a duplicate or stale message is recognised by comparing the two.
Text is sent as is: host.json sets `messageEncoding: none` to match.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.storage.queue import QueueMessage

from shared.job import Job, JobKey, Priority, utcnow
from shared.storage import Storage

# A message can stay hidden for at most 7 days. Longer delays are held in the record and the
# reconciler releases the job when it is due; keep a margin for clock skew.
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600 - 60
# A payload up to this size rides in the message, so the worker can claim without a read first.
SNAPSHOT_PAYLOAD_CHARS = 16_000

log = logging.getLogger(__name__)


class MalformedMessage(ValueError):
    """The message is not a job message: not JSON, or no valid id and attempt."""


@dataclass(frozen=True)
class Snapshot:
    """What the worker needs to run an attempt without reading the record first: the record's
    ETag when it scheduled this attempt (the claim is conditional on it, so a cancel, a repair
    or a second delivery makes the claim fail and the worker falls back to reading the record),
    and the job's immutable fields."""

    etag: str
    type: str
    payload: Any
    max_attempts: int
    due_ms: int

    @property
    def due(self) -> datetime:
        return datetime.fromtimestamp(self.due_ms / 1000, UTC)

    def encode(self) -> dict[str, Any]:
        return {"etag": self.etag, "type": self.type, "payload": self.payload, "max": self.max_attempts,
                "due": self.due_ms}  # fmt: skip

    @classmethod
    def decode(cls, data: Any) -> Snapshot | None:
        if not isinstance(data, dict):
            return None
        etag, job_type, max_attempts, due = data.get("etag"), data.get("type"), data.get("max"), data.get("due")
        if not (isinstance(etag, str) and isinstance(job_type, str) and isinstance(max_attempts, int)
                and isinstance(due, int)):  # fmt: skip
            return None
        return cls(etag, job_type, data.get("payload"), max_attempts, due)


@dataclass(frozen=True)
class JobMessage:
    id: str
    attempt: int
    trace: str | None = None  # the W3C traceparent of the job's submit: one trace per job
    snapshot: Snapshot | None = None
    waits: int = 0  # times it waited for a concurrency slot: its next wait is longer
    reserved_ms: int | None = None  # the start time a rate limit holds for it
    noted: str | None = None  # that start is far enough ahead to have a waiter row of this type (flow/rate.py)
    under: str | None = None  # the limit that far start was given under (flow/rate.py's signature)

    @property
    def reserved(self) -> datetime | None:
        return datetime.fromtimestamp(self.reserved_ms / 1000, UTC) if self.reserved_ms is not None else None

    def encode(self) -> str:
        data: dict[str, object] = {"id": self.id, "attempt": self.attempt}
        if self.trace:
            data["trace"] = self.trace
        if self.snapshot:
            data["run"] = self.snapshot.encode()
        if self.waits:
            data["w"] = self.waits
        if self.reserved_ms is not None:
            data["r"] = self.reserved_ms
        if self.noted:
            data["n"] = self.noted
        if self.under:
            data["u"] = self.under
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, body: bytes | str) -> JobMessage:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise MalformedMessage(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedMessage("not a JSON object")
        job_id, attempt = data.get("id"), data.get("attempt")
        if not isinstance(job_id, str) or JobKey.parse(job_id) is None:
            raise MalformedMessage(f"no valid job id: {job_id!r}")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise MalformedMessage(f"no valid attempt: {attempt!r}")
        trace = data.get("trace")
        trace = trace if isinstance(trace, str) and len(trace) < 128 else None
        waits, reserved = data.get("w", 0), data.get("r")
        waits = waits if isinstance(waits, int) and not isinstance(waits, bool) and 0 <= waits < 1000 else 0
        reserved = reserved if isinstance(reserved, int) and not isinstance(reserved, bool) else None
        noted = data.get("n")
        noted = noted if reserved is not None and isinstance(noted, str) and 0 < len(noted) <= 200 else None
        under = data.get("u")
        under = under if noted is not None and isinstance(under, str) and 0 < len(under) <= 100 else None
        return cls(job_id, attempt, trace, Snapshot.decode(data.get("run")), waits, reserved, noted, under)


def operation_of(body: bytes | str) -> str | None:
    """The id of the bulk operation a message is for (`{"op": id}`), or None: it is no job's."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    op = data.get("op") if isinstance(data, dict) and len(data) == 1 else None
    return op if isinstance(op, str) and op.startswith("o") and len(op) <= 40 else None


def visibility_delay(not_before: datetime, now: datetime | None = None) -> int | None:
    """Seconds to hide a message until `not_before`; None when that is too far for a queue."""
    seconds = (not_before - (now or utcnow())) / timedelta(seconds=1)
    if seconds > MAX_VISIBILITY_SECONDS:
        return None
    return max(0, int(seconds + 0.999))


def snapshot_of(job: Job, etag: str) -> Snapshot | None:
    """What a message carries so the worker can claim without a read: None for a large payload."""
    if "payload_blob" in job.extra or len(json.dumps(job.payload)) > SNAPSHOT_PAYLOAD_CHARS:
        return None
    return Snapshot(etag, job.type, job.payload, job.max_attempts, int(job.not_before.timestamp() * 1000))


async def enqueue(storage: Storage, job: Job, etag: str | None = None, now: datetime | None = None) -> bool:
    """Put the message for the job's current attempt, hidden until it is due. False if the delay
    is too long for a queue message: the reconciler enqueues it once it is due.

    With the record's `etag` (and a small payload) the message carries a snapshot, which saves
    the worker a read: a successful job then costs 5 storage calls plus its share of a receive."""
    delay = visibility_delay(job.not_before, now)
    if delay is None:
        return False
    message = JobMessage(job.id, job.attempt, job.trace, snapshot_of(job, etag) if etag else None)
    await storage.queues[job.priority].send_message(message.encode(), visibility_timeout=delay or None, time_to_live=-1)
    return True


async def send_later(storage: Storage, message: JobMessage, priority: Priority, until: datetime) -> QueueMessage:
    """Put the message on the queue of `priority` again, hidden until `until` (a job that waits).
    What the queue answered: the id and pop receipt let it be made visible sooner."""
    delay = visibility_delay(until)
    delay = MAX_VISIBILITY_SECONDS if delay is None else delay  # past 7 days it asks again then
    return await storage.queues[priority].send_message(
        message.encode(), visibility_timeout=delay or None, time_to_live=-1
    )


async def set_aside(storage: Storage, body: bytes | str, reason: str) -> None:
    """Move a message that is not a job message to the poison queue, where operators look."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    log.error("setting aside a malformed message (%s): %.200r", reason, text)
    await storage.poison_queue.send_message(text, time_to_live=-1)
