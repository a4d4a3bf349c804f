"""The queue message of a job attempt, and putting it on the queue.

A message carries only the job's id and the attempt it is for: everything else lives in the
record, so a duplicate or stale message is recognised by comparing the two.
Text is sent as is: host.json sets `messageEncoding: none` to match.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.job import Job, JobKey, utcnow
from shared.storage import Storage

# A message can stay hidden for at most 7 days. Longer delays are held in the record and the
# reconciler releases the job when it is due; keep a margin for clock skew.
MAX_VISIBILITY_SECONDS = 7 * 24 * 3600 - 60

log = logging.getLogger(__name__)


class MalformedMessage(ValueError):
    """The message is not a job message: not JSON, or no valid id and attempt."""


@dataclass(frozen=True)
class JobMessage:
    id: str
    attempt: int
    trace: str | None = None  # the W3C traceparent of the job's submit: one trace per job

    def encode(self) -> str:
        data: dict[str, object] = {"id": self.id, "attempt": self.attempt}
        if self.trace:
            data["trace"] = self.trace
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def decode(cls, body: bytes | str) -> JobMessage:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedMessage("not a JSON object")
        job_id, attempt = data.get("id"), data.get("attempt")
        if not isinstance(job_id, str) or JobKey.parse(job_id) is None:
            raise MalformedMessage(f"no valid job id: {job_id!r}")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise MalformedMessage(f"no valid attempt: {attempt!r}")
        trace = data.get("trace")
        return cls(job_id, attempt, trace if isinstance(trace, str) and len(trace) < 128 else None)


def visibility_delay(not_before: datetime, now: datetime | None = None) -> int | None:
    """Seconds to hide a message until `not_before`; None when that is too far for a queue."""
    seconds = (not_before - (now or utcnow())) / timedelta(seconds=1)
    if seconds > MAX_VISIBILITY_SECONDS:
        return None
    return max(0, int(seconds + 0.999))


def enqueue(storage: Storage, job: Job, now: datetime | None = None) -> bool:
    """Put the message for the job's current attempt, hidden until it is due. False if the delay
    is too long for a queue message: the reconciler enqueues it once it is due."""
    delay = visibility_delay(job.not_before, now)
    if delay is None:
        return False
    message = JobMessage(job.id, job.attempt, job.trace)
    storage.queue.send_message(message.encode(), visibility_timeout=delay or None, time_to_live=-1)
    return True


def set_aside(storage: Storage, body: bytes | str, reason: str) -> None:
    """Move a message that is not a job message to the poison queue, where operators look."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    log.error("setting aside a malformed message (%s): %.200r", reason, text)
    storage.poison_queue.send_message(text, time_to_live=-1)
