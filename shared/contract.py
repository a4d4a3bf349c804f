"""The HTTP contract's bodies, as pydantic models: what requests are validated with and what the
OpenAPI document (shared/openapi.py) is generated from, so the two cannot drift apart.

Request models forbid unknown fields and take numbers only as JSON numbers (never `"3"` or
`true`); a whole-valued `2.0` is an integer, as JSON Schema says.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from shared.job import Priority, Status

MAX_DELAY_SECONDS = 365 * 24 * 3600
MAX_ATTEMPTS_CEILING = 100
MAX_BATCH = 100
MAX_BULK_IDS = 1000
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
TYPE_PATTERN = r"^[A-Za-z0-9_.:-]{1,100}$"
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class ProblemCode(StrEnum):
    """Every machine-readable `code` a problem response carries."""

    MALFORMED_JSON = "malformed_json"
    INVALID_BODY = "invalid_body"
    MISSING_TYPE = "missing_type"
    UNKNOWN_JOB_TYPE = "unknown_job_type"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_FIELD = "invalid_field"
    RUN_AT_OUT_OF_RANGE = "run_at_out_of_range"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BODY_TOO_LARGE = "body_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_BATCH = "invalid_batch"
    UNKNOWN_PARAMETER = "unknown_parameter"
    INVALID_PARAMETER = "invalid_parameter"
    INVALID_CONTINUATION = "invalid_continuation"
    JOB_NOT_FOUND = "job_not_found"
    OPERATION_NOT_FOUND = "operation_not_found"
    TYPE_NOT_FOUND = "type_not_found"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    INVALID_STATE = "invalid_state"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    DEPENDENCY_UNAVAILABLE = "dependency_unavailable"
    INTERNAL_ERROR = "internal_error"
    # schedules (shared/schedules/)
    SCHEDULE_NOT_FOUND = "schedule_not_found"
    INVALID_CRON = "invalid_cron"
    UNSATISFIABLE_CRON = "unsatisfiable_cron"
    UNKNOWN_TIME_ZONE = "unknown_time_zone"
    REVISION_MISMATCH = "revision_mismatch"
    INVALID_IF_MATCH = "invalid_if_match"


def _json_number(value: Any) -> Any:
    # pydantic's lax mode would turn "3" or true into 3: a client bug we would rather report.
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# The constraints come before the validator: after it, pydantic writes them into the JSON Schema
# under their Python names (`ge`, `le`) instead of `minimum` and `maximum`.
# RFC 3339, as the document's `format: date-time` says; pydantic alone would also take a Unix time
# or a time without seconds.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):  # already parsed (a model built from another)
        return value
    if not (isinstance(value, str) and _RFC3339.fullmatch(value)):
        raise ValueError("give an RFC 3339 date-time with a time zone, such as 2026-01-31T12:00:00Z")
    return value


Attempts = Annotated[int, Field(ge=1, le=MAX_ATTEMPTS_CEILING), BeforeValidator(_json_number)]
Moment = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]
Seconds = Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS), BeforeValidator(_json_number)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ----------------------------------------------------------------------------------


def _delay_or_run_at(schema: dict[str, Any]) -> None:
    # Not both given; null is "not given", as everywhere in a request.
    schema["not"] = {
        "required": ["delay_seconds", "run_at"],
        "properties": {"delay_seconds": {"type": "number"}, "run_at": {"type": "string"}},
    }


class JobRequest(Strict):
    """One job to run."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_delay_or_run_at)
    type: str = Field(min_length=1, description="A registered job type (the document lists them).")
    payload: Any = Field(None, description="Any JSON value, handed to the handler (at most JOBS_MAX_PAYLOAD_BYTES).")
    max_attempts: Attempts | None = Field(None, description="Attempts before the job is dead-lettered.")
    delay_seconds: Seconds | None = Field(
        None, description="Start no earlier than this many seconds from now (up to 365 days). Not with `run_at`."
    )
    run_at: Moment | None = Field(
        None,
        description="Start no earlier than this time (RFC 3339; a past time means now; up to 365 days ahead: "
        "later is a 422). Not with `delay_seconds`.",
    )
    priority: Priority | None = Field(
        None,
        description="Which queue the job waits in: `high` never waits behind `normal` or `low` work, `low` never "
        "delays `normal`. Default: the type's priority, else `normal`.",
    )

    @model_validator(mode="after")
    def _one_start(self) -> JobRequest:
        if self.delay_seconds is not None and self.run_at is not None:
            raise ValueError("give `delay_seconds` or `run_at`, not both")
        return self


