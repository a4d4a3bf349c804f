"""The client's logic without I/O, shared by `JobsClient` (sync) and `AsyncJobsClient` (async).

Every API call is a *flow*: a generator that yields what it needs done, either send a request
(`Call`) or pause (`Sleep`), and is sent back the outcome of each Call (the `httpx.Response`, or
the `httpx.TransportError` that prevented one). Request building, response parsing, retries and
backoff, batching, waiting and its deadline all live here once; the two clients differ only in
how they carry out the effects (`httpx.Client` and `time.sleep`, or `httpx.AsyncClient` and
`asyncio.sleep`).
"""

from __future__ import annotations

import email.utils
import hashlib
import itertools
import logging
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from jobs_client._version import __version__
from jobs_client.errors import (
    BatchIncomplete,
    JobsError,
    ServiceUnreachable,
    UnexpectedResponse,
    WaitTimeout,
    error_for,
)
from jobs_client.models import (
    Job,
    JobRequest,
    JobType,
    JobTypes,
    Operation,
    Page,
    RateLimit,
    Schedule,
    SchedulePage,
    format_time,
)

T = TypeVar("T")
Polled = TypeVar("Polled", Job, Operation)

# Each resend is logged here at INFO (the CLI shows these lines), so a wait is never silent.
log = logging.getLogger("jobs_client")

DEFAULT_URL = "http://localhost:7071"
KEY_HEADER = "x-functions-key"
MAX_BATCH = 100  # jobs per POST /api/jobs/batch
MAX_PAGE_SIZE = 200  # the API's largest `limit`
ORDERS = ("newest", "oldest")  # by due time: the API's `order`
MAX_KEY_LENGTH = 255  # of an Idempotency-Key
MAX_POLL_INTERVAL = 5.0  # wait() sleeps as Retry-After says, but never longer than this
DEFAULT_POLL_INTERVAL = 1.0  # when a pending resource comes without Retry-After


@dataclass(frozen=True)
class Call:
    """One HTTP request to send. `idempotent`: safe to send again even if an earlier send may have
    reached the server (reads, and writes that carry an Idempotency-Key)."""

    method: str
    path: str
    params: Mapping[str, str] | None = None
    json: Any = None  # None: no body
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = True


@dataclass(frozen=True)
class Sleep:
    seconds: float


Effect = Call | Sleep
Outcome = httpx.Response | httpx.TransportError
Flow = Generator[Effect, Outcome | None, T]

JobLike = Mapping[str, Any] | JobRequest
ProgressCallback = Callable[[int], None]


# --- settings --------------------------------------------------------------------------------


def resolve_url(url: str | None) -> str:
    """The service's root URL: the argument, else $JOBS_URL, else http://localhost:7071. A trailing
    /api is accepted and dropped (routes are built with it)."""
    base = (url or os.environ.get("JOBS_URL") or DEFAULT_URL).strip().rstrip("/")
    if base.endswith("/api"):
        base = base[: -len("/api")]
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"the service URL must start with http:// or https://, not {base!r}")
    return base


def resolve_key(key: str | None) -> str | None:
    return key or os.environ.get("JOBS_KEY") or None


def default_headers(key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": f"jobs-client/{__version__}"}
    if key:
        headers[KEY_HEADER] = key
    return headers


def new_key() -> str:
    return str(uuid.uuid4())


def derived_key(key: str, suffix: str) -> str:
    """A new Idempotency-Key derived from `key`, the same every time for the same inputs."""
    candidate = f"{key}:{suffix}"
    if len(candidate) <= MAX_KEY_LENGTH:
        return candidate
    return f"{hashlib.sha256(key.encode()).hexdigest()}:{suffix}"


TYPE_NAME_RULE = "1 to 100 letters, digits, '_', '.', ':' or '-', and not only dots"


def type_path(job_type: str) -> str:
    # Only dots would be read as a path segment (`.`, `..`) and name no type.
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,100}", job_type) or not job_type.strip("."):
        raise ValueError(f"{job_type!r} is not a job type name: {TYPE_NAME_RULE}")
    return f"/api/types/{job_type}"


