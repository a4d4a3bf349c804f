"""Retry policy: how many attempts, how long to wait between them.

Exponential backoff with "equal jitter": the n-th retry waits between half and all of
base * 2**(n-1), capped. Jitter spreads retries of jobs that failed together (a downstream
outage) so they do not all come back in the same second.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_seconds: float = 2.0
    max_seconds: float = 300.0

    def backoff(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed."""
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        r = (rand or random).random()
        return ceiling / 2 + r * ceiling / 2


class RetryLater(Exception):
    """Raised by a handler to be retried after `delay` seconds (or the policy's backoff if None).

    It still spends an attempt: a job cannot ask to be retried forever."""

    def __init__(self, message: str = "retry requested", delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """Raised by a handler for a failure that retrying cannot fix: the job is dead-lettered at once."""
