"""The HTTP routes of flow control: job types with their pauses and limits, and pausing everything."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shared import contract as c
from shared.api import ApiRequest, ApiResponse, Problem, Reply, _json_body, _model, endpoint, no_body, problems
from shared.flow.limits import RateLimit
from shared.flow.settings import ALL, FlowState
from shared.job import utcnow

if TYPE_CHECKING:
    from shared.app import Services

TYPE_REPLY = Reply("The type, as its jobs flow now.", c.TypeResource)
LIST_REPLY = Reply("Every registered type.", c.TypeList)


@endpoint("GET", "types", "List job types with their pauses and limits", "flow", {200: LIST_REPLY, **problems()})
async def list_types(app: Services, request: ApiRequest) -> ApiResponse:
    return ApiResponse(200, await _type_list(app, await app.flow.settings.read()))


@endpoint(
    "GET", "types/{type}", "Get a job type with its pause and limits", "flow", {200: TYPE_REPLY, **problems(404)},
)  # fmt: skip
async def get_type(app: Services, request: ApiRequest) -> ApiResponse:
    job_type = _known_type(app, request)
    return ApiResponse(200, await _type(app, await app.flow.settings.read(), job_type))


@endpoint(
    "PATCH", "types/{type}", "Pause or resume a job type, or set its limits", "flow",
    {200: TYPE_REPLY, **problems(400, 404, 413, 415)},
    body=c.TypeChange,
)  # fmt: skip
async def change_type(app: Services, request: ApiRequest) -> ApiResponse:
    """Pausing takes effect on every instance within 5 s; jobs already running finish. Resuming
    releases the parked jobs (the reconciler finishes a long backlog). Raising the concurrency
    limit, or removing it, wakes the jobs waiting for a slot that may now start; changing the rate
    limit wakes the jobs holding a start over 30 s ahead under the old one, to take a new one
    (`woken` counts both). The answer then comes 1.5 s later, once every instance will look at the
    new limits."""
    job_type = _known_type(app, request)
    change = _model(c.TypeChange, _json_body(request, 4096))
    fields: dict[str, Any] = {}
    if "max_concurrency" in change.model_fields_set:
        fields["max_concurrency"] = change.max_concurrency
    if "rate_limit" in change.model_fields_set:
        rate = change.rate_limit
        fields["rate_limit"] = RateLimit(rate.limit, rate.period_seconds) if rate else None
        # The limit's version (a stale instance must not reset the log to the older one), and the
        # mark that has the reconciler wake what this request leaves waiting under the old one.
        fields["rate_changed_at"], fields["rate_wake_pending"] = utcnow(), True
    if change.paused is True:
        fields["paused"] = True
    if fields:
        await app.flow.settings.change(job_type, **fields)
    released = await app.flow.resume(job_type) if change.paused is False else None
    state = await app.flow.settings.read()
    resource = await _type(app, state, job_type)
    woken = None
    concurrency, rate = "max_concurrency" in fields, "rate_limit" in fields
    if concurrency or rate:
        running, waiting = resource["running"], resource["waiting"]
        occupancy = (running, waiting) if concurrency and running is not None else None
        for_slots, for_rate = await app.flow.limits_changed(
            job_type, app.flow.settings.effective(state, job_type), concurrency, rate, occupancy
        )
        woken = for_slots + for_rate
        if waiting:
            resource["waiting"] = max(0, waiting - for_slots)
    return ApiResponse(200, {**resource, "released": released, "woken": woken})


@endpoint("POST", "pause", "Pause every job type", "flow", {200: LIST_REPLY, **problems(400)})
async def pause_all(app: Services, request: ApiRequest) -> ApiResponse:
    """Every type's jobs wait, whatever their own state; `POST /api/resume` undoes it. It takes no
    body and no query: to pause one type, `PATCH /api/types/{type}` with `{"paused": true}`."""
    _no_body(request, "POST /api/pause pauses")
    await app.flow.pause(ALL)
    return ApiResponse(200, await _type_list(app, await app.flow.settings.read()))


@endpoint("POST", "resume", "Resume every job type", "flow", {200: LIST_REPLY, **problems(400)})
async def resume_all(app: Services, request: ApiRequest) -> ApiResponse:
    """Undoes `POST /api/pause`; a type paused on its own stays paused. It takes no body and no
    query: to resume one type, `PATCH /api/types/{type}` with `{"paused": false}`."""
    _no_body(request, "POST /api/resume resumes")
    released = await app.flow.resume(ALL)
    return ApiResponse(200, {**await _type_list(app, await app.flow.settings.read()), "released": released})


def _no_body(request: ApiRequest, what: str) -> None:
    """A body (`{"type": "sleep"}`) is a caller who meant one type: refused, not ignored."""
    no_body(request, f"{what} every job type and takes no body; for one type, "
            'PATCH /api/types/{type} with {"paused": true} or {"paused": false}')  # fmt: skip


def _known_type(app: Services, request: ApiRequest) -> str:
    job_type = request.route.get("type", "")
    if app.registry.get(job_type) is None:
        raise Problem(404, "type_not_found", f"no handler for job type {job_type!r}", known_types=app.registry.types)
    return job_type


async def _type_list(app: Services, state: FlowState) -> dict[str, Any]:
    return {"paused_all": state.all_paused, "types": [await _type(app, state, t) for t in app.registry.types]}


async def _type(app: Services, state: FlowState, job_type: str) -> dict[str, Any]:
    """A type's resource; a type with a concurrency limit costs one query (its slots and the jobs
    waiting for one, while they fit a page)."""
    spec = app.registry.get(job_type)
    assert spec is not None
    flow = app.flow.settings.effective(state, job_type)
    running = waiting = None
    if flow.max_concurrency is not None:
        running, waiting = await app.flow.slots.occupancy(job_type, utcnow())
    return {
        "type": job_type,
        "priority": str(spec.priority or "normal"),
        "max_attempts": spec.max_attempts or app.config.max_attempts,
        # The setting is read as a float (540.0) where a type's own is usually an int: one spelling.
        "time_limit_seconds": _whole_as_int(spec.time_limit_seconds or app.config.time_limit_seconds),
        "paused": flow.paused,
        "paused_by": state.paused_by(job_type),
        "max_concurrency": flow.max_concurrency,
        "rate_limit": flow.rate_limit.to_dict() if flow.rate_limit else None,
        "running": running,
        "waiting": waiting,
    }


def _whole_as_int(value: float) -> float:
    return int(value) if float(value).is_integer() else value
