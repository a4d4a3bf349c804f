"""The handler registry: job type -> the function that runs it, with its options.

Options follow Dramatiq's actors: each type may set its own max attempts, backoff and time
limit; what it leaves out falls back to the app settings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.flow.limits import RateLimit
from shared.job import Priority
from shared.retry import RetryPolicy


class JobCancelled(Exception):
    """Raised at a checkpoint when the job was cancelled while it ran."""


@dataclass
class JobContext:
    """What a handler gets: its payload, which attempt this is, and a key for idempotent effects."""

    id: str
    type: str
    payload: Any
    attempt: int
    max_attempts: int
    idempotency_key: str
    _checkpoint: Callable[[], bool] | None = None

    def checkpoint(self) -> None:
        """Stop here if the job was cancelled. No storage call: the attempt's lease renewals (every
        JOBS_HEARTBEAT_SECONDS) find out, so call it as often as you like between units of work."""
        if self._checkpoint is not None and self._checkpoint():
            raise JobCancelled(self.id)


Handler = Callable[[JobContext], Any]


@dataclass(frozen=True)
class HandlerSpec:
    type: str
    func: Handler
    max_attempts: int | None = None
    backoff_base_seconds: float | None = None
    backoff_max_seconds: float | None = None
    time_limit_seconds: float | None = None
    priority: Priority | None = None  # the type's default; a submit may ask for another
    max_concurrency: int | None = None  # attempts running at once, across every instance
    rate_limit: RateLimit | None = None  # starts per period, across every instance

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    def policy(self, defaults: RetryPolicy) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts or defaults.max_attempts,
            base_seconds=self.backoff_base_seconds or defaults.base_seconds,
            max_seconds=self.backoff_max_seconds or defaults.max_seconds,
        )


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def handler(
        self,
        job_type: str,
        *,
        max_attempts: int | None = None,
        backoff_base_seconds: float | None = None,
        backoff_max_seconds: float | None = None,
        time_limit_seconds: float | None = None,
        priority: Priority | str | None = None,
        max_concurrency: int | None = None,
        rate_limit: RateLimit | str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a function as the handler of `job_type` (sync or async). `max_concurrency`
        and `rate_limit` (e.g. "10/m") hold across every instance; the API can change them."""
        default_priority = Priority(priority) if priority is not None else None
        rate = RateLimit.parse(rate_limit) if isinstance(rate_limit, str) else rate_limit
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")

        def register(func: Handler) -> Handler:
            if job_type in self._specs:
                raise ValueError(f"job type {job_type!r} is already registered")
            self._specs[job_type] = HandlerSpec(
                job_type, func, max_attempts, backoff_base_seconds, backoff_max_seconds, time_limit_seconds,
                default_priority, max_concurrency, rate,
            )  # fmt: skip
            return func

        return register

    def get(self, job_type: str) -> HandlerSpec | None:
        return self._specs.get(job_type)

    @property
    def types(self) -> list[str]:
        return sorted(self._specs)


registry = Registry()
handler = registry.handler
