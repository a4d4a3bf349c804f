"""Azure Functions bindings (v2 programming model). Each function converts its trigger, calls one
thing in `shared`, and converts the outcome back. Every function is `async def`: the Python worker
runs them on its event loop, with the storage SDKs' async clients. The logic lives in `shared/`; the routes' contract
(models, statuses, headers) is declared beside each route in shared/api.py and shared/apidocs/,
and served as OpenAPI at /api/openapi.json."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import api, apidocs
from shared import dashboard as dashboard_routes
from shared.app import services
from shared.flow import routes as flow_routes
from shared.job import Priority
from shared.schedules import routes as schedule_routes

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
ANONYMOUS = func.AuthLevel.ANONYMOUS


async def _http(route: api.Route, req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    trace = context.trace_context
    request = api.ApiRequest(
        method=req.method,
        route=dict(req.route_params),
        query=dict(req.params),
        headers={k.lower(): v for k, v in req.headers.items()},
        body=req.get_body() or b"",
        trace_parent=trace.trace_parent if trace is not None else None,
        url=req.url,
    )
    response = await api.handle(route, services, request)
    return func.HttpResponse(
        response.encoded(), status_code=response.status, headers=response.headers, mimetype=response.content_type
    )


# --- jobs ---


@app.route(route="jobs", methods=["POST"])
async def submit_job(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.submit_job, req, context)


@app.route(route="jobs/batch", methods=["POST"])
async def submit_jobs(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.submit_jobs, req, context)


@app.route(route="jobs", methods=["GET"])
async def list_jobs(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.list_jobs, req, context)


@app.route(route="jobs/{id:length(25)}", methods=["GET"])
async def get_job(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.get_job, req, context)


@app.route(route="jobs/{id}/cancel", methods=["POST"])
async def cancel_job(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.cancel_job, req, context)


@app.route(route="jobs/{id}/retry", methods=["POST"])
async def retry_job(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.retry_job, req, context)


# --- bulk operations ---


@app.route(route="jobs/retry", methods=["POST"])
async def retry_jobs(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.retry_jobs, req, context)


@app.route(route="jobs/cancel", methods=["POST"])
async def cancel_jobs(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.cancel_jobs, req, context)


@app.route(route="operations/{id}", methods=["GET"])
async def get_operation(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.get_operation, req, context)


# --- flow control ---


@app.route(route="types", methods=["GET"])
async def list_types(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(flow_routes.list_types, req, context)


@app.route(route="types/{type}", methods=["GET"])
async def get_type(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(flow_routes.get_type, req, context)


@app.route(route="types/{type}", methods=["PATCH"])
async def change_type(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(flow_routes.change_type, req, context)


@app.route(route="pause", methods=["POST"])
async def pause_all(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(flow_routes.pause_all, req, context)


@app.route(route="resume", methods=["POST"])
async def resume_all(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(flow_routes.resume_all, req, context)


# --- schedules (shared/schedules/) ---


@app.route(route="schedules", methods=["POST"])
async def create_schedule(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(schedule_routes.create_schedule, req, context)


@app.route(route="schedules", methods=["GET"])
async def list_schedules(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(schedule_routes.list_schedules, req, context)


@app.route(route="schedules/{id}", methods=["GET"])
async def get_schedule(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(schedule_routes.get_schedule, req, context)


@app.route(route="schedules/{id}", methods=["PATCH"])
async def update_schedule(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(schedule_routes.update_schedule, req, context)


@app.route(route="schedules/{id}", methods=["DELETE"])
async def delete_schedule(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(schedule_routes.delete_schedule, req, context)


# --- service ---


@app.route(route="stats", methods=["GET"])
async def stats(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.stats, req, context)


@app.route(route="health", methods=["GET"], auth_level=ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.health, req, context)


@app.route(route="metrics", methods=["GET"])
async def metrics(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.metrics, req, context)


@app.route(route="openapi.json", methods=["GET"], auth_level=ANONYMOUS)
async def openapi(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(apidocs.openapi, req, context)


@app.route(route="docs", methods=["GET"], auth_level=ANONYMOUS)
async def docs(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(apidocs.docs, req, context)


@app.route(route="docs/{file}", methods=["GET"], auth_level=ANONYMOUS)
async def docs_asset(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(apidocs.docs_asset, req, context)


@app.route(route="dashboard", methods=["GET"], auth_level=ANONYMOUS)
async def dashboard(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(dashboard_routes.dashboard, req, context)


@app.route(route="dashboard/{file}", methods=["GET"], auth_level=ANONYMOUS)
async def dashboard_asset(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(dashboard_routes.dashboard_asset, req, context)


@app.route(route="{*path}", auth_level=ANONYMOUS)  # every method: below every other route
async def fallback(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _http(api.fallback, req, context)


# --- background ---


# One queue per priority, each with its own trigger: the host polls and runs them side by side.
async def _run(msg: func.QueueMessage, priority: Priority) -> None:
    outcome = await (await services()).worker.process(msg.get_body(), priority)
    logging.getLogger("jobs.worker").debug("message %s: %s", msg.id, outcome)


@app.queue_trigger(arg_name="msg", queue_name="%JOBS_QUEUE_NAME%", connection="AzureWebJobsStorage")
async def run_job(msg: func.QueueMessage) -> None:
    await _run(msg, Priority.NORMAL)


@app.queue_trigger(arg_name="msg", queue_name="%JOBS_QUEUE_NAME%-high", connection="AzureWebJobsStorage")
async def run_job_high(msg: func.QueueMessage) -> None:
    await _run(msg, Priority.HIGH)


@app.queue_trigger(arg_name="msg", queue_name="%JOBS_QUEUE_NAME%-low", connection="AzureWebJobsStorage")
async def run_job_low(msg: func.QueueMessage) -> None:
    await _run(msg, Priority.LOW)


@app.timer_trigger(arg_name="timer", schedule="%JOBS_RECONCILE_SCHEDULE%", run_on_startup=False)
async def reconcile(timer: func.TimerRequest) -> None:
    await (await services()).reconciler.run()


# Fires due schedules every few seconds (six-field NCRONTAB; the reconciler fires them too).
@app.timer_trigger(arg_name="timer", schedule="%JOBS_SCHEDULER_SCHEDULE%", run_on_startup=False)
async def fire_schedules(timer: func.TimerRequest) -> None:
    await (await services()).schedules.fire_due()
