"""Python client for the serverless job system: `JobsClient` (sync), `AsyncJobsClient` (async),
and the `jobs` command line (`jobs_client.cli`)."""

from jobs_client._version import __version__
from jobs_client.aio import AsyncJobsClient
from jobs_client.client import JobsClient
from jobs_client.errors import (
    ApiError,
    BadRequest,
    BatchIncomplete,
    ClientError,
    Conflict,
    ContentTooLarge,
    JobsError,
    NotFound,
    ServerError,
    ServiceUnavailable,
    ServiceUnreachable,
    TooManyRequests,
    Unauthorized,
    UnexpectedResponse,
    UnprocessableContent,
    UnsupportedMediaType,
    WaitTimeout,
)
from jobs_client.models import Job, JobError, JobRequest, JobType, JobTypes, Operation, OperationError, Page, RateLimit

__all__ = [
    "ApiError",
    "AsyncJobsClient",
    "BadRequest",
    "BatchIncomplete",
    "ClientError",
    "Conflict",
    "ContentTooLarge",
    "Job",
    "JobError",
    "JobRequest",
    "JobsClient",
    "JobsError",
    "JobType",
    "JobTypes",
    "NotFound",
    "Operation",
    "OperationError",
    "Page",
    "RateLimit",
    "ServerError",
    "ServiceUnavailable",
    "ServiceUnreachable",
    "TooManyRequests",
    "Unauthorized",
    "UnexpectedResponse",
    "UnprocessableContent",
    "UnsupportedMediaType",
    "WaitTimeout",
    "__version__",
]