class BatchRequest(Strict):
    jobs: list[JobRequest] = Field(min_length=1, max_length=MAX_BATCH)


class RetryRequest(Strict):
    extra_attempts: Attempts | None = Field(
        None,
        description="Attempts the redriven job may spend (default 1); "
        "for a job cancelled before its attempt started, at least that many.",
    )


class _Filter(Strict):
    type: str | None = Field(None, pattern=TYPE_PATTERN)
    since: Moment | None = Field(None, description="Due at or after this time (RFC 3339).")
    until: Moment | None = Field(None, description="Due before this time (RFC 3339).")


class JobFilter(_Filter):
    """Which jobs a bulk action applies to. Times bound the job's due time (for a job without a
    delay, when it was submitted). Without a status, every status the action applies to."""

    status: Status | None = None


# The statuses as plain strings, not Status members: pydantic words a refusal of enum members as
# their repr (`<Status.QUEUED: 'queued'>`). JobFilter turns them into Status.
class RetryFilter(_Filter):
    status: Literal["dead_lettered", "cancelled"] | None = Field(
        None, description="Default: both, dead-lettered first."
    )


class CancelFilter(_Filter):
    status: Literal["queued", "running"] | None = Field(None, description="Default: both, queued first.")


def _filter_or_ids(schema: dict[str, Any]) -> None:
    schema["oneOf"] = [{"required": ["filter"]}, {"required": ["ids"]}]
    for name in ("filter", "ids"):
        schema["properties"][name].pop("default", None)


