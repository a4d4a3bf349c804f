"""The schedules' HTTP bodies, as pydantic models (the requests are validated with them and the
OpenAPI document is generated from them, as for jobs in shared/contract.py).

The cron expression and the time zone are checked by shared/schedules/cron.py, which answers
with its own problem codes; the document still states both exactly (the grammar as a `pattern`,
the zones as an `enum`), so a client and a contract fuzzer know what is valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from shared.contract import DEFAULT_LIMIT, MAX_LIMIT, Attempts, Strict, absent_is_unchanged
from shared.job import Priority
from shared.schedules.cron import GRAMMAR, MAX_LENGTH, time_zones
from shared.schedules.schedule import CatchUp, Overlap, SkipReason
from shared.schedules.store import ID_PATTERN

MAX_NAME = 200
CRON_DESCRIPTION = (
    "5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, as Azure's NCRONTAB: "
    "`*`, numbers, names (JAN-DEC, SUN-SAT), ranges `a-b`, steps `*/n` `a/n` `a-b/n` (n below the field's "
    "span), lists `a,b`; day-of-month also `L` and `LW`, day-of-week `5L` and `MON#1`. When both day "
    "fields are restricted, a day matching either fires (as in Unix cron). A well-formed expression that matches "
    "no time (`5-2`, 30 February) is a 422."
)


def _cron_schema(schema: dict[str, Any]) -> None:
    schema.update(pattern=GRAMMAR, maxLength=MAX_LENGTH, examples=["30 2 * * *", "*/10 * * * * *"])


def _zone_schema(schema: dict[str, Any]) -> None:
    schema["enum"] = list(time_zones())


def _no_null_name(schema: dict[str, Any]) -> None:
    # A name may be left out but not sent as null (the default is not validated).
    schema["properties"]["name"].pop("default", None)


Cron = Field(min_length=1, description=CRON_DESCRIPTION, json_schema_extra=_cron_schema)
JobType = Field(min_length=1, description="A registered job type (the document lists them).")


class JobTemplate(Strict):
    """The job each fire submits."""

    type: str = JobType
    payload: Any = Field(None, description="Any JSON value (at most 30,000 bytes as JSON in UTF-8).")
    max_attempts: Attempts | None = Field(None, description="Default: the type's, else JOBS_MAX_ATTEMPTS.")
    priority: Priority | None = Field(None, description="Default: the type's, else `normal`.")


class JobTemplatePatch(Strict):
    """Fields of the template to change; null `max_attempts` or `priority` go back to the type's default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=absent_is_unchanged)
    type: str = Field(None, min_length=1, description="A registered job type.")  # type: ignore[assignment]
    payload: Any = Field(None, description="Replaces the payload (null is a payload).")
    max_attempts: Attempts | None = None
    priority: Priority | None = None


class ScheduleRequest(Strict):
    """A recurring schedule: a job submitted at every fire time of `cron` in `time_zone`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_no_null_name)
    cron: str = Cron
    time_zone: str = Field(
        "UTC", description="An IANA time zone (the document lists them); daylight saving as the README says.",
        json_schema_extra=_zone_schema,
    )  # fmt: skip
    job: JobTemplate
    overlap: Overlap = Field(
        Overlap.ALLOW, description="`skip`: a fire makes no job while the previous fire's job has not finished."
    )
    catch_up: CatchUp = Field(
        CatchUp.ONCE,
        description="After downtime (fires later than the grace period): `once` makes one job for all that were "
        "missed, `skip` none.",
    )
    paused: StrictBool = Field(False, description="Create it paused: it fires nothing until resumed.")
    name: str = Field(None, min_length=1, max_length=MAX_NAME, description="For people.")  # type: ignore[assignment]


class SchedulePatch(Strict):
    """The fields to change (absent: unchanged). A new `cron` or `time_zone` starts from now; `paused`
    false resumes from now (fires missed while paused are not made up)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=absent_is_unchanged)
    cron: str = Field(None, min_length=1, description=CRON_DESCRIPTION, json_schema_extra=_cron_schema)  # type: ignore[assignment]
    time_zone: str = Field(None, description="An IANA time zone.", json_schema_extra=_zone_schema)  # type: ignore[assignment]
    job: JobTemplatePatch = None  # type: ignore[assignment]
    overlap: Overlap = None  # type: ignore[assignment]
    catch_up: CatchUp = None  # type: ignore[assignment]
    paused: StrictBool = None  # type: ignore[assignment]
    name: str | None = Field(None, min_length=1, max_length=MAX_NAME, description="null removes it.")


class ScheduleListQuery(Strict):
    """Query parameters of `GET /api/schedules` (all optional)."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    continuation: str | None = Field(None, description="The `continuation` of the previous page (empty: the first).")


# --- responses -----------------------------------------------------------------------------------


class JobTemplateResource(BaseModel):
    type: str
    payload: Any = None
    max_attempts: int | None
    priority: Priority | None


class FireTime(BaseModel):
    at: datetime = Field(description="In UTC.")
    local: str = Field(description="The same time in the schedule's zone, with its offset (RFC 3339).")


class LastFire(BaseModel):
    at: datetime = Field(description="The fire time the job was made for.")
    job_id: str


class LastSkip(BaseModel):
    at: datetime = Field(description="The latest fire time that made no job (after downtime, the latest missed).")
    reason: SkipReason = Field(description="`overlap`: the previous job had not finished; `missed`: downtime.")


class ScheduleResource(BaseModel):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None
    cron: str
    time_zone: str
    job: JobTemplateResource
    overlap: Overlap
    catch_up: CatchUp
    paused: bool
    next_fire_at: datetime | None = Field(description="When it fires next (null while paused).")
    next_fires: list[FireTime] = Field(description="The next five fire times (none while paused).")
    last_fire: LastFire | None
    recent_fires: list[LastFire] = Field(
        description="The last 10 fires that made a job, newest first: the way to this schedule's jobs."
    )
    fired: int = Field(description="Jobs made.")
    skipped: int = Field(description="Fire times that made no job (overlap, or missed and not caught up).")
    last_skip: LastSkip | None
    created_at: datetime
    updated_at: datetime
    revision: int = Field(
        ge=1,
        description="+1 with every change through the API (fires and a PATCH that changes nothing do not count); "
        "the ETag header, quoted.",
    )


class ScheduleList(BaseModel):
    schedules: list[ScheduleResource]
    continuation: str | None = Field(description="Pass it back for the next page; null on the last.")
