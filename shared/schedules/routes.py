"""The schedules' HTTP routes, registered in shared/api.py's endpoint table (so the OpenAPI
document lists them) and bound in function_app.py like every other route."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from shared.api import ApiRequest, ApiResponse, Problem, Reply, endpoint, json_bytes, problems, query_model
from shared.api import _idempotency_key as idempotency_key  # the same header rules as for jobs
from shared.api import _json_body as json_body
from shared.api import _model as model
from shared.idempotency import IdempotencyMismatch, RequestHash
from shared.schedules import contract as c
from shared.schedules.cron import Cron, CronError, UnknownZone, UnsatisfiableCron
from shared.schedules.schedule import JobTemplate, Schedule
from shared.schedules.service import RevisionMismatch, Revisions, ScheduleBusy, ScheduleNotFound
from shared.schedules.store import ID_PATTERN, BadContinuation
from shared.store import INLINE_LIMIT_CHARS

if TYPE_CHECKING:
    from shared.app import Services

PATH = "/api/schedules"
MAX_BODY = 128 * 1024
ID = {"id": {"pattern": ID_PATTERN}}
# UTF-8 bytes of JSON, stored unescaped (shared/schedules/store.py): at most as many UTF-16 code
# units, well within what a table property holds (32K).
MAX_PAYLOAD_BYTES = INLINE_LIMIT_CHARS
_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


@endpoint(
    "POST", "schedules", "Create a recurring schedule", "schedules",
    {201: Reply("Created. `next_fires` says when it fires.", c.ScheduleResource,
                ("Location", "ETag", "Idempotent-Replayed")),
     **problems(400, 413, 415, 422)},
    body=c.ScheduleRequest, request_headers=("Idempotency-Key",),
)  # fmt: skip
async def create_schedule(app: Services, request: ApiRequest) -> ApiResponse:
    body = json_body(request, MAX_BODY)
    req = model(c.ScheduleRequest, body)
    checked(req.cron, req.time_zone)
    job = template(app, req.job.model_dump())
    key = idempotency_key(request)
    try:
        schedule, created = await app.schedules.create(
            req.cron, req.time_zone, job, req.overlap, req.catch_up, req.paused, req.name,
            idempotency_key=key, request_hash=RequestHash.of(body) if key else None,
        )  # fmt: skip
    except IdempotencyMismatch as exc:
        raise Problem(422, "idempotency_key_reused", str(exc)) from None
    headers = {"Location": f"{PATH}/{schedule.id}", "ETag": schedule.entity_tag}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return ApiResponse(201, schedule.to_resource(), headers)


@endpoint(
    "GET", "schedules", "List schedules, oldest first", "schedules",
    {200: Reply("A page of schedules. Follow `continuation` until it is null.", c.ScheduleList), **problems(400)},
    query=c.ScheduleListQuery,
)  # fmt: skip
async def list_schedules(app: Services, request: ApiRequest) -> ApiResponse:
    """One query per page, whatever else the table holds."""
    q = query_model(c.ScheduleListQuery, request)
    try:
        schedules, continuation = await app.schedules.page(q.limit, q.continuation)
    except BadContinuation as exc:
        raise Problem(400, "invalid_continuation", str(exc)) from None
    return ApiResponse(200, {"schedules": [s.to_resource() for s in schedules], "continuation": continuation})


@endpoint(
    "GET", "schedules/{id}", "Get a schedule, with its next five fire times", "schedules",
    {200: Reply("The schedule.", c.ScheduleResource, ("ETag",)), **problems(404)}, path_values=ID,
)  # fmt: skip
async def get_schedule(app: Services, request: ApiRequest) -> ApiResponse:
    return answer(await found(app, request))


@endpoint(
    "PATCH", "schedules/{id}", "Change, pause or resume a schedule", "schedules",
    {200: Reply("The schedule as changed.", c.ScheduleResource, ("ETag",)),
     **problems(400, 404, 409, 412, 413, 415, 422)},
    body=c.SchedulePatch, path_values=ID, request_headers=("If-Match",),
)  # fmt: skip
async def update_schedule(app: Services, request: ApiRequest) -> ApiResponse:
    """Only the fields given change (`job`'s fields one by one). `{"paused": true}` pauses,
    `{"paused": false}` resumes from now. With `If-Match` (the ETag a read answered with), only if
    nobody changed the schedule since: fires do not count as changes."""
    if_revision = revisions(request)
    patch = model(c.SchedulePatch, json_body(request, MAX_BODY))
    current = await found(app, request)
    changes = patch.model_dump(exclude_unset=True, exclude={"job"})
    job_changes = patch.job.model_dump(exclude_unset=True) if patch.job is not None else {}
    # A cron kept from before may be one only the stored grammar takes (an unbounded step).
    checked(
        changes.get("cron", current.cron), changes.get("time_zone", current.time_zone), stored="cron" not in changes
    )
    if job_changes:
        template(app, {**current.job.to_resource(), **job_changes})
    try:
        schedule = await app.schedules.update(current.id, changes, job_changes, if_revision=if_revision, read=current)
    except ScheduleNotFound:
        raise not_found(current.id) from None
    except ScheduleBusy:
        raise Problem(409, "invalid_state", "the schedule is changing too fast; try again") from None
    except RevisionMismatch as exc:
        raise changed_since(exc) from None
    return answer(schedule)


@endpoint(
    "DELETE", "schedules/{id}", "Delete a schedule (the jobs it made stay)", "schedules",
    {204: Reply("Deleted: it fires nothing more.", content_type=()), **problems(400, 404, 409, 412)},
    path_values=ID,
    request_headers=("If-Match",),
)  # fmt: skip
async def delete_schedule(app: Services, request: ApiRequest) -> ApiResponse:
    """With `If-Match`, only if nobody changed the schedule since that revision."""
    schedule_id = request.route.get("id", "")
    try:
        await app.schedules.delete(schedule_id, if_revision=revisions(request))
    except ScheduleNotFound:
        raise not_found(schedule_id) from None
    except ScheduleBusy:
        raise Problem(409, "invalid_state", "the schedule is changing too fast; try again") from None
    except RevisionMismatch as exc:
        raise changed_since(exc) from None
    return ApiResponse(204)


# --- checks ----------------------------------------------------------------------------------------


def answer(schedule: Schedule) -> ApiResponse:
    return ApiResponse(200, schedule.to_resource(), {"ETag": schedule.entity_tag})


def revisions(request: ApiRequest) -> Revisions | None:
    """What If-Match allows: any revision (`*`, or no header) or those it names as strong entity
    tags (`"3"`). If-Match compares strongly (RFC 9110 13.1.1), so a weak tag (`W/"3"`) matches
    nothing, and so does anything else that is not one of the resource's tags (the 412 then says
    which revision it is at, without presuming it changed)."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    value = header.strip()
    if len(value) > 1000:
        raise Problem(400, "invalid_if_match", "If-Match is over 1,000 characters: send the ETag a read answered with")
    if value == "*":
        return None
    return frozenset(tag for weak, tag in _ENTITY_TAG.findall(value) if not weak)