class _Selector(Strict):
    """Either a filter or a list of ids (exactly one of the two)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_filter_or_ids)
    filter: Any
    ids: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(  # type: ignore[assignment]
        None, min_length=1, max_length=MAX_BULK_IDS, description="These jobs (each at most once)."
    )

    @model_validator(mode="after")
    def _one_selector(self) -> _Selector:
        if (self.filter is None) == (self.ids is None):
            raise ValueError("give either `filter` or `ids`, not both and not neither")
        return self


# Absent, never null: a default is not validated, so an explicit null is refused.
class BulkRetryRequest(_Selector):
    filter: RetryFilter = Field(  # type: ignore[assignment]
        None, description="Every job that matches: `{}` is every dead-lettered and cancelled job, of every type."
    )
    extra_attempts: Attempts | None = Field(
        None,
        description="Attempts each redriven job may spend (default 1); "
        "for a job cancelled before its attempt started, at least that many.",
    )


class BulkCancelRequest(_Selector):
    filter: CancelFilter = Field(  # type: ignore[assignment]
        None, description="Every job that matches: `{}` is every queued and running job, of every type."
    )


class ListQuery(Strict):
    """Query parameters of `GET /api/jobs` (all optional)."""

    status: Status | None = None
    type: str | None = Field(None, pattern=TYPE_PATTERN)
    since: Moment | None = Field(None, description="Only jobs due at or after this time (RFC 3339).")
    until: Moment | None = Field(None, description="Only jobs due before this time (RFC 3339).")
    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    continuation: str | None = Field(None, description="The `continuation` of the previous page (empty: the first).")
    order: Literal["newest", "oldest"] = Field(
        "newest",
        description="By due time. `newest` reads one query per partition a page. `oldest` finds each page with "
        "probes of row keys going forward from `since` (default: the oldest job kept), then reads its jobs: in a "
        "steady listing also one query per partition a page, the first page a few more (see the README).",
    )


# --- responses ---------------------------------------------------------------------------------


class AttemptError(BaseModel):
    attempt: int
    error: str
    at: datetime


class JobHold(BaseModel):
    """Why a queued job that is due has not started: flow control holds it back."""

    reason: Literal["pause", "concurrency_limit", "rate_limit"] = Field(
        description="`pause`: its type is paused (it stays queued until resumed); `concurrency_limit`: every slot of "
        "its type is held, and it asks again at `until` or when one is given back; `rate_limit`: it holds the start "
        "`until` under its type's rate limit."
    )
    until: datetime | None = Field(
        description="When it asks for a slot again, or its reserved start; null for a pause, or once its back-off "
        "for a slot has ended."
    )


class JobResource(BaseModel):
    id: str
    type: str
    status: Status
    attempt: int = Field(description="The current attempt, 1 for the first run.")
    max_attempts: int
    priority: Priority
    payload: Any = None
    result: Any = None
    errors: list[AttemptError] = Field(
        description="One entry per failed attempt, each error cut at 2,000 characters: the last 20, or fewer "
        "if they would pass 30,000 characters in all (the oldest go first)."
    )
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    due_at: datetime = Field(description="When the first attempt could start.")
    started_at: datetime | None
    finished_at: datetime | None
    trace_id: str | None = Field(
        None, description="The job's trace (every attempt joins it): the operation id in Application Insights."
    )
    trace_url: str | None = Field(
        None,
        description="In answers about one job (get, cancel, retry), when the app knows its Application Insights "
        "resource (`JOBS_APPINSIGHTS_RESOURCE_ID`, set by the templates in Azure) and the job has a trace: a link "
        "to the job's telemetry in the Azure portal (Logs, with a query for its operation id). Absent otherwise.",
    )
    held_by: JobHold | None = Field(
        None,
        description="In the answer to a get, for a queued job that is due: what holds it back, if flow control does "
        "(a rate limit shows a reserved start only when it is over 30 s ahead). Absent otherwise, and in listings.",
    )


class JobList(BaseModel):
    jobs: list[JobResource]
    continuation: str | None = Field(description="Pass it back for the next page; null on the last.")


class BatchAccepted(BaseModel):
    jobs: list[JobResource]


class BatchItemResult(BaseModel):
    index: int
    status: Literal[202, 503]
    job: JobResource | None = None
    detail: str | None = None


class BatchPartial(BaseModel):
    """Storage failed between two groups of records: some jobs were submitted, some not."""

    results: list[BatchItemResult]


class OperationStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OperationError(BaseModel):
    id: str
    error: str


class OperationResource(BaseModel):
    id: str
    action: Literal["retry", "cancel"]
    status: OperationStatus
    filter: JobFilter | None
    ids_count: int | None = Field(description="How many ids the request listed (null for a filter).")
    extra_attempts: int | None
    matched: int = Field(description="Jobs looked at so far.")
    applied: int = Field(description="Jobs this operation redrove or cancelled.")
    skipped: int = Field(description="Jobs whose state did not allow the action (or that no longer exist).")
    failed: int = Field(description="Jobs the action failed on (see `errors`).")
    errors: list[OperationError] = Field(description="The first 20 failures.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class StatusCounts(BaseModel):
    queued: int
    running: int
    succeeded: int
    dead_lettered: int
    cancelled: int


class SeriesPoint(StatusCounts):
    at: datetime = Field(description="The start of a 5-minute bucket of due times.")


class QueueFigures(BaseModel):
    depth: int | None = Field(description="Messages in the jobs queue (approximate).")
    poison_depth: int | None
    oldest_queued_age_seconds: float | None = Field(
        description="Age of the queues' oldest visible message when the reconciler looked (`as_of`); null: none."
    )


class StatsResource(BaseModel):
    """The dashboard's overview, from aggregates the reconciler keeps (every 30 s)."""

    as_of: datetime | None = Field(description="When the reconciler last counted (null before its first run).")
    last_hour: StatusCounts = Field(description="Jobs due in the last hour, by their status now.")
    last_24h: StatusCounts
    series: list[SeriesPoint] = Field(description="The last 24 hours in 5-minute buckets, oldest first.")
    queue: QueueFigures
    recent_dead_letters: list[JobResource] = Field(description="The ten newest dead letters.")


