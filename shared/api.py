"""The HTTP contract (Asynchronous Request-Reply), independent of the Functions runtime.

Each route is a function from an `ApiRequest` to an `ApiResponse`, registered with `@endpoint`
together with what the OpenAPI document says of it (its models, statuses and headers), so the
document (shared/openapi.py) is generated from the same table the code runs. function_app.py only
binds each one and converts to and from the trigger's types. Bad input gets a 4xx problem
(RFC 9457) that says what is wrong, with a machine-readable `code`, and nothing is written.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ServiceRequestError, ServiceResponseError
from pydantic import BaseModel, ValidationError

from shared import contract as c
from shared.contract import ProblemCode
from shared.idempotency import IdempotencyMismatch, RequestHash
from shared.job import Job, utcnow
from shared.operations import Operation, OperationNotFound
from shared.service import Conflict, NotFound, Submission, short_error
from shared.store import BadContinuation
from shared.telemetry import trace_portal_url

if TYPE_CHECKING:
    from shared.app import Services

log = logging.getLogger("jobs.api")

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
JOBS_PATH = "/api/jobs"
# A job id's length: as a route constraint it keeps `jobs/batch`, `jobs/retry` and `jobs/cancel`
# from also matching `jobs/{id}`.
JOB_ID_LENGTH = 25
OPERATIONS_PATH = "/api/operations"
MAX_BATCH_BYTES = 4 * 1024 * 1024
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ApiRequest:
    method: str = "GET"
    route: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-case
    body: bytes = b""
    trace_parent: str | None = None  # the host's span for this request: our spans join its trace
    url: str = ""  # as requested (the host routes `docs/` to `docs`: pages redirect it, see canonical())


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return b"" if self.body is None else json.dumps(self.body, separators=(",", ":")).encode()


TITLES = {
    400: "Bad Request",
    404: "Not Found",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, ProblemCode(code), detail, extra
        self.headers = headers or {}

    def response(self) -> ApiResponse:
        body = {
            "type": f"urn:problem:jobs:{self.code.replace('_', '-')}",
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "code": str(self.code),
            **self.extra,
        }
        return ApiResponse(self.status, body, self.headers, content_type=PROBLEM_JSON)


Route = Callable[["Services", ApiRequest], Awaitable[ApiResponse]]


# --- the endpoint table: what the OpenAPI document is generated from ----------------------------


@dataclass(frozen=True)
class Reply:
    """One documented response of an endpoint."""

    description: str
    model: type[BaseModel] | None = None
    headers: tuple[str, ...] = ()  # names from HEADERS
    content_type: str | tuple[str, ...] = JSON


@dataclass(frozen=True)
class Endpoint:
    name: str  # the function's name in function_app.py, and the operationId
    method: str
    route: str  # as Functions writes it, below the /api prefix: "jobs/{id}"
    summary: str
    tag: str
    run: Route
    replies: Mapping[int, Reply]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    request_headers: tuple[str, ...] = ()
    anonymous: bool = False  # no function key needed in Azure
    body_required: bool = True
    path_values: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # extra schema of path parameters
    # A page or one of its files: a query (a link's tracking parameters, a redirect's) means nothing to
    # it and is ignored. Every other route refuses a query parameter it does not document.
    any_query: bool = False


ENDPOINTS: list[Endpoint] = []
_BY_RUN: dict[Route, Endpoint] = {}

HEADERS = {
    "Location": ("The URL of the resource to poll.", {"type": "string"}),
    "Retry-After": ("Seconds to wait before polling again.", {"type": "integer", "minimum": 1}),
    "Idempotent-Replayed": (
        "Present when the Idempotency-Key returned what an earlier request created.",
        {"type": "string", "enum": ["true"]},
    ),
    "Idempotency-Key": (
        "Any 1-255 visible ASCII characters: the same key returns the same result instead of doing it again.",
        {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
    ),
    "ETag": (
        "The resource's revision, quoted: send it back in If-Match to change it only if unchanged.",
        {"type": "string"},
    ),
    "If-Match": (
        "An ETag this resource answered with (or `*`): the change is made only if the resource is still at "
        'that revision, else 412. Compared strongly, as RFC 9110 says: a weak tag (`W/"2"`) matches nothing, '
        "nor does a value that is not a list of quoted tags (`2`).",
        {"type": "string", "maxLength": 1000},
    ),
}

PROBLEMS = {
    400: "The request is not valid: `code` and `detail` say why. Nothing was written.",
    404: "No such resource.",
    409: "The resource's state does not allow this.",
    412: "If-Match named a revision the resource is no longer at: someone changed it since. Read it again.",
    413: "The body or the payload is too large.",
    415: "The body is not JSON.",
    422: "Valid, but not doable: the Idempotency-Key was used before with a different request "
    "(`idempotency_key_reused`), or a time is out of range (`run_at_out_of_range`), or a cron expression "
    "matches no time (`unsatisfiable_cron`).",
    429: "The host is throttling requests (in Azure: the Functions host's HTTP concurrency limits). Retry later.",
    503: "Storage did not answer. Retry later.",
}
# Every route may answer these: the host's throttle, storage down, a bug.
COMMON_PROBLEMS = (429, 500, 503)


def problems(*statuses: int) -> dict[int, Reply]:
    return {
        s: Reply(PROBLEMS.get(s, TITLES[s]), c.ProblemDetails, content_type=PROBLEM_JSON)
        for s in (*statuses, *COMMON_PROBLEMS)
    }


def endpoint(
    method: str, route: str, summary: str, tag: str, replies: Mapping[int, Reply], **options: Any
) -> Callable[[Route], Route]:
    def register(run: Route) -> Route:
        # Any route but a page may answer an unknown query parameter with a 400.
        documented = dict(replies) if options.get("any_query") else {**problems(400), **replies}
        e = Endpoint(run.__name__, method, route, summary, tag, run, documented, **options)
        ENDPOINTS.append(e)
        _BY_RUN[run] = e
        return run

    return register


async def handle(route: Route, services: Callable[[], Awaitable[Services]], request: ApiRequest) -> ApiResponse:
    """Run a route, turning every Problem and domain error into its problem response."""
    started = asyncio.get_running_loop().time()
    try:
        endpoint = _BY_RUN.get(route)
        if endpoint is not None:
            _refuse_unknown_query(endpoint, request)
        app = await services()
        # Storage that accepts connections but does not answer would hold the request until the
        # SDK's own timeouts and retries gave up, minutes later: answer 503 well before.
        async with asyncio.timeout_at(started + app.config.api_timeout_seconds):
            with app.telemetry.joined(request.trace_parent):
                return await route(app, request)
    except TimeoutError:
        log.error("storage did not answer within the API's time limit (JOBS_API_TIMEOUT_SECONDS)")
        problem = Problem(503, "storage_unavailable", "storage did not answer in time; try again")
        problem.headers["Retry-After"] = "5"
        return problem.response()
    except Problem as problem:
        return problem.response()
    except NotFound as exc:
        return Problem(404, "job_not_found", f"no job with id {exc}").response()
    except OperationNotFound as exc:
        return Problem(404, "operation_not_found", f"no operation with id {exc}").response()
    except Conflict as exc:
        problem = Problem(409, "invalid_state", exc.reason)
        if exc.retry_at is not None:
            problem.headers["Retry-After"] = str(_retry_after(exc.retry_at))
        return problem.response()
    except (ServiceRequestError, ServiceResponseError) as exc:
        log.error("storage unreachable: %s", exc)
        if route is health:  # storage was down before the first request: health still says which
            checks = dict.fromkeys(("table", "queue"), short_error(exc))
            return Problem(503, "dependency_unavailable", "not answering: queue, table", checks=checks).response()
        return Problem(503, "storage_unavailable", "storage did not answer; try again").response()
    except Exception:
        log.exception("unhandled error in %s", getattr(route, "__name__", route))
        return Problem(500, "internal_error", "the server failed to handle this request").response()


# --- jobs ------------------------------------------------------------------------------------

ACCEPTED_JOB = Reply("Accepted: the job is queued. Poll `Location`.", c.JobResource,
                     ("Location", "Retry-After", "Idempotent-Replayed"))  # fmt: skip


@endpoint(
    "POST", "jobs", "Submit a job", "jobs", {202: ACCEPTED_JOB, **problems(400, 413, 415, 422)},
    body=c.JobRequest, request_headers=("Idempotency-Key",),
)  # fmt: skip
async def submit_job(app: Services, request: ApiRequest) -> ApiResponse:
    service = app.service
    body = _json_body(request, service.config.max_payload_bytes + 64 * 1024)
    sub = _submission(app, body)
    key = _idempotency_key(request)
    try:
        submitted = await service.submit(
            sub.type, sub.payload, max_attempts=sub.max_attempts, delay_seconds=sub.delay_seconds,
            idempotency_key=key, request_hash=RequestHash.of(body) if key else None, run_at=sub.run_at,
            priority=sub.priority,
        )  # fmt: skip
    except IdempotencyMismatch as exc:
        raise Problem(422, "idempotency_key_reused", str(exc)) from None
    job = submitted.job
    headers = {"Location": f"{JOBS_PATH}/{job.id}", "Retry-After": str(_retry_after(job.not_before))}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return ApiResponse(202, job.to_resource(), headers)


@endpoint(
    "POST", "jobs/batch", "Submit up to 100 jobs, all or nothing", "jobs",
    {
        202: Reply("Accepted: every job is queued.", c.BatchAccepted, ("Idempotent-Replayed",)),
        207: Reply("Storage failed between two groups of records: a result per job.", c.BatchPartial),
        **problems(400, 413, 415, 422),
    },
    body=c.BatchRequest, request_headers=("Idempotency-Key",),
)  # fmt: skip
async def submit_jobs(app: Services, request: ApiRequest) -> ApiResponse:
    """All or nothing: one invalid item and nothing is written. The jobs share a partition, so
    their records go in entity-group transactions (one billed call for up to 100 rows). If a
    later group fails after an earlier one landed, the answer is 207 with a result per item."""
    body = _json_body(request, MAX_BATCH_BYTES)
    try:
        items = [item.model_dump(exclude_unset=True) for item in c.BatchRequest.model_validate(body).jobs]
    except ValidationError as exc:
        item_errors = [e for e in exc.errors() if e["loc"][:1] == ("jobs",) and len(e["loc"]) > 2]
        extra = sorted({str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and len(e["loc"]) < 2})
        if extra:
            raise Problem(400, "unknown_field", f"unknown field(s): {', '.join(extra)}; a batch is "
                          f'{{"jobs": [...]}} with 1 to {c.MAX_BATCH} jobs', fields=extra) from None  # fmt: skip
        if len(item_errors) != len(exc.errors()):
            raise Problem(
                400, "invalid_body", f'the body must be {{"jobs": [...]}} with 1 to {c.MAX_BATCH} jobs'
            ) from None
        items = body["jobs"]
    subs, errors, statuses = [], [], set()
    for index, item in enumerate(items):
        try:
            subs.append(_submission(app, item))
        except Problem as problem:
            errors.append({"index": index, "code": str(problem.code), "detail": problem.detail})
            statuses.add(problem.status)
    if errors:
        # 422 when every item is well-formed but not doable (a run_at too far ahead), as for one job.
        status = 422 if statuses == {422} else 400
        raise Problem(status, "invalid_batch", f"{len(errors)} of {len(items)} jobs are invalid; none was submitted",
                      errors=errors)  # fmt: skip
    key = _idempotency_key(request)
    try:
        results, replayed = await app.service.submit_batch(subs, key, RequestHash.of(body) if key else None)
    except IdempotencyMismatch as exc:
        raise Problem(422, "idempotency_key_reused", str(exc)) from None
    if all(isinstance(r, Job) for r in results):
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return ApiResponse(202, {"jobs": [r.to_resource() for r in results]}, headers)
    out = [
        {"index": i, "status": 202, "job": r.to_resource()}
        if isinstance(r, Job)
        else {"index": i, "status": 503, "detail": f"not submitted: {r}"}
        for i, r in enumerate(results)
    ]
    return ApiResponse(207, {"results": out})


def _submission(app: Services, body: Any) -> Submission:
    """Validate one job submission; a Problem says what is wrong with it."""
    sub = _model(c.JobRequest, body, unknown="unknown_field")
    spec = app.registry.get(sub.type)
    if spec is None:
        raise Problem(400, "unknown_job_type", f"no handler for job type {sub.type!r}", known_types=app.registry.types)
    size = json_bytes(sub.payload)
    limit = app.config.max_payload_bytes
    if size > limit:
        raise Problem(413, "payload_too_large", f"payload is {size} bytes; the limit is {limit}")
    if sub.run_at is not None and sub.run_at > utcnow() + timedelta(seconds=c.MAX_DELAY_SECONDS):
        raise Problem(422, "run_at_out_of_range", "`run_at` may be at most 365 days ahead")
    return Submission(sub.type, sub.payload, sub.max_attempts, sub.delay_seconds or 0.0, sub.run_at, sub.priority)


@endpoint(
    "GET", "jobs", "List jobs, newest or oldest first", "jobs",
    {200: Reply("A page of jobs. Follow `continuation` until it is null.", c.JobList), **problems(400)},
    query=c.ListQuery,
)  # fmt: skip
async def list_jobs(app: Services, request: ApiRequest) -> ApiResponse:
    q = query_model(c.ListQuery, request)
    try:
        page = await app.service.list(
            q.status, q.type, q.limit, q.continuation, since=q.since, until=q.until, order=q.order
        )  # fmt: skip
    except BadContinuation as exc:
        raise Problem(400, "invalid_continuation", str(exc)) from None
    return ApiResponse(200, {"jobs": [j.to_resource() for j in page.jobs], "continuation": page.continuation})


@endpoint(
    "GET", f"jobs/{{id:length({JOB_ID_LENGTH})}}", "Get a job", "jobs",
    {200: Reply("The job. `Retry-After` while it is not finished.", c.JobResource, ("Retry-After",)),
     **problems(404)},
)  # fmt: skip
async def get_job(app: Services, request: ApiRequest) -> ApiResponse:
    job = await app.service.get(request.route.get("id", ""))
    body = _one_job(app, job)
    try:
        hold = await app.flow.holds.of(job)
    except AzureError as exc:  # only an explanation: the job is answered without it
        log.warning("could not tell what holds job %s back: %s", job.id, exc)
        hold = None
    if hold is not None:
        body["held_by"] = hold.to_resource()
    headers = {} if job.status.terminal else {"Retry-After": str(_retry_after(job.not_before))}
    if hold is not None:
        # A polling client need not ask before the job's reserved start, nor every second while
        # its type is paused; nor wait much longer than a minute: a change may start it sooner.
        until = max(hold.until or utcnow() + timedelta(seconds=HELD_POLL_SECONDS), job.not_before)
        headers["Retry-After"] = str(min(HELD_RETRY_AFTER, _retry_after(until)))
    return ApiResponse(200, body, headers)


@endpoint(
    "POST", "jobs/{id}/cancel", "Cancel a queued or running job", "jobs",
    {200: Reply("Cancelled. A running job stops at its next checkpoint.", c.JobResource), **problems(400, 404, 409)},
)  # fmt: skip
async def cancel_job(app: Services, request: ApiRequest) -> ApiResponse:
    """It takes no body (an empty one, or `{}`)."""
    no_body(request, "POST /api/jobs/{id}/cancel takes no body: it cancels the job, whatever a body says")
    return ApiResponse(200, _one_job(app, await app.service.cancel(request.route.get("id", ""))))


@endpoint(
    "POST", "jobs/{id}/retry", "Redrive a dead-lettered or cancelled job", "jobs",
    {200: Reply("Queued again as a new attempt (a job cancelled before its attempt started: as it was, the same "
                "attempt, at least its attempts left, its start time if still ahead).", c.JobResource, ("Location",)),
     **problems(400, 404, 409, 413, 415)},
    body=c.RetryRequest, body_required=False,
)  # fmt: skip
async def retry_job(app: Services, request: ApiRequest) -> ApiResponse:
    extra = 1
    if request.body.strip():
        extra = _model(c.RetryRequest, _json_body(request, 4096)).extra_attempts or 1
    job = await app.service.redrive(request.route.get("id", ""), extra_attempts=extra)
    return ApiResponse(200, _one_job(app, job), {"Location": f"{JOBS_PATH}/{job.id}"})


# --- bulk operations -------------------------------------------------------------------------

ACCEPTED_OPERATION = Reply(
    "Accepted: the operation runs in the background, a page at a time. Poll `Location`.",
    c.OperationResource, ("Location", "Retry-After", "Idempotent-Replayed"),
)  # fmt: skip


@endpoint(
    "POST", "jobs/retry", "Redrive every job matching a filter, or a list of ids", "bulk",
    {202: ACCEPTED_OPERATION, **problems(400, 413, 415, 422)},
    body=c.BulkRetryRequest, request_headers=("Idempotency-Key",),
)  # fmt: skip
async def retry_jobs(app: Services, request: ApiRequest) -> ApiResponse:
    """Without a `status`, dead-lettered then cancelled jobs. A filter matches every job it does not
    rule out: `{"filter": {}}` redrives every dead-lettered and cancelled job, of every type, with no
    confirmation. List with the same filter first to see what it matches."""
    return await _start_bulk(app, request, "retry", c.BulkRetryRequest)


@endpoint(
    "POST", "jobs/cancel", "Cancel every job matching a filter, or a list of ids", "bulk",
    {202: ACCEPTED_OPERATION, **problems(400, 413, 415, 422)},
    body=c.BulkCancelRequest, request_headers=("Idempotency-Key",),
)  # fmt: skip
async def cancel_jobs(app: Services, request: ApiRequest) -> ApiResponse:
    """Without a `status`, queued then running jobs. A filter matches every job it does not rule
    out: `{"filter": {}}` cancels every queued and running job, of every type, with no
    confirmation. List with the same filter first to see what it matches."""
    return await _start_bulk(app, request, "cancel", c.BulkCancelRequest)


async def _start_bulk(
    app: Services, request: ApiRequest, action: str, model: type[c.BulkRetryRequest | c.BulkCancelRequest]
) -> ApiResponse:
    body = _json_body(request, 128 * 1024)
    bulk = _model(model, body)
    job_filter = c.JobFilter.model_validate(bulk.filter.model_dump()) if bulk.filter is not None else None
    key = _idempotency_key(request)
    try:
        started = await app.operations.start(
            action, job_filter, bulk.ids, getattr(bulk, "extra_attempts", None),
            idempotency_key=key, request_hash=RequestHash.of(body, action) if key else None,
        )  # fmt: skip
    except IdempotencyMismatch as exc:
        raise Problem(422, "idempotency_key_reused", str(exc)) from None
    headers = {"Location": f"{OPERATIONS_PATH}/{started.operation.id}", "Retry-After": "1"}
    if not started.created:
        headers["Idempotent-Replayed"] = "true"
    return ApiResponse(202, started.operation.to_resource(), headers)


@endpoint(
    "GET", "operations/{id}", "Get a bulk operation's progress", "bulk",
    {200: Reply("The operation. `Retry-After` while it runs.", c.OperationResource, ("Retry-After",)),
     **problems(404)},
)  # fmt: skip
async def get_operation(app: Services, request: ApiRequest) -> ApiResponse:
    operation: Operation = await app.operations.get(request.route.get("id", ""))
    headers = {"Retry-After": "1"} if operation.status == c.OperationStatus.RUNNING else {}
    return ApiResponse(200, operation.to_resource(), headers)


# --- overview --------------------------------------------------------------------------------


@endpoint(
    "GET", "stats", "Counts by status, a series over 24 h, queue figures, recent dead letters", "service",
    {200: Reply("The overview the dashboard shows; as of the reconciler's last run.", c.StatsResource),
     **problems()},
)  # fmt: skip
async def stats(app: Services, request: ApiRequest) -> ApiResponse:
    """Reads aggregates the reconciler keeps: two table queries and the dead-letter index, whatever
    the history holds."""
    return ApiResponse(200, await app.stats.read(), {"Retry-After": "30"})


# --- service ---------------------------------------------------------------------------------


@endpoint(
    "GET", "health", "Whether storage answers", "service",
    {200: Reply("The table and the queue answer.", c.Health), **problems()}, anonymous=True,
)  # fmt: skip
async def health(app: Services, request: ApiRequest) -> ApiResponse:
    checks = await app.service.health()
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        raise Problem(503, "dependency_unavailable", f"not answering: {', '.join(failed)}", checks=checks)
    return ApiResponse(200, {"status": "ok", "checks": checks})


@endpoint(
    "GET", "metrics", "This process's metrics in the Prometheus text format", "service",
    {200: Reply("Prometheus text exposition format 0.0.4.", content_type="text/plain"), **problems()},
)  # fmt: skip
async def metrics(app: Services, request: ApiRequest) -> ApiResponse:
    """Kept in memory: nothing scans the job history. For local use: in Azure, Application
    Insights has them."""
    from shared.telemetry import prometheus_text

    # No charset here: the Python worker adds it to text types.
    return ApiResponse(200, prometheus_text(), content_type="text/plain; version=0.0.4")


async def fallback(app: Services, request: ApiRequest) -> ApiResponse:
    """Every request no route takes: 405 with `Allow` when the path is a route's and only the
    method is wrong, else 404. A problem either way (the host itself would answer an empty 404)."""
    path = request.route.get("path", "") or ""
    if (
        request.method == "GET"
        and path.endswith("/")
        and any(e.method == "GET" and route_matches(e.route, path.rstrip("/")) for e in ENDPOINTS)
    ):
        # `docs//`, or `docs/` on a host that does not route it to `docs`: the canonical URL.
        redirect = canonical(request)
        if redirect is not None:
            return redirect
    allowed = sorted({e.method for e in ENDPOINTS if route_matches(e.route, path)})
    if not allowed and any(
        e.method == request.method and route_matches(e.route, path, constrained=False) for e in ENDPOINTS
    ):
        # A job id of the wrong length fails the route's constraint: to the caller, no such job.
        raise NotFound(path.rstrip("/").rsplit("/", 1)[-1])
    if allowed:
        raise Problem(405, "method_not_allowed", f"{request.method} is not allowed here; use {', '.join(allowed)}",
                      headers={"Allow": ", ".join(allowed)})  # fmt: skip
    raise Problem(404, "not_found", f"no route /api/{path}")


def canonical(request: ApiRequest) -> ApiResponse | None:
    """A redirect from `/api/docs/` to `/api/docs` (the hosts route both to the same function), or
    None. A page's relative URLs (`docs/init.js`) resolve against its own URL, so under the
    trailing slash they would point a level too deep and the page would stay blank. The Location
    is relative (`../docs`), so it holds behind any host, route prefix or proxy."""
    parts = urlsplit(request.url)
    slashes = len(parts.path) - len(parts.path.rstrip("/"))
    name = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not slashes or not name:
        return None
    location = "../" * slashes + name + (f"?{parts.query}" if parts.query else "")
    return ApiResponse(308, None, {"Location": location}, content_type="text/plain")


_SEGMENT = re.compile(r"^\{(\w+)(?::length\((\d+)\))?\}$")


def route_matches(template: str, path: str, constrained: bool = True) -> bool:
    """Whether a request path below /api is one a route template takes: literals match without
    regard to case, parameters match one segment (of the given length, if constrained)."""
    wanted, given = template.split("/"), path.strip("/").split("/")
    if len(wanted) != len(given):
        return False
    for part, value in zip(wanted, given, strict=True):
        m = _SEGMENT.match(part)
        if m is None:
            if part.lower() != value.lower():
                return False
        elif not value or (constrained and m[2] is not None and len(value) != int(m[2])):
            return False
    return True


# --- helpers -------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text} is too large")
    return value


def parse_json(data: bytes | str) -> Any:
    """Strict JSON: no NaN or Infinity (they cannot be sent back as JSON), and nesting too deep for
    the parser is an error, not a crash."""
    try:
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None


def json_bytes(value: Any) -> int:
    """A JSON value's size as a client sends it: compact, in UTF-8, so `é` counts 2 bytes, not the 6
    of the `\\u00e9` escape Python writes by default. (A lone surrogate, which JSON can carry, counts 3.)"""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def no_body(request: ApiRequest, detail: str) -> None:
    """A route that takes no body refuses one (a caller who sent one meant something it does not
    do), save an empty body or `{}`, which say nothing."""
    if not request.body.strip():
        return
    try:
        if parse_json(request.body) == {}:
            return
    except (ValueError, UnicodeDecodeError):
        pass
    raise Problem(400, "invalid_body", detail)


def _json_body(request: ApiRequest, max_bytes: int) -> Any:
    if len(request.body) > max_bytes:
        raise Problem(413, "body_too_large", f"the body is {len(request.body)} bytes; the limit is {max_bytes}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != JSON and not content_type.endswith("+json"):
        raise Problem(415, "unsupported_media_type", f"send {JSON}, not {content_type}")
    if not request.body.strip():
        raise Problem(400, "invalid_body", "the body is empty; send a JSON object")
    try:
        return parse_json(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _refuse_unknown_query(e: Endpoint, request: ApiRequest) -> None:
    """A query parameter the route does not take is refused, not ignored: `POST /api/pause?type=x`
    would otherwise pause every type. `code` is the function key, which any route takes."""
    if e.any_query or not request.query:  # most requests have none: no sets made
        return
    known = list(e.query.model_fields) if e.query is not None else []
    unknown = sorted(set(request.query) - set(known) - {"code"})
    if unknown:
        path = "/api/" + re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", e.route)
        takes = ", ".join(known) if known else "none"
        raise Problem(400, "unknown_parameter", f"unknown query parameter(s): {', '.join(unknown)}; {e.method} "
                      f"{path} ({e.summary}) takes {takes}", fields=unknown)  # fmt: skip


def query_model(model: type[M], request: ApiRequest) -> M:
    """A route's query parameters, validated. `code` is the function key, when a client sends it
    in the query; an empty value is no value."""
    query = {k: v for k, v in request.query.items() if k != "code" and v != ""}
    # A parameter given twice arrives as its values joined with commas (so the Functions host
    # passes them), and no parameter's value holds one: say so rather than list the valid values.
    several = sorted(k for k, v in query.items() if "," in v and k in model.model_fields)
    if several:
        given = ", ".join(f"{k}={query[k]}" for k in several)
        raise Problem(400, "invalid_parameter", f"give each query parameter once, with one value ({given})",
                      fields=several)  # fmt: skip
    return _model(model, query, unknown="unknown_parameter", invalid="invalid_parameter")


def _model(model: type[M], data: Any, unknown: str = "unknown_field", invalid: str = "invalid_field") -> M:
    """Validate with a contract model, turning its errors into one problem that names the fields."""
    if not isinstance(data, dict):
        raise Problem(400, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
    # Unknown at any depth (`job.delay_seconds` in a schedule, `filter.colour`): named as at the top.
    extra = sorted({".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "extra_forbidden"})
    if extra:
        what = "query parameter(s)" if unknown == "unknown_parameter" else "field(s)"
        raise Problem(400, unknown, f"unknown {what}: {', '.join(extra)}", fields=extra)
    if model is c.JobRequest and any(e["loc"] == ("type",) and e["type"] == "missing" for e in errors):
        raise Problem(400, "missing_type", "`type` is required: the name of a registered job type")
    details = "; ".join(f"`{'.'.join(str(p) for p in e['loc']) or 'body'}`: {e['msg']}" for e in errors[:5])
    raise Problem(400, invalid, details)


def _idempotency_key(request: ApiRequest) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise Problem(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters")
    return key


def _one_job(app: Services, job: Job) -> dict[str, Any]:
    """A job as a response about that one job: with `trace_url` when the app knows its Application
    Insights resource (not in listings: a link is 500 characters a job)."""
    body = job.to_resource()
    until = job.finished_at if job.status.terminal else None
    url = trace_portal_url(app.config.appinsights_resource_id, job.trace_id, job.created_at, until)
    if url:
        body["trace_url"] = url
    return body


HELD_RETRY_AFTER = 60
HELD_POLL_SECONDS = 10  # a paused job's, or one asking for a slot again


def _retry_after(until: datetime) -> int:
    wait = (until - utcnow()).total_seconds()
    return max(1, min(3600, int(wait + 1)))
