"""The job types this app runs. To add one, write a function here and decorate it.

A handler takes a JobContext and returns a JSON-serialisable result. Raise any exception to have
the attempt retried with backoff, `RetryLater(delay=...)` to choose the delay, `PermanentError`
to dead-letter the job at once. Handlers may be `async def`. Delivery is at least once: use
`ctx.idempotency_key` (job id + attempt) to make side effects safe to repeat.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.registry import JobContext, handler
from shared.retry import PermanentError


@handler("echo")
async def echo(ctx: JobContext) -> Any:
    """Returns its payload. `async def` because it never blocks: it runs on the event loop, where a
    sync handler would cost a hop to a thread and back."""
    return ctx.payload


@handler("sleep")
async def sleep(ctx: JobContext) -> dict[str, float]:
    """Sleeps `payload.seconds` (at most 600), then returns how long it slept."""
    seconds = _number(ctx.payload, "seconds", default=1.0)
    if not 0 <= seconds <= 600:
        raise PermanentError("seconds must be between 0 and 600")
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@handler("fail")
def fail(ctx: JobContext) -> dict[str, int]:
    """Fails the first `payload.times` attempts, then succeeds; without `times`, always fails."""
    times = _number(ctx.payload, "times", default=None)
    if times is None or ctx.attempt <= times:
        raise RuntimeError(f"failing on purpose (attempt {ctx.attempt})")
    return {"succeeded_on_attempt": ctx.attempt}


def _number(payload: Any, name: str, default: float | None) -> Any:
    if not isinstance(payload, dict) or payload.get(name) is None:
        return default
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PermanentError(f"payload.{name} must be a number")
    return value
