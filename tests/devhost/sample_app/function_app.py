"""A small app that is not a job system, to test the local host on its own."""

import asyncio
import json
import os
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


def _record(kind: str, value: str) -> None:
    with open(os.environ["SAMPLE_OUT"], "a") as f:
        f.write(json.dumps({"kind": kind, "value": value, "instance": os.environ.get("DEVHOST_INSTANCE", "0"),
                            "pid": os.getpid(), "t": time.time()}) + "\n")  # fmt: skip


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}", headers={"X-Sample": "yes"})


@app.route(route="items/{id:int}/{extra?}", methods=["GET", "PUT"])
async def item(req: func.HttpRequest) -> func.HttpResponse:
    body = {"id": req.route_params["id"], "extra": req.route_params.get("extra"), "method": req.method,
            "q": req.params.get("q"), "json": req.get_json() if req.get_body() else None}  # fmt: skip
    return func.HttpResponse(json.dumps(body), status_code=201, mimetype="application/json")


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def consume(msg: func.QueueMessage) -> None:
    body = msg.get_body().decode()
    _record("queue", f"{body}|{msg.dequeue_count}")
    if body.startswith("slow"):
        time.sleep(1)
    if body.startswith("fail"):
        raise RuntimeError(f"failing on {body}")


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=True)
async def tick(timer: func.TimerRequest) -> None:
    _record("timer", str(timer.past_due))
    await asyncio.sleep(0)