def limits_body(
    max_concurrency: int | None | Literal["unchanged"], rate_limit: RateLimit | str | None | Literal["unchanged"]
) -> dict[str, Any]:
    """A PATCH body for limits: a value sets it, None goes back to the code's, "unchanged" leaves it."""
    body: dict[str, Any] = {}
    if max_concurrency != "unchanged":
        body["max_concurrency"] = max_concurrency
    if rate_limit != "unchanged":
        if isinstance(rate_limit, str):
            rate_limit = parse_rate(rate_limit)
        body["rate_limit"] = None if rate_limit is None else {"limit": rate_limit.limit,
                                                               "period_seconds": rate_limit.period_seconds}  # fmt: skip
    return body


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*(s|m|h)\s*$", re.IGNORECASE)


def parse_rate(text: str) -> RateLimit:
    """`10/s`, `100/m`, `5/h`, `20/30s` (20 per 30 seconds)."""
    m = _RATE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a rate such as 10/s, 100/m or 20/30s")
    return RateLimit(int(m[1]), float(m[2] or 1) * {"s": 1, "m": 60, "h": 3600}[m[3].lower()])


def job_path(job_id: str, action: str = "") -> str:
    if not isinstance(job_id, str) or not job_id.strip():
        raise ValueError("a job id is required")
    return f"/api/jobs/{quote(job_id.strip(), safe='')}" + (f"/{action}" if action else "")


def job_body(job: JobLike) -> dict[str, Any]:
    if isinstance(job, JobRequest):
        return job.to_body()
    if isinstance(job, Mapping):
        return dict(job)
    raise TypeError(f"a job request is a dict or a JobRequest, not {type(job).__name__}")


# --- retries ---------------------------------------------------------------------------------

