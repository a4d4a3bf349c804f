"""`AsyncJobsClient`: the same methods as `JobsClient`, awaitable (and `list` an async iterator).
Its logic lives in `_core`; this class only sends requests with `httpx.AsyncClient` and sleeps
with `asyncio.sleep`."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

import httpx

from jobs_client._core import (
    UNSET,
    Call,
    Core,
    Flow,
    JobLike,
    Outcome,
    ProgressCallback,
    RetryPolicy,
    Sleep,
    default_headers,
    limits_body,
    resolve_key,
    resolve_url,
)
from jobs_client.models import Job, JobType, JobTypes, Operation, Page, RateLimit, Schedule, SchedulePage

T = TypeVar("T")


class AsyncJobsClient:
    """The asynchronous client; see `JobsClient` for what each method does.

    async with AsyncJobsClient() as jobs:
        job = await jobs.wait((await jobs.submit("echo", {"hello": "world"})).id, timeout=30)
        async for job in jobs.list(status="dead_lettered"):
            ...
    """

    def __init__(
        self, url: str | None = None, key: str | None = None, *, timeout: float = 30.0, retries: int = 5
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.url = resolve_url(url)
        self._core = Core(RetryPolicy(retries=retries))
        self._http = httpx.AsyncClient(base_url=self.url, headers=default_headers(resolve_key(key)), timeout=timeout)

    def __repr__(self) -> str:
        return f"AsyncJobsClient(url={self.url!r})"

    async def __aenter__(self) -> AsyncJobsClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    # --- jobs ------------------------------------------------------------------------------

    async def submit(
        self,
        type: str,
        payload: Any = None,
        *,
        max_attempts: int | None = None,
        delay_seconds: float | None = None,
        run_at: datetime | str | None = None,
        priority: str | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Submit one job (see JobsClient.submit: every submit carries an Idempotency-Key)."""
        return await self._run(
            self._core.submit(type, payload, max_attempts, delay_seconds, idempotency_key, run_at, priority)
        )

    async def submit_many(
        self,
        jobs: Iterable[JobLike],
        *,
        chunk_size: int = 100,
        on_progress: ProgressCallback | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[Job]:
        """Submit many jobs through the batch route, up to 100 per request (see JobsClient.submit_many)."""
        return await self._run(self._core.submit_many(jobs, chunk_size, on_progress, idempotency_key))

    async def get(self, id: str) -> Job:
        return await self._run(self._core.get(id))

    async def list(
        self,
        status: str | None = None,
        type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 50,
        order: str = "newest",
    ) -> AsyncIterator[Job]:
        """Every matching job, newest first (`order="oldest"`: oldest first), following
        continuation tokens as you iterate."""
        continuation: str | None = None
        while True:
            page = await self.list_page(
                status, type, since, until, limit=page_size, continuation=continuation, order=order
            )
            for job in page.jobs:
                yield job
            if page.continuation is None:
                return
            continuation = page.continuation

    async def list_page(
        self,
        status: str | None = None,
        type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        *,
        limit: int = 50,
        continuation: str | None = None,
        order: str = "newest",
    ) -> Page:
        return await self._run(self._core.list_page(status, type, since, until, limit, continuation, order))

    async def wait(
        self,
        id: str,
        timeout: float | None = None,
        poll_interval: float | None = None,
        *,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        return await self._run(self._core.wait(id, timeout, poll_interval, on_progress))

    async def cancel(self, id: str) -> Job:
        return await self._run(self._core.cancel(id))

    async def retry(self, id: str, extra_attempts: int = 1) -> Job:
        return await self._run(self._core.retry(id, extra_attempts))

    # --- bulk operations -------------------------------------------------------------------

    async def cancel_matching(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        ids: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Operation:
        flow = self._core.start_operation(
            "cancel", status=status, type=type, since=since, until=until, ids=ids,
            extra_attempts=None, idempotency_key=idempotency_key,
        )  # fmt: skip
        return await self._run(flow)

    async def retry_matching(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        ids: Iterable[str] | None = None,
        extra_attempts: int = 1,
        idempotency_key: str | None = None,
    ) -> Operation:
        flow = self._core.start_operation(
            "retry", status=status, type=type, since=since, until=until, ids=ids,
            extra_attempts=extra_attempts, idempotency_key=idempotency_key,
        )  # fmt: skip
        return await self._run(flow)

    # --- flow control ----------------------------------------------------------------------

    async def types(self) -> JobTypes:
        """Every registered type with its priority, pause and limits, and whether all are paused."""
        return await self._run(self._core.types())

    async def get_type(self, type: str) -> JobType:
        """A registered type and how its jobs flow now (paused, limits, running and waiting
        counts); NotFound if no handler has that name."""
        return await self._run(self._core.get_type(type))

    @overload
    async def pause(self, type: str) -> JobType: ...
    @overload
    async def pause(self, type: None = None) -> JobTypes: ...

    async def pause(self, type: str | None = None) -> JobType | JobTypes:
        """Pause a type (or, without one, every type): its jobs stay queued and are set aside
        until resumed; running ones finish. Every instance sees it within 5 s."""
        if type is None:
            return await self._run(self._core.pause_all(True))
        return await self._run(self._core.change_type(type, {"paused": True}))

    @overload
    async def resume(self, type: str) -> JobType: ...
    @overload
    async def resume(self, type: None = None) -> JobTypes: ...

    async def resume(self, type: str | None = None) -> JobType | JobTypes:
        """Resume a type (or undo pausing everything); `released` says how many parked jobs this
        request released (the service releases the rest within a minute)."""
        if type is None:
            return await self._run(self._core.pause_all(False))
        return await self._run(self._core.change_type(type, {"paused": False}))

    async def set_limits(
        self,
        type: str,
        *,
        max_concurrency: int | None | Literal["unchanged"] = "unchanged",
        rate_limit: RateLimit | str | None | Literal["unchanged"] = "unchanged",
    ) -> JobType:
        """Set a type's concurrency limit and rate limit (`"10/m"`, `"20/30s"` or a RateLimit),
        across every instance; None goes back to what the code declares. Raising the concurrency
        limit, or removing it, wakes jobs waiting for a slot; changing the rate limit wakes jobs
        holding a start over 30 s ahead, to take a new one: the answer's `woken` counts both."""
        body = limits_body(max_concurrency, rate_limit)
        return await self._run(self._core.change_type(type, body))

    async def get_operation(self, id: str) -> Operation:
        """A bulk operation (from retry_matching or cancel_matching) and its progress; NotFound
        if there is none (finished ones are kept as long as jobs are)."""
        return await self._run(self._core.get_operation(id))

    async def wait_operation(
        self,
        id: str,
        timeout: float | None = None,
        on_progress: Callable[[Operation], None] | None = None,
        *,
        poll_interval: float | None = None,
    ) -> Operation:
        return await self._run(self._core.wait_operation(id, timeout, poll_interval, on_progress))

    async def health(self) -> Mapping[str, Any]:
        return await self._run(self._core.health())

    # --- schedules -----------------------------------------------------------------------

    async def create_schedule(
        self,
        type: str,
        cron: str,
        payload: Any = None,
        *,
        time_zone: str | None = None,
        max_attempts: int | None = None,
        priority: str | None = None,
        overlap: str | None = None,
        catch_up: str | None = None,
        name: str | None = None,
        paused: bool = False,
        idempotency_key: str | None = None,
    ) -> Schedule:
        """A recurring schedule: a job of `type` with `payload` at every fire time of `cron` (5
        fields, or 6 with seconds first) in `time_zone` (IANA, default UTC). `overlap` "skip" makes
        no job while the previous one runs; `catch_up` "skip" makes none for fires missed during
        downtime ("once", the default, makes one). Carries an Idempotency-Key, as submit does."""
        return await self._run(self._core.create_schedule(
            type, cron, payload, time_zone=time_zone, max_attempts=max_attempts, priority=priority, overlap=overlap,
            catch_up=catch_up, name=name, paused=paused, idempotency_key=idempotency_key,
        ))  # fmt: skip

    async def get_schedule(self, id: str) -> Schedule:
        """The schedule, with its next five fire times; NotFound if there is none."""
        return await self._run(self._core.get_schedule(id))

    async def list_schedules(self, page_size: int = 50) -> AsyncIterator[Schedule]:
        """Every schedule, oldest first, fetching pages as you iterate."""
        continuation: str | None = None
        while True:
            page = await self.list_schedules_page(limit=page_size, continuation=continuation)
            for schedule in page.schedules:
                yield schedule
            if page.continuation is None:
                return
            continuation = page.continuation

    async def list_schedules_page(self, *, limit: int = 50, continuation: str | None = None) -> SchedulePage:
        """One page of up to `limit` schedules (1-200); pass its `continuation` for the next,
        until it is None."""
        return await self._run(self._core.list_schedules_page(limit, continuation))

    async def update_schedule(
        self,
        id: str,
        *,
        cron: str = UNSET,
        time_zone: str = UNSET,
        type: str = UNSET,
        payload: Any = UNSET,
        max_attempts: int | None = UNSET,
        priority: str | None = UNSET,
        overlap: str = UNSET,
        catch_up: str = UNSET,
        name: str | None = UNSET,
        paused: bool = UNSET,
        if_revision: int | None = None,
    ) -> Schedule:
        """Change the fields given (others stay). None for `max_attempts` or `priority` goes back
        to the type's default, for `name` removes it. A new cron or zone fires next from now.
        With `if_revision` (a `Schedule.revision` read before), only if nobody changed it since:
        else PreconditionFailed. Fires do not change the revision."""
        changes = {"cron": cron, "time_zone": time_zone, "type": type, "payload": payload,
                   "max_attempts": max_attempts, "priority": priority, "overlap": overlap, "catch_up": catch_up,
                   "name": name, "paused": paused}  # fmt: skip
        return await self._run(self._core.update_schedule(id, changes, if_revision))

    async def pause_schedule(self, id: str) -> Schedule:
        """Stop firing (until resumed). Pausing a paused schedule changes nothing."""
        return await self.update_schedule(id, paused=True)

    async def resume_schedule(self, id: str) -> Schedule:
        """Fire again, from now on: fire times missed while paused are not made up."""
        return await self.update_schedule(id, paused=False)

    async def delete_schedule(self, id: str, if_revision: int | None = None) -> None:
        """Delete the schedule (the jobs it made stay); NotFound if there is none. With
        `if_revision`, only if it is still at that revision (else PreconditionFailed)."""
        return await self._run(self._core.delete_schedule(id, if_revision))

    # --- plumbing --------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        """Carry out a flow's effects, awaiting each (the async twin of `_core.run_sync`)."""
        outcome: Outcome | None = None
        while True:
            try:
                effect = flow.send(outcome)
            except StopIteration as stop:
                result: T = stop.value
                return result
            if isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
                outcome = None
            else:
                outcome = await self._send(effect)

    async def _send(self, call: Call) -> Outcome:
        try:
            return await self._http.request(
                call.method, call.path, params=call.params, json=call.json, headers=dict(call.headers)
            )
        except httpx.TransportError as exc:
            return exc