def changed_since(exc: RevisionMismatch) -> Problem:
    current = exc.current
    problem = Problem(412, "revision_mismatch", f"the schedule is at revision {current.revision}, which If-Match "
                      "does not name as a strong tag; read it again", revision=current.revision)  # fmt: skip
    problem.headers["ETag"] = current.entity_tag
    return problem


async def found(app: Services, request: ApiRequest) -> Schedule:
    schedule_id = request.route.get("id", "")
    try:
        return await app.schedules.get(schedule_id)
    except ScheduleNotFound:
        raise not_found(schedule_id) from None


def not_found(schedule_id: str) -> Problem:
    return Problem(404, "schedule_not_found", f"no schedule with id {schedule_id}")


def checked(cron: str, time_zone: str, stored: bool = False) -> Cron:
    """The expression in its zone; a problem names the field at fault, as invalid_field's do."""
    try:
        return Cron(cron, time_zone, stored=stored)
    except UnknownZone as exc:
        raise Problem(400, "unknown_time_zone", f"`time_zone`: {exc}") from None
    except CronError as exc:
        raise Problem(400, "invalid_cron", f"`cron`: {exc}") from None
    except UnsatisfiableCron as exc:
        raise Problem(422, "unsatisfiable_cron", f"`cron`: {exc}") from None


def template(app: Services, fields: dict) -> JobTemplate:
    """The job template, its type registered and its payload small enough to keep inline."""
    if app.registry.get(fields["type"]) is None:
        raise Problem(400, "unknown_job_type", f"no handler for job type {fields['type']!r}",
                      known_types=app.registry.types)  # fmt: skip
    size = json_bytes(fields.get("payload"))
    if size > MAX_PAYLOAD_BYTES:
        detail = f"a schedule's payload is {size} bytes of JSON (UTF-8); the limit is {MAX_PAYLOAD_BYTES}"
        raise Problem(413, "payload_too_large", detail)
    return JobTemplate(fields["type"], fields.get("payload"), fields.get("max_attempts"), fields.get("priority"))
