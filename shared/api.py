"""The HTTP contract (Asynchronous Request-Reply), independent of the Functions runtime.

Each route is a function from an `ApiRequest` to an `ApiResponse`; function_app.py only converts
to and from the trigger's types. Bad input gets a 4xx problem (RFC 9457) that says what is wrong,
with a machine-readable `code`, and nothing is written.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ServiceRequestError, ServiceResponseError

from shared.job import Job, Status, utcnow
from shared.service import Conflict, JobService, NotFound, Submission, is_status
from shared.store import BadContinuation, IdempotencyMismatch, with_request_hash

log = logging.getLogger("jobs.api")

PROBLEM_JSON = "application/problem+json"
JSON = "application/json"
JOBS_PATH = "/api/jobs"
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_DELAY_SECONDS = 365 * 24 * 3600
MAX_ATTEMPTS_CEILING = 100
MAX_BATCH = 100
MAX_BATCH_BYTES = 4 * 1024 * 1024
SUBMIT_FIELDS = {"type", "payload", "max_attempts", "delay_seconds"}
_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class ApiRequest:
    method: str = "GET"
    route: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-case
    body: bytes = b""
    trace_parent: str | None = None  # the host's span for this request: our spans join its trace


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


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def response(self) -> ApiResponse:
        titles = {
            400: "Bad Request",
            404: "Not Found",
            409: "Conflict",
            413: "Content Too Large",
            415: "Unsupported Media Type",
            422: "Unprocessable Content",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }
        body = {
            "type": f"urn:problem:jobs:{self.code.replace('_', '-')}",
            "title": titles.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }
        return ApiResponse(self.status, body, content_type=PROBLEM_JSON)


Route = Callable[[JobService, ApiRequest], ApiResponse]


def handle(route: Route, services: Callable[[], Any], request: ApiRequest) -> ApiResponse:
    """Run a route, turning every Problem and domain error into its problem response."""
    try:
        app = services()
        with app.telemetry.joined(request.trace_parent):
            return route(app.service, request)
    except Problem as problem:
        return problem.response()
    except NotFound as exc:
        return Problem(404, "job_not_found", f"no job with id {exc}").response()
    except Conflict as exc:
        return Problem(409, "invalid_state", exc.reason).response()
    except (ServiceRequestError, ServiceResponseError) as exc:
        log.error("storage unreachable: %s", exc)
        return Problem(503, "storage_unavailable", "storage did not answer; try again").response()
    except Exception:
        log.exception("unhandled error in %s", getattr(route, "__name__", route))
        return Problem(500, "internal_error", "the server failed to handle this request").response()


# --- routes --------------------------------------------------------------------------------


def submit(service: JobService, request: ApiRequest) -> ApiResponse:
    body = _json_body(request, service.config.max_payload_bytes + 64 * 1024)
    sub = _submission(service, body)
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise Problem(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters")
    try:
        submitted = service.submit(
            sub.type, sub.payload, max_attempts=sub.max_attempts, delay_seconds=sub.delay_seconds,
            idempotency_key=key, request_hash=with_request_hash(body) if key else None,
        )  # fmt: skip
    except IdempotencyMismatch as exc:
        raise Problem(422, "idempotency_key_reused", str(exc)) from None
    job = submitted.job
    headers = {"Location": f"{JOBS_PATH}/{job.id}", "Retry-After": str(_retry_after(job))}
    if not submitted.created:
        headers["Idempotent-Replayed"] = "true"
    return ApiResponse(202, job.to_resource(), headers)


def submit_batch(service: JobService, request: ApiRequest) -> ApiResponse:
    """Up to 100 jobs in one request, all or nothing: one invalid item and nothing is written.
    The jobs share a partition, so their records go in entity-group transactions (one billed
    call for up to 100 rows). If a later group fails after an earlier one landed, the answer is
    207 with a result per item."""
    body = _json_body(request, MAX_BATCH_BYTES)
    items = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH or set(body) != {"jobs"}:
        raise Problem(400, "invalid_body", f'the body must be {{"jobs": [...]}} with 1 to {MAX_BATCH} jobs')
    subs, errors = [], []
    for index, item in enumerate(items):
        try:
            subs.append(_submission(service, item))
        except Problem as problem:
            errors.append({"index": index, "code": problem.code, "detail": problem.detail})
    if errors:
        raise Problem(400, "invalid_batch", f"{len(errors)} of {len(items)} jobs are invalid; none was submitted",
                      errors=errors)  # fmt: skip
    key = request.headers.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise Problem(400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters")
    try:
        results, replayed = service.submit_batch(subs, key, with_request_hash(body) if key else None)
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


def _submission(service: JobService, body: Any) -> Submission:
    """Validate one job submission; a Problem says what is wrong with it."""
    if not isinstance(body, dict):
        raise Problem(400, "invalid_body", "the body must be a JSON object")
    unknown = sorted(set(body) - SUBMIT_FIELDS)
    if unknown:
        raise Problem(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}", fields=unknown)
    job_type = body.get("type")
    if not isinstance(job_type, str) or not job_type:
        raise Problem(400, "missing_type", "`type` is required: the name of a registered job type")
    if service.registry.get(job_type) is None:
        raise Problem(
            400, "unknown_job_type", f"no handler for job type {job_type!r}", known_types=service.registry.types
        )
    payload = body.get("payload")
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    if size > service.config.max_payload_bytes:
        raise Problem(
            413, "payload_too_large", f"payload is {size} bytes; the limit is {service.config.max_payload_bytes}"
        )
    max_attempts = _int_field(body, "max_attempts", 1, MAX_ATTEMPTS_CEILING)
    delay = body.get("delay_seconds", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise Problem(400, "invalid_field", f"`delay_seconds` must be a number from 0 to {MAX_DELAY_SECONDS}")
    return Submission(job_type, payload, max_attempts, float(delay))


def get(service: JobService, request: ApiRequest) -> ApiResponse:
    job = service.get(request.route.get("id", ""))
    headers = {} if job.status.terminal else {"Retry-After": str(_retry_after(job))}
    return ApiResponse(200, job.to_resource(), headers)


def list_jobs(service: JobService, request: ApiRequest) -> ApiResponse:
    q = request.query
    unknown = sorted(set(q) - {"status", "type", "limit", "continuation"})
    if unknown:
        raise Problem(400, "unknown_parameter", f"unknown query parameter(s): {', '.join(unknown)}")
    status = q.get("status") or None
    if status is not None and not is_status(status):
        raise Problem(400, "invalid_parameter", f"status must be one of {', '.join(s.value for s in Status)}")
    job_type = q.get("type") or None
    if job_type is not None and not _TYPE.match(job_type):
        raise Problem(400, "invalid_parameter", "type must be 1-100 letters, digits or _.:-")
    limit_text = q.get("limit") or str(DEFAULT_LIMIT)
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise Problem(400, "invalid_parameter", f"limit must be a whole number from 1 to {MAX_LIMIT}")
    try:
        page = service.list(status, job_type, int(limit_text), q.get("continuation") or None)
    except BadContinuation as exc:
        raise Problem(400, "invalid_continuation", str(exc)) from None
    return ApiResponse(200, {"jobs": [j.to_resource() for j in page.jobs], "continuation": page.continuation})


def cancel(service: JobService, request: ApiRequest) -> ApiResponse:
    return ApiResponse(200, service.cancel(request.route.get("id", "")).to_resource())


def retry(service: JobService, request: ApiRequest) -> ApiResponse:
    extra = 1
    if request.body.strip():
        body = _json_body(request, 4096)
        if not isinstance(body, dict) or set(body) - {"extra_attempts"}:
            raise Problem(400, "invalid_body", 'the body, if any, is {"extra_attempts": n}')
        extra = _int_field(body, "extra_attempts", 1, MAX_ATTEMPTS_CEILING) or 1
    job = service.redrive(request.route.get("id", ""), extra_attempts=extra)
    return ApiResponse(200, job.to_resource(), {"Location": f"{JOBS_PATH}/{job.id}"})


def health(service: JobService, request: ApiRequest) -> ApiResponse:
    checks = service.health()
    failed = sorted(name for name, result in checks.items() if result != "ok")
    if failed:
        raise Problem(503, "dependency_unavailable", f"not answering: {', '.join(failed)}", checks=checks)
    return ApiResponse(200, {"status": "ok", "checks": checks})


def metrics(service: JobService, request: ApiRequest) -> ApiResponse:
    """This process's counters, histograms and gauges in the Prometheus text format (local use:
    in Azure, Application Insights has them). Kept in memory: nothing scans the job history."""
    from shared.telemetry import prometheus_text

    return ApiResponse(200, prometheus_text(), content_type="text/plain; version=0.0.4; charset=utf-8")


# --- helpers -------------------------------------------------------------------------------


def _json_body(request: ApiRequest, max_bytes: int) -> Any:
    if len(request.body) > max_bytes:
        raise Problem(413, "body_too_large", f"the body is {len(request.body)} bytes; the limit is {max_bytes}")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != JSON and not content_type.endswith("+json"):
        raise Problem(415, "unsupported_media_type", f"send {JSON}, not {content_type}")
    if not request.body.strip():
        raise Problem(400, "invalid_body", "the body is empty; send a JSON object")
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON: {exc}") from None


def _int_field(body: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Problem(400, "invalid_field", f"`{name}` must be a whole number from {low} to {high}")
    return value


def _retry_after(job: Any) -> int:
    wait = (job.not_before - utcnow()).total_seconds()
    return max(1, min(3600, int(wait + 1)))
