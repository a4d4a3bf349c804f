"""Exceptions. Everything this package raises on purpose is a `JobsError`.

JobsError
├── ApiError                 an error response (application/problem+json), after any retries
│   ├── ClientError          4xx: the request was refused; sending it again will not help
│   │   ├── BadRequest            400
│   │   ├── Unauthorized          401, 403 (a missing or wrong function key)
│   │   ├── NotFound              404
│   │   ├── Conflict              409 (e.g. cancelling a finished job)
│   │   ├── PreconditionFailed    412 (a schedule changed since the revision given)
│   │   ├── ContentTooLarge       413
│   │   ├── UnsupportedMediaType  415
│   │   ├── UnprocessableContent  422 (e.g. an Idempotency-Key reused with another body)
│   │   └── TooManyRequests       429 (still throttled after the retries)
│   └── ServerError          5xx
│       └── ServiceUnavailable    503 (still unavailable after the retries)
├── ServiceUnreachable       no response at all (connection refused, timeouts) after the retries
├── UnexpectedResponse       an answer that is not what the API promises (or not from the API at all)
├── BatchIncomplete          some jobs of a batch could not be stored, even after retries
└── WaitTimeout              wait()/wait_operation() gave up; `.last` is the last state seen
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs_client.models import Job, Operation


class JobsError(Exception):
    """Base class of every error raised by jobs_client. From `submit_many`, `stored` holds the
    jobs its earlier chunks stored before the error, in input order (they stay stored)."""

    stored: tuple[Job, ...] = ()


class ApiError(JobsError):
    """The service answered with an error. `problem` is the whole RFC 9457 body (or what could be
    made of a body that was not one); `code` is its machine-readable `code`, when it has one."""

    def __init__(
        self, status: int, detail: str, *, code: str | None = None, problem: Mapping[str, Any] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.problem: Mapping[str, Any] = dict(problem or {})
        super().__init__(f"{status} {code or 'error'}: {detail}" if detail else f"{status} {code or 'error'}")


class ClientError(ApiError):
    """A 4xx answer."""


class BadRequest(ClientError):
    """400: the request is invalid (see `code` and `problem`, e.g. `errors` of an invalid batch)."""


class Unauthorized(ClientError):
    """401 or 403: the function key is missing or wrong."""


class NotFound(ClientError):
    """404: no such job or operation."""


class Conflict(ClientError):
    """409: the job's state does not allow the change (code `invalid_state`)."""


class PreconditionFailed(ClientError):
    """412: the schedule is no longer at the revision given (code `revision_mismatch`): someone
    changed it since it was read. `problem["revision"]` is the revision it is at now."""


class ContentTooLarge(ClientError):
    """413: the payload or the body is over the service's limit."""


class UnsupportedMediaType(ClientError):
    """415."""


class UnprocessableContent(ClientError):
    """422: e.g. code `idempotency_key_reused`, an Idempotency-Key sent before with another body."""


class TooManyRequests(ClientError):
    """429, still, after the client's retries."""


class ServerError(ApiError):
    """A 5xx answer."""


class ServiceUnavailable(ServerError):
    """503, still, after the client's retries (for health: the dependency that does not answer
    is in `problem["checks"]`)."""


class ServiceUnreachable(JobsError):
    """No answer at all (connection refused or reset, timeouts), after the client's retries."""


class UnexpectedResponse(JobsError):
    """A success status whose body is not what the API promises (not JSON, wrong shape), or an
    error that did not come from the API (a 404 without a problem body: a wrong URL or port)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BatchIncomplete(JobsError):
    """Some jobs of a batch were not stored even after retries (the service kept answering 207).

    `jobs` has one entry per job request consumed so far, in input order: the Job, or None for
    one that was not stored. Requests after the failed chunk were not sent. `failures` maps the
    index of each job that was not stored to the service's reason."""

    def __init__(self, jobs: list[Job | None], failures: Mapping[int, str]) -> None:
        self.jobs = jobs
        self.failures = dict(failures)
        first = min(self.failures) if self.failures else None
        super().__init__(
            f"{len(self.failures)} job(s) were not stored after retries (first: index {first}: "
            f"{self.failures.get(first, '') if first is not None else ''}); "
            f"{sum(j is not None for j in jobs)} were"
        )


class WaitTimeout(JobsError, TimeoutError):
    """The job or operation did not finish in time. `last` is its state at the last look."""

    def __init__(self, last: Job | Operation, timeout: float) -> None:
        self.last = last
        self.timeout = timeout
        kind = "job" if isinstance(last, Job) else "operation"
        super().__init__(f"{kind} {last.id} is still {last.status} after {timeout:g} s")


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    413: ContentTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableContent,
    429: TooManyRequests,
    503: ServiceUnavailable,
}


def error_for(status: int, body: Any, reason: str = "") -> ApiError:
    """The exception for an error response. `body` is the decoded JSON, or the text if it was not JSON."""
    problem: dict[str, Any] = dict(body) if isinstance(body, Mapping) else {}
    if not problem:
        problem = {"status": status, "title": reason}
        if isinstance(body, str) and body.strip():
            problem["detail"] = body.strip()[:500]
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = str(problem.get("detail") or problem.get("title") or reason or "")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ClientError)
    return cls(status, detail, code=code, problem=problem)
