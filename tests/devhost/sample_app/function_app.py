"""A small app that is not a job system, to test the local host on its own. Queue and timer
invocations append one JSON line each to the file named by the SAMPLE_OUT setting."""

import asyncio
import json
import os
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _record(kind: str, value: str, **extra: object) -> None:
    line = {"kind": kind, "value": value, "instance": os.environ.get("DEVHOST_INSTANCE", "0"), "pid": os.getpid(),
            "t": time.time(), **extra}  # fmt: skip
    with open(os.environ["SAMPLE_OUT"], "a") as f:
        f.write(json.dumps(line) + "\n")


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}", headers={"X-Sample": "yes"})


@app.route(route="hello/world", methods=["GET"])
def hello_world(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("the whole world")


@app.route(route="items/{id:int}/{extra?}", methods=["GET", "PUT"])
async def item(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "id": req.route_params["id"],
        "extra": req.route_params.get("extra"),
        "method": req.method,
        "q": req.params.get("q"),
        "header": req.headers.get("x-test"),
        "json": req.get_json() if req.get_body() else None,
    }
    return func.HttpResponse(json.dumps(body), status_code=201, mimetype="application/json")


@app.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> str:
    return f"path={req.route_params.get('path', '')}"


@app.route(route="nothing", methods=["POST"])
def nothing(req: func.HttpRequest) -> None:
    return None


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.route(route="whoami", methods=["GET"])
def whoami(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    trace = context.trace_context
    body = {"instance": os.environ.get("DEVHOST_INSTANCE"), "pid": os.getpid(), "function": context.function_name,
            "invocation_id": context.invocation_id, "trace_parent": trace.trace_parent if trace else None}  # fmt: skip
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


# connection="Storage" resolves to the AzureWebJobsStorage setting (the AzureWebJobs prefix is tried first).
@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="Storage")
def consume(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    _record("queue", body, dequeue_count=msg.dequeue_count, id=msg.id)
    if body.startswith("sleep:"):
        time.sleep(float(body.split(":")[1]))
        _record("queue-done", body)
    if body.startswith("fail"):
        raise RuntimeError(f"failing on {body}")


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=True)
async def tick(timer: func.TimerRequest) -> None:
    _record("timer", str(timer.past_due))
    await asyncio.sleep(0)