_ALWAYS_RETRIED = frozenset({429, 503})  # the service asks us to come back
_RETRIED_IF_IDEMPOTENT = frozenset({502, 504})  # a gateway gave up: the request may have run
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # the request never left
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def retry_after(headers: httpx.Headers) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` more sends after the first, for 429 and 503 (waiting as Retry-After says,
    at most `max_retry_after`), 502/504 and transport errors (exponential backoff from `backoff`
    seconds, doubling up to `max_backoff`, with jitter). A request that is not idempotent is
    sent again only when it cannot have reached the server."""

    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    def backoff_delay(self, retry: int) -> float:
        """Equal jitter: half the exponential delay, plus up to as much again at random."""
        ceiling = min(self.max_backoff, self.backoff * 2.0**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def delay(self, retry: int, outcome: Outcome, call: Call) -> float | None:
        """Seconds to wait before sending `call` again after `outcome` (its `retry`-th resend;
        0 is the first send), or None if it should not be sent again."""
        if retry >= self.retries:
            return None
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            if status not in _ALWAYS_RETRIED and not (call.idempotent and status in _RETRIED_IF_IDEMPOTENT):
                return None
            asked = retry_after(outcome.headers)
            if asked is not None:
                return min(asked, self.max_retry_after)
            return self.backoff_delay(retry)
        if isinstance(outcome, _NOT_SENT) or (call.idempotent and isinstance(outcome, _TRANSIENT)):
            return self.backoff_delay(retry)
        return None


def _target(call: Call, outcome: Outcome) -> str:
    """The request's method and whole URL (without its query), so that a failure to reach the
    service names where it looked."""
    try:
        url = outcome.request.url.copy_with(query=None)
    except RuntimeError:  # a transport error raised before the request was built
        return f"{call.method} {call.path}"
    return f"{call.method} {url}"


def _describe(outcome: Outcome) -> str:
    if isinstance(outcome, httpx.Response):
        return f"{outcome.status_code} {outcome.reason_phrase}".rstrip()
    return f"{type(outcome).__name__}: {outcome or 'no response'}"


# --- responses -------------------------------------------------------------------------------


# Statuses the jobs API always answers with a problem body: without one, the answer came from
# something else (another server on that port, a path outside the API), not from a refusal.
_ONLY_FROM_THE_API = frozenset({400, 404, 405, 409, 412, 415, 422})


def decode(response: httpx.Response) -> Any:
    """The JSON body of a success response; raises the ApiError for an error response."""
    if response.status_code >= 400:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        is_problem = isinstance(body, Mapping) and ("code" in body or "status" in body)
        if response.status_code in _ONLY_FROM_THE_API and not is_problem:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise UnexpectedResponse(
                f"{response.request.method} {response.request.url.copy_with(query=None)} answered "
                f"{response.status_code} {response.reason_phrase} ({kind}), which is not an answer of the "
                "jobs API: is the URL right?",
                response.status_code,
            )
        raise error_for(response.status_code, body, response.reason_phrase)
    try:
        return response.json()
    except ValueError:
        raise UnexpectedResponse(
            f"{response.request.method} {response.request.url.path}: {response.status_code} "
            f"with a body that is not JSON: {response.text[:200]!r}",
            response.status_code,
        ) from None


def expect_object(data: Any, response: httpx.Response, *keys: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping) or any(k not in data for k in keys):
        raise UnexpectedResponse(
            f"{response.request.method} {response.request.url.path}: expected a JSON object"
            + (f" with {', '.join(keys)}" if keys else "")
            + f", got {str(data)[:200]!r}",
            response.status_code,
        )
    return data


# --- flows -----------------------------------------------------------------------------------


class Core:
    """Builds the flows for one client's retry policy."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock

    def exchange(self, call: Call) -> Flow[httpx.Response]:
        """Send `call`, again as the retry policy allows; the last response, whatever its status."""
        retry = 0
        while True:
            outcome = yield call
            assert outcome is not None
            delay = self.policy.delay(retry, outcome, call)
            if delay is None:
                if isinstance(outcome, httpx.TransportError):
                    attempts = f"{retry + 1} attempt{'s' if retry else ''}"
                    message = f"{_target(call, outcome)}: {_describe(outcome)} (after {attempts})"
                    raise ServiceUnreachable(message) from outcome
                return outcome
            retry += 1
            log.info(
                "%s: %s; sending it again in %.1f s (retry %d of %d)",
                _target(call, outcome), _describe(outcome), delay, retry, self.policy.retries,
            )  # fmt: skip
            yield Sleep(delay)

    def fetch(self, call: Call, *keys: str) -> Flow[tuple[Mapping[str, Any], httpx.Response]]:
        """Send `call` (with retries), raise for an error, return the JSON object and the response."""
        response = yield from self.exchange(call)
        return expect_object(decode(response), response, *keys), response

    # jobs

    def submit(
        self,
        type: str,
        payload: Any,
        max_attempts: int | None,
        delay_seconds: float | None,
        idempotency_key: str | None,
        run_at: datetime | str | None = None,
        priority: str | None = None,
    ) -> Flow[Job]:
        body = JobRequest(type, payload, max_attempts, delay_seconds, run_at, priority).to_body()
        # A key on every submit, the same on every resend: a retried submit never makes two jobs.
        headers = {"Idempotency-Key": idempotency_key or new_key()}
        data, _ = yield from self.fetch(Call("POST", "/api/jobs", json=body, headers=headers), "id")
        return Job.from_dict(data)

    def submit_batch(self, bodies: list[dict[str, Any]], key: str) -> Flow[list[Job]]:
        """One batch of up to 100 jobs. A 207 means storage failed between groups of records: the
        jobs it did store are kept, the others are sent again as a new batch under a key derived
        from `key` (the original key would only replay the same partial result)."""
        jobs: list[Job | None] = [None] * len(bodies)
        pending = list(range(len(bodies)))
        failures: dict[int, str] = {}
        for round_ in itertools.count():
            call_key = key if round_ == 0 else derived_key(key, f"retry{round_}")
            call = Call("POST", "/api/jobs/batch", json={"jobs": [bodies[i] for i in pending]},
                        headers={"Idempotency-Key": call_key})  # fmt: skip
            response = yield from self.exchange(call)
            data = expect_object(decode(response), response)
            if response.status_code != 207:
                stored = data.get("jobs")
                if not isinstance(stored, list) or len(stored) != len(pending):
                    raise UnexpectedResponse(f"the batch answer holds {len(stored or [])} jobs, not {len(pending)}",
                                             response.status_code)  # fmt: skip
                for i, item in zip(pending, stored, strict=True):
                    jobs[i] = Job.from_dict(item)
                return [j for j in jobs if j is not None]
            results = data.get("results")
            if not isinstance(results, list):
                raise UnexpectedResponse("a 207 answer without results", response.status_code)
            failures = {}
            for result in results:
                index = result.get("index") if isinstance(result, Mapping) else None
                if not isinstance(index, int) or not 0 <= index < len(pending):
                    raise UnexpectedResponse(f"a 207 result with a bad index: {result!r}", response.status_code)
                if result.get("status") == 202 and isinstance(result.get("job"), Mapping):
                    jobs[pending[index]] = Job.from_dict(result["job"])
                else:
                    failures[pending[index]] = str(result.get("detail") or f"status {result.get('status')}")
            pending = [i for i in pending if jobs[i] is None]
            if not pending:
                return [j for j in jobs if j is not None]
            if round_ >= self.policy.retries:
                break
            yield Sleep(self.policy.backoff_delay(round_))
        raise BatchIncomplete(jobs, failures)

    def submit_many(
        self,
        jobs: Iterable[JobLike],
        chunk_size: int,
        on_progress: ProgressCallback | None,
        idempotency_key: str | None,
    ) -> Flow[list[Job]]:
        if not 1 <= chunk_size <= MAX_BATCH:
            raise ValueError(f"chunk_size must be from 1 to {MAX_BATCH}")
        submitted: list[Job] = []
        iterator = iter(jobs)
        for number in itertools.count():
            chunk = [job_body(j) for j in itertools.islice(iterator, chunk_size)]
            if not chunk:
                return submitted
            key = derived_key(idempotency_key, f"chunk{number}") if idempotency_key else new_key()
            try:
                submitted += yield from self.submit_batch(chunk, key)
            except BatchIncomplete as exc:
                offset = len(submitted)
                incomplete = BatchIncomplete(
                    [*submitted, *exc.jobs], {offset + i: why for i, why in exc.failures.items()}
                )
                incomplete.stored = (*submitted, *(j for j in exc.jobs if j is not None))
                raise incomplete from None
            except JobsError as exc:
                exc.stored = tuple(submitted)
                raise
            if on_progress is not None:
                on_progress(len(submitted))
        raise AssertionError("unreachable")

    def get(self, job_id: str) -> Flow[Job]:
        data, _ = yield from self.fetch(Call("GET", job_path(job_id)), "id")
        return Job.from_dict(data)

    def list_page(
        self,
        status: str | None,
        type: str | None,
        since: datetime | str | None,
        until: datetime | str | None,
        limit: int,
        continuation: str | None,
        order: str = "newest",
    ) -> Flow[Page]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"the page size must be from 1 to {MAX_PAGE_SIZE}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
        params = {
            "status": status,
            "type": type,
            "since": format_time(since),
            "until": format_time(until),
            "limit": str(limit),
            "continuation": continuation,
            "order": order if order != "newest" else None,  # the service's default: left out
        }
        call = Call("GET", "/api/jobs", params={k: v for k, v in params.items() if v})
        data, _ = yield from self.fetch(call, "jobs")
        return Page.from_dict(data)

    def wait(
        self, job_id: str, timeout: float | None, poll_interval: float | None, on_progress: Callable[[Job], None] | None
    ) -> Flow[Job]:
        call = Call("GET", job_path(job_id))
        return (yield from self._poll(call, Job.from_dict, timeout, poll_interval, on_progress))

    def cancel(self, job_id: str) -> Flow[Job]:
        # Not idempotent: sent again only if the first send cannot have arrived (a second cancel
        # of a job the first one cancelled would be a 409).
        data, _ = yield from self.fetch(Call("POST", job_path(job_id, "cancel"), idempotent=False), "id")
        return Job.from_dict(data)

    def retry(self, job_id: str, extra_attempts: int) -> Flow[Job]:
        call = Call("POST", job_path(job_id, "retry"), json={"extra_attempts": extra_attempts}, idempotent=False)
        data, _ = yield from self.fetch(call, "id")
        return Job.from_dict(data)

    # bulk operations

    def start_operation(
        self,
        action: Literal["retry", "cancel"],
        *,
        status: str | None,
        type: str | None,
        since: datetime | str | None,
        until: datetime | str | None,
        ids: Iterable[str] | None,
        extra_attempts: int | None,
        idempotency_key: str | None,
    ) -> Flow[Operation]:
        body: dict[str, Any]
        if ids is not None:
            if isinstance(ids, str):
                raise TypeError("ids is a list of job ids, not one string")
            if any(v is not None for v in (status, type, since, until)):
                raise ValueError("give either ids or a filter (status, type, since, until), not both")
            body = {"ids": list(ids)}
        else:
            wanted = {"status": status, "type": type, "since": format_time(since), "until": format_time(until)}
            body = {"filter": {k: v for k, v in wanted.items() if v is not None}}
        if extra_attempts is not None:
            body["extra_attempts"] = extra_attempts
        call = Call("POST", f"/api/jobs/{action}", json=body, headers={"Idempotency-Key": idempotency_key or new_key()})
        data, _ = yield from self.fetch(call, "id")
        return Operation.from_dict(data)

    def get_operation(self, operation_id: str) -> Flow[Operation]:
        data, _ = yield from self.fetch(Call("GET", operation_path(operation_id)), "id")
        return Operation.from_dict(data)

    def wait_operation(
        self,
        operation_id: str,
        timeout: float | None,
        poll_interval: float | None,
        on_progress: Callable[[Operation], None] | None,
    ) -> Flow[Operation]:
        call = Call("GET", operation_path(operation_id))
        return (yield from self._poll(call, Operation.from_dict, timeout, poll_interval, on_progress))

    # flow control

    def types(self) -> Flow[JobTypes]:
        data, _ = yield from self.fetch(Call("GET", "/api/types"), "types")
        return JobTypes.from_dict(data)

    def get_type(self, job_type: str) -> Flow[JobType]:
        data, _ = yield from self.fetch(Call("GET", type_path(job_type)), "type")
        return JobType.from_dict(data)

    def change_type(self, job_type: str, body: Mapping[str, Any]) -> Flow[JobType]:
        # Sending the same change twice leaves the same state: safe to resend.
        data, _ = yield from self.fetch(Call("PATCH", type_path(job_type), json=dict(body)), "type")
        return JobType.from_dict(data)

    def pause_all(self, paused: bool) -> Flow[JobTypes]:
        data, _ = yield from self.fetch(Call("POST", "/api/pause" if paused else "/api/resume"), "types")
        return JobTypes.from_dict(data)

    def health(self) -> Flow[Mapping[str, Any]]:
        # One look, no retries: a 503 here is the answer (it names the dependency that failed).
        response = yield Call("GET", "/api/health")
        assert response is not None
        if isinstance(response, httpx.TransportError):
            raise ServiceUnreachable(f"GET /api/health: {type(response).__name__}: {response}") from response
        return expect_object(decode(response), response)

    def _poll(
        self,
        call: Call,
        parse: Callable[[Mapping[str, Any]], Polled],
        timeout: float | None,
        poll_interval: float | None,
        on_progress: Callable[[Polled], None] | None,
    ) -> Flow[Polled]:
        """GET `call` until the resource is finished; between looks, sleep `poll_interval`, or as
        Retry-After says (at most MAX_POLL_INTERVAL). Raise WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else self.clock() + timeout
        while True:
            data, response = yield from self.fetch(call, "id")
            current = parse(data)
            if on_progress is not None:
                on_progress(current)
            if current.finished:
                return current
            if poll_interval is not None:
                pause = poll_interval
            else:
                asked = retry_after(response.headers)
                pause = min(MAX_POLL_INTERVAL, DEFAULT_POLL_INTERVAL if asked is None else asked)
            if deadline is not None:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise WaitTimeout(current, timeout or 0.0)
                pause = min(pause, remaining)
            yield Sleep(pause)

    # schedules

    def create_schedule(
        self,
        type: str,
        cron: str,
        payload: Any,
        *,
        time_zone: str | None,
        max_attempts: int | None,
        priority: str | None,
        overlap: str | None,
        catch_up: str | None,
        name: str | None,
        paused: bool,
        idempotency_key: str | None,
    ) -> Flow[Schedule]:
        job: dict[str, Any] = {"type": type, "payload": payload}
        job.update({k: v for k, v in (("max_attempts", max_attempts), ("priority", priority)) if v is not None})
        body: dict[str, Any] = {"cron": cron, "job": job}
        options = {"time_zone": time_zone, "overlap": overlap, "catch_up": catch_up, "name": name}
        body.update({k: v for k, v in options.items() if v is not None})
        if paused:
            body["paused"] = True
        # As for submits: a key on every create, the same on every resend, so a retry never makes two.
        call = Call("POST", "/api/schedules", json=body, headers={"Idempotency-Key": idempotency_key or new_key()})
        data, _ = yield from self.fetch(call, "id")
        return Schedule.from_dict(data)

    def get_schedule(self, schedule_id: str) -> Flow[Schedule]:
        data, _ = yield from self.fetch(Call("GET", schedule_path(schedule_id)), "id")
        return Schedule.from_dict(data)

    def list_schedules_page(self, limit: int, continuation: str | None) -> Flow[SchedulePage]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"the page size must be from 1 to {MAX_PAGE_SIZE}")
        params = {"limit": str(limit), **({"continuation": continuation} if continuation else {})}
        data, _ = yield from self.fetch(Call("GET", "/api/schedules", params=params), "schedules")
        return SchedulePage.from_dict(data)

    def update_schedule(
        self, schedule_id: str, changes: Mapping[str, Any], if_revision: int | None = None
    ) -> Flow[Schedule]:
        """PATCH with the given fields (job fields under `job`). Setting fields is idempotent: the
        same PATCH sent twice leaves the schedule as once. With `if_revision` (If-Match) it is not
        sent again once it may have arrived: a second one would find the revision moved on."""
        job_fields = ("type", "payload", "max_attempts", "priority")
        body: dict[str, Any] = {k: v for k, v in changes.items() if k not in job_fields and v is not UNSET}
        job = {k: v for k, v in changes.items() if k in job_fields and v is not UNSET}
        if job:
            body["job"] = job
        call = Call("PATCH", schedule_path(schedule_id), json=body, headers=if_match(if_revision),
                    idempotent=if_revision is None)  # fmt: skip
        data, _ = yield from self.fetch(call, "id")
        return Schedule.from_dict(data)

    def delete_schedule(self, schedule_id: str, if_revision: int | None = None) -> Flow[None]:
        # Not resent once it may have arrived: a second DELETE of a deleted schedule is a 404.
        call = Call("DELETE", schedule_path(schedule_id), headers=if_match(if_revision), idempotent=False)
        response = yield from self.exchange(call)
        if response.status_code >= 400:
            decode(response)  # raises the error
        return None


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a field update_schedule leaves as it is (None sends null)


def if_match(revision: int | None) -> dict[str, str]:
    """The If-Match header naming a schedule's revision (its ETag), or none."""
    if revision is None:
        return {}
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise ValueError(f"a revision is a positive integer, not {revision!r}")
    return {"If-Match": f'"{revision}"'}


def schedule_path(schedule_id: str) -> str:
    if not isinstance(schedule_id, str) or not schedule_id.strip():
        raise ValueError("a schedule id is required")
    return f"/api/schedules/{quote(schedule_id.strip(), safe='')}"


def operation_path(operation_id: str) -> str:
    if not isinstance(operation_id, str) or not operation_id.strip():
        raise ValueError("an operation id is required")
    return f"/api/operations/{quote(operation_id.strip(), safe='')}"


def run_sync(flow: Flow[T], send: Callable[[Call], Outcome], sleep: Callable[[float], None]) -> T:
    """Carry out a flow's effects one after the other; its return value."""
    outcome: Outcome | None = None
    while True:
        try:
            effect = flow.send(outcome)
        except StopIteration as stop:
            result: T = stop.value
            return result
        if isinstance(effect, Sleep):
            sleep(effect.seconds)
            outcome = None
        else:
            outcome = send(effect)
