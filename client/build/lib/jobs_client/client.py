"""`JobsClient`: the synchronous client. Its logic lives in `_core`; this class only sends requests
with `httpx.Client` and sleeps with `time.sleep`."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    default_headers,
    limits_body,
    resolve_key,
    resolve_url,
    run_sync,
)
from jobs_client.models import Job, JobType, JobTypes, Operation, Page, RateLimit, Schedule, SchedulePage

T = TypeVar("T")


class JobsClient:
    """A client for the jobs API.

    `url` defaults to $JOBS_URL, then http://localhost:7071; `key` (sent as `x-functions-key`, as
    Azure Functions expects) to $JOBS_KEY. `timeout` bounds each HTTP request, in seconds.
    429, 503 and connection failures are retried up to `retries` times with exponential backoff
    and jitter (honouring Retry-After); so are 502, 504 and timeouts, but for the requests a
    second send could change (a job's cancel or retry, a schedule's delete, a change with
    `if_revision`), sent again only when the first cannot have arrived. After that the error is
    raised.

        with JobsClient() as jobs:
            job = jobs.wait(jobs.submit("echo", {"hello": "world"}).id, timeout=30)
    """

    def __init__(
        self, url: str | None = None, key: str | None = None, *, timeout: float = 30.0, retries: int = 5
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.url = resolve_url(url)
        self._core = Core(RetryPolicy(retries=retries))
        self._http = httpx.Client(base_url=self.url, headers=default_headers(resolve_key(key)), timeout=timeout)

    def __repr__(self) -> str:
        return f"JobsClient(url={self.url!r})"

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- jobs ------------------------------------------------------------------------------

    def submit(
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
        """Submit one job; returns it as accepted (status `queued`). Every submit carries an
        Idempotency-Key (a new uuid4 unless you give one) that is reused when the request is sent
        again, so a retried submit never makes a second job. The same key with another body
        raises UnprocessableContent (code `idempotency_key_reused`)."""
        return self._run(
            self._core.submit(type, payload, max_attempts, delay_seconds, idempotency_key, run_at, priority)
        )

    def submit_many(
        self,
        jobs: Iterable[JobLike],
        *,
        chunk_size: int = 100,
        on_progress: ProgressCallback | None = None,
        idempotency_key: str | None = None,
    ) -> builtins.list[Job]:
        """Submit many jobs (dicts with `type`, `payload`, `max_attempts`, `delay_seconds`, or
        JobRequest values) through the batch route, `chunk_size` (at most 100) per request; the
        jobs in input order. `on_progress(n)` is called after each chunk with the number stored so
        far. Each chunk has its own Idempotency-Key, reused on resends; with `idempotency_key`
        the chunk keys derive from it, so running the same call again stores nothing twice.
        If a chunk fails, the earlier chunks stay stored."""
        return self._run(self._core.submit_many(jobs, chunk_size, on_progress, idempotency_key))

    def get(self, id: str) -> Job:
        """The job; NotFound if there is none."""
        return self._run(self._core.get(id))

    def list(
        self,
        status: str | None = None,
        type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 50,
        order: str = "newest",
    ) -> Iterator[Job]:
        """Every matching job, newest first (`order="oldest"`: oldest first), by due time,
        fetching pages of up to `page_size` (1-200) as you iterate. `since`/`until` bound the
        job's due time (RFC 3339 strings or datetimes; a naive datetime is UTC)."""
        continuation: str | None = None
        while True:
            page = self.list_page(status, type, since, until, limit=page_size, continuation=continuation, order=order)
            yield from page.jobs
            if page.continuation is None:
                return
            continuation = page.continuation

    def list_page(
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
        """One page of the listing (it may hold fewer than `limit` jobs and still continue)."""
        return self._run(self._core.list_page(status, type, since, until, limit, continuation, order))

    def wait(
        self,
        id: str,
        timeout: float | None = None,
        poll_interval: float | None = None,
        *,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll until the job is succeeded, dead_lettered or cancelled, and return it (whatever
        the outcome: check `job.status`). Between looks it sleeps `poll_interval`, or as the
        service's Retry-After says (at most 5 s). WaitTimeout after `timeout` seconds."""
        return self._run(self._core.wait(id, timeout, poll_interval, on_progress))

    def cancel(self, id: str) -> Job:
        """Cancel a queued or running job (a running one stops at its next checkpoint).
        Conflict if it already finished."""
        return self._run(self._core.cancel(id))

    def retry(self, id: str, extra_attempts: int = 1) -> Job:
        """Redrive a dead_lettered or cancelled job as a new attempt (one cancelled before it started goes
        back as it was: same attempt and start time). Conflict in any other state."""
        return self._run(self._core.retry(id, extra_attempts))

    # --- bulk operations -------------------------------------------------------------------

    def cancel_matching(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        ids: Iterable[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Operation:
        """Start cancelling every job that matches the filter (status `queued` or `running`; by
        default both), or the given `ids` (up to 1000). With neither, every queued and running
        job. Returns the running Operation."""
        flow = self._core.start_operation(
            "cancel", status=status, type=type, since=since, until=until, ids=ids,
            extra_attempts=None, idempotency_key=idempotency_key,
        )  # fmt: skip
        return self._run(flow)

    def retry_matching(
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
        """Start redriving every job that matches the filter (status `dead_lettered` or
        `cancelled`; by default both), or the given `ids` (up to 1000). With neither, every
        dead-lettered and cancelled job. Returns the running Operation."""
        flow = self._core.start_operation(
            "retry", status=status, type=type, since=since, until=until, ids=ids,
            extra_attempts=extra_attempts, idempotency_key=idempotency_key,
        )  # fmt: skip
        return self._run(flow)

    # --- flow control ----------------------------------------------------------------------

    def types(self) -> JobTypes:
        """Every registered type with its priority, pause and limits, and whether all are paused."""
        return self._run(self._core.types())

    def get_type(self, type: str) -> JobType:
        """A registered type and how its jobs flow now (paused, limits, running and waiting
        counts); NotFound if no handler has that name."""
        return self._run(self._core.get_type(type))

    @overload
    def pause(self, type: str) -> JobType: ...
    @overload
    def pause(self, type: None = None) -> JobTypes: ...

    def pause(self, type: str | None = None) -> JobType | JobTypes:
        """Pause a type (or, without one, every type): its jobs stay queued and are set aside
        until resumed; running ones finish. Every instance sees it within 5 s."""
        if type is None:
            return self._run(self._core.pause_all(True))
        return self._run(self._core.change_type(type, {"paused": True}))

    @overload
    def resume(self, type: str) -> JobType: ...
    @overload
    def resume(self, type: None = None) -> JobTypes: ...

    def resume(self, type: str | None = None) -> JobType | JobTypes:
        """Resume a type (or undo pausing everything); `released` says how many parked jobs this
        request released (the service releases the rest within a minute)."""
        if type is None:
            return self._run(self._core.pause_all(False))
        return self._run(self._core.change_type(type, {"paused": False}))

    def set_limits(
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
        return self._run(self._core.change_type(type, body))

    def get_operation(self, id: str) -> Operation:
        """A bulk operation (from retry_matching or cancel_matching) and its progress; NotFound
        if there is none (finished ones are kept as long as jobs are)."""
        return self._run(self._core.get_operation(id))

    def wait_operation(
        self,
        id: str,
        timeout: float | None = None,
        on_progress: Callable[[Operation], None] | None = None,
        *,
        poll_interval: float | None = None,
    ) -> Operation:
        """Poll until the operation is succeeded or failed; `on_progress(operation)` after each
        look. WaitTimeout after `timeout` seconds."""
        return self._run(self._core.wait_operation(id, timeout, poll_interval, on_progress))

    def health(self) -> Mapping[str, Any]:
        """`{"status": "ok", "checks": {...}}`; ServiceUnavailable (its `problem["checks"]` says
        what failed) or ServiceUnreachable otherwise. One request, no retries."""
        return self._run(self._core.health())

    # --- schedules -----------------------------------------------------------------------

    def create_schedule(
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
        return self._run(self._core.create_schedule(
            type, cron, payload, time_zone=time_zone, max_attempts=max_attempts, priority=priority, overlap=overlap,
            catch_up=catch_up, name=name, paused=paused, idempotency_key=idempotency_key,
        ))  # fmt: skip

    def get_schedule(self, id: str) -> Schedule:
        """The schedule, with its next five fire times; NotFound if there is none."""
        return self._run(self._core.get_schedule(id))

    def list_schedules(self, page_size: int = 50) -> Iterator[Schedule]:
        """Every schedule, oldest first, fetching pages as you iterate."""
        continuation: str | None = None
        while True:
            page = self.list_schedules_page(limit=page_size, continuation=continuation)
            yield from page.schedules
            if page.continuation is None:
                return
            continuation = page.continuation

    def list_schedules_page(self, *, limit: int = 50, continuation: str | None = None) -> SchedulePage:
        """One page of up to `limit` schedules (1-200); pass its `continuation` for the next,
        until it is None."""
        return self._run(self._core.list_schedules_page(limit, continuation))

    def update_schedule(
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
        return self._run(self._core.update_schedule(id, changes, if_revision))

    def pause_schedule(self, id: str) -> Schedule:
        """Stop firing (until resumed). Pausing a paused schedule changes nothing."""
        return self.update_schedule(id, paused=True)

    def resume_schedule(self, id: str) -> Schedule:
        """Fire again, from now on: fire times missed while paused are not made up."""
        return self.update_schedule(id, paused=False)

    def delete_schedule(self, id: str, if_revision: int | None = None) -> None:
        """Delete the schedule (the jobs it made stay); NotFound if there is none. With
        `if_revision`, only if it is still at that revision (else PreconditionFailed)."""
        return self._run(self._core.delete_schedule(id, if_revision))

    # --- plumbing --------------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        return run_sync(flow, self._send, time.sleep)

    def _send(self, call: Call) -> Outcome:
        try:
            return self._http.request(
                call.method, call.path, params=call.params, json=call.json, headers=dict(call.headers)
            )
        except httpx.TransportError as exc:
            return exc
