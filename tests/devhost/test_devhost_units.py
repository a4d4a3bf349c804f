"""Timer schedules, queue body decoding and back-off, and the HTTP conversions in process."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest
from aiohttp.test_utils import TestClient, TestServer

from devhost.app_loader import AppLoadError, index_functions, load_app
from devhost.http_server import build_router, decoded_path, make_app, strip_prefix, to_response
from devhost.invoker import Invoker
from devhost.logs import ExtrasFormatter
from devhost.queue_listener import MIN_POLL_DELAY, decode_body, next_delay
from devhost.settings import SettingsError
from devhost.timer import parse_schedule, to_croniter

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)  # a Monday


def test_ncrontab_seconds_field_moves_last_for_croniter():
    assert to_croniter("*/5 * * * * *") == "* * * * * */5"
    assert to_croniter("0 30 9 * * 1-5") == "30 9 * * 1-5 0"
    assert to_croniter("30 9 * * *") == "30 9 * * *"  # five fields: no seconds


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * * *", T0 + timedelta(seconds=1), T0 + timedelta(seconds=5)),
        ("0 */5 * * * *", T0, T0 + timedelta(minutes=5)),
        ("0 30 9 * * 1-5", T0, T0.replace(day=3, hour=9, minute=30)),  # next weekday 09:30
        ("0 0 12 * * Sat", T0, T0.replace(day=7, hour=12)),
        ("0 0 0 1 * 1", T0, datetime(2026, 6, 1, tzinfo=UTC)),  # day 1 AND Monday, as NCrontab reads it
        ("15 10 * * *", T0, T0.replace(minute=15)),  # five fields
        ("00:00:30", T0, T0 + timedelta(seconds=30)),  # a timespan: a constant interval
    ],
)
def test_schedules_fire_when_ncrontab_says(expression, after, expected):
    assert parse_schedule(expression).next_after(after) == expected


@pytest.mark.parametrize("expression", ["* * * *", "61 * * * * *", "every minute", "00:00:00"])
def test_bad_schedules_are_refused(expression):
    with pytest.raises(SettingsError):
        parse_schedule(expression)


def test_queue_bodies_decode_per_message_encoding():
    assert decode_body("aGVsbG8=", "base64") == b"hello"
    assert decode_body("aGVs\nbG8=", "base64") == b"hello"  # whitespace is ignored, as in .NET
    assert decode_body("not base64 !!", "base64") is None
    assert decode_body("not base64 !!", "none") == b"not base64 !!"


def test_idle_back_off_doubles_within_bounds():
    delays = [MIN_POLL_DELAY]
    for _ in range(20):
        delays.append(next_delay(delays[-1], 2.0))
    assert 0.15 < delays[1] < 0.25 and max(delays) == 2.0 and min(delays) >= MIN_POLL_DELAY


def test_route_prefix_and_encoded_slashes():
    assert strip_prefix("/api/jobs", "api") == "/jobs" and strip_prefix("/API", "api") == ""
    assert strip_prefix("/apix/jobs", "api") is None and strip_prefix("/jobs", "") == "/jobs"
    assert decoded_path("/a%20b/c%2Fd") == "/a b/c%2Fd"


def test_responses_convert_as_the_worker_converts_them():
    r = to_response(func.HttpResponse(b"{}", status_code=202, mimetype="application/json"))
    assert (r.status, r.headers["Content-Type"], r.body) == (202, "application/json", b"{}")
    r = to_response(func.HttpResponse("hi", mimetype="text/html", charset="latin-1"))
    assert r.headers["Content-Type"] == "text/html; charset=latin-1"
    r = to_response(func.HttpResponse("x", headers={"Content-Type": "text/csv", "Set-Cookie": "a=1"}))
    assert r.headers["Content-Type"] == "text/csv" and r.headers["Set-Cookie"] == "a=1"
    assert to_response(None).status == 204 and to_response(b"\x00").status == 200
    assert to_response({"not": "a response"}).status == 500


def _sample_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="echo/{word}", methods=["POST"])
    async def echo(req: func.HttpRequest) -> func.HttpResponse:
        body = {"word": req.route_params["word"], "body": req.get_json(), "multi": req.headers.get("x-multi")}
        return func.HttpResponse(json.dumps(body), mimetype="application/json")

    return app


async def _call(app_object, requests_to_make):
    router = build_router(index_functions(app_object))
    client = TestClient(TestServer(make_app(router, "api", Invoker(".", threads=2))))
    await client.start_server()
    try:
        results = []
        for method, path, kwargs in requests_to_make:
            response = await client.request(method, path, **kwargs)
            results.append((response.status, await response.text()))
        return results
    finally:
        await client.close()


def test_http_request_carries_route_params_body_and_joined_repeated_headers():
    headers = [("X-Multi", "a"), ("X-Multi", "b")]
    [(status, text)] = asyncio.run(_call(_sample_app(), [("POST", "/api/echo/hi", {"json": [1], "headers": headers})]))
    assert status == 200 and json.loads(text) == {"word": "hi", "body": [1], "multi": "a, b"}


def test_an_asgi_app_is_served_through_its_catch_all_function():
    async def asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": f"{scope['method']} {scope['path']}".encode()})

    app = func.AsgiFunctionApp(app=asgi, http_auth_level=func.AuthLevel.ANONYMOUS)

    async def serve_then_shut_down() -> list[tuple[int, str]]:
        try:
            return await _call(app, [("GET", "/api/any/where", {}), ("DELETE", "/api/x", {})])
        finally:
            # As a host stopping does. Left to the library's __del__, the shutdown runs whenever the
            # app is collected, and fails with a warning if another test's event loop runs then.
            if app.startup_task_done:
                await app.middleware.notify_shutdown()
                app.startup_task_done = False

    results = asyncio.run(serve_then_shut_down())
    assert results == [(200, "GET /api/any/where"), (200, "DELETE /api/x")]


def test_loading_an_app_folder_without_a_function_app_fails_clearly(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    empty, broken = tmp_path / "empty", tmp_path / "broken"
    for folder, source in ((empty, "x = 1\n"), (broken, "import nosuchmodule\n")):
        folder.mkdir()
        (folder / "function_app.py").write_text(source)
    try:
        with pytest.raises(AppLoadError, match="no FunctionApp"):
            load_app(empty)
        with pytest.raises(AppLoadError, match="nosuchmodule"):
            load_app(broken)
    finally:
        sys.modules.pop("function_app", None)


def test_async_functions_share_the_hosts_event_loop_and_sync_ones_run_in_its_thread_pool():
    """As the Python worker does: one event loop per host for every `async def` function, and the
    thread pool (PYTHON_THREADPOOL_THREAD_COUNT) for the others."""
    import threading

    from devhost.app_loader import Function

    seen: list[tuple[str, object, str]] = []

    async def coroutine_function(msg):
        seen.append(("async", asyncio.get_running_loop(), threading.current_thread().name))

    def plain_function(msg):
        seen.append(("sync", None, threading.current_thread().name))

    functions = [
        Function("a", "queueTrigger", "msg", coroutine_function, None, is_async=True),
        Function("s", "queueTrigger", "msg", plain_function, None, is_async=False),
    ]

    async def invoke_many():
        invoker = Invoker(".", threads=2)
        await asyncio.gather(*(invoker(f, None) for f in functions * 3))
        invoker.close()
        return asyncio.get_running_loop(), threading.current_thread().name

    host_loop, host_thread = asyncio.run(invoke_many())
    async_runs = [(loop, thread) for kind, loop, thread in seen if kind == "async"]
    assert len(async_runs) == 3 and {loop for loop, _ in async_runs} == {host_loop}
    assert {thread for _, thread in async_runs} == {host_thread}  # on the loop, not in a thread
    sync_threads = {thread for kind, _, thread in seen if kind == "sync"}
    assert sync_threads and all(t.startswith("function") for t in sync_threads) and len(sync_threads) <= 2


def test_log_lines_end_with_the_fields_a_record_was_given():
    formatter = ExtrasFormatter("%(levelname)s %(name)s: %(message)s")

    def line(extra: dict | None = None, exc: bool = False) -> str:
        record = logging.LogRecord("app", logging.INFO, __file__, 1, "did %s", ("it",), None)
        if exc:
            try:
                raise ValueError("boom")
            except ValueError:
                record.exc_info = sys.exc_info()
        record.__dict__.update(extra or {})
        return formatter.format(record)

    assert line() == "INFO app: did it"
    assert line({"job_id": "0012", "attempt": 2}) == "INFO app: did it job_id=0012 attempt=2"
    assert line({"why": "two words", "counts": {"a": 1}}) == 'INFO app: did it why="two words" counts={"a":1}'
    first, *rest = line({"job_id": "0012"}, exc=True).splitlines()
    assert first == "INFO app: did it job_id=0012" and rest[-1] == "ValueError: boom"