# --- flow control ------------------------------------------------------------------------------


class RateLimitBody(Strict):
    """At most `limit` starts in any `period_seconds`, across every instance."""

    limit: Annotated[int, Field(ge=1, le=1000), BeforeValidator(_json_number)]
    period_seconds: Annotated[float, Field(ge=0.1, le=86400), BeforeValidator(_json_number)]


def absent_is_unchanged(schema: dict[str, Any]) -> None:
    """The schema of a PATCH body: a field left out stays as it is, so no field has a default (a generated
    client filling in `"default": null` would clear a limit or a name the caller never mentioned)."""
    for field in schema["properties"].values():
        field.pop("default", None)


class TypeChange(Strict):
    """What to change about a job type; fields left out stay as they are."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=absent_is_unchanged)
    # Absent, never null: a default is not validated, so an explicit null is refused.
    paused: StrictBool = Field(  # type: ignore[assignment]
        None, description="Pause (its jobs stay queued and are set aside) or resume (they run)."
    )
    max_concurrency: Annotated[int, Field(ge=1, le=10000), BeforeValidator(_json_number)] | None = Field(
        None, description="At most this many of its attempts run at once, across every instance. Null: the code's."
    )
    rate_limit: RateLimitBody | None = Field(None, description="At most so many starts per period. Null: the code's.")


class TypeResource(BaseModel):
    """A registered job type and how its jobs flow now."""

    type: str
    priority: Priority = Field(description="Its jobs' queue unless a submit asks for another.")
    max_attempts: int
    time_limit_seconds: float
    paused: bool = Field(description="Its jobs wait (it is paused, or everything is).")
    paused_by: list[Literal["type", "all"]] = Field(
        description="What pauses it: its own pause (`type`), the pause of every type (`all`), both, or neither. "
        "Resuming the type lifts only its own; `POST /api/resume` only the other."
    )
    max_concurrency: int | None = Field(description="In force: set through the API, else in the code; null: none.")
    rate_limit: RateLimitBody | None
    running: int | None = Field(description="Attempts holding a concurrency slot now (null without a limit).")
    waiting: int | None = Field(
        description="Jobs that found every slot held and wait for one (null without a limit); counted up to 1,000."
    )
    released: int | None = Field(None, description="After a resume: jobs this request released (the rest follow).")
    woken: int | None = Field(
        None,
        description="After a change of a limit: waiting jobs this request woke, to start now (a raised or removed "
        "concurrency limit; those whose back-off ended meanwhile came back by themselves and are not counted) or "
        "to take a new start (a changed rate limit: the jobs holding one over 30 s ahead under the old limit).",
    )


class TypeList(BaseModel):
    paused_all: bool = Field(description="Every type is paused (`POST /api/pause`).")
    types: list[TypeResource]
    released: int | None = Field(None, description="After a resume: jobs this request released (the rest follow).")


class Health(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]


class ProblemDetails(BaseModel):
    """RFC 9457 problem details, with a machine-readable `code`."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: ProblemCode
    known_types: list[str] | None = Field(None, description="With `unknown_job_type`: the registered types.")
    fields: list[str] | None = Field(
        None, description="With `unknown_field` or `unknown_parameter`: the fields or parameters not recognised."
    )
    errors: list[dict[str, Any]] | None = Field(None, description="With `invalid_batch`: what is wrong, per item.")
    checks: dict[str, str] | None = Field(None, description="With `dependency_unavailable`: each dependency.")
