"""HTTP triggers through `python -m devhost`: prefix, route templates, conversions, errors."""

from __future__ import annotations

import requests


def test_startup_lists_functions_like_func_start(devhost):
    host = devhost()
    text = host.text()
    assert "Functions:" in text
    assert f"        hello: [GET] http://localhost:{host.port}/sample/hello/{{name}}" in text
    assert f"        item: [GET,PUT] http://localhost:{host.port}/sample/items/{{id:int}}/{{extra?}}" in text
    assert f"        boom: http://localhost:{host.port}/sample/boom" in text  # every method
    assert "        consume: queueTrigger" in text and "        tick: timerTrigger" in text
    assert "Host started (instance 0, pid " in text


def test_routes_live_under_the_route_prefix_with_route_params_and_headers(devhost):
    host = devhost()
    r = requests.get(f"{host.base}/hello/ada", timeout=5)
    assert (r.status_code, r.text, r.headers["X-Sample"]) == (200, "hello ada", "yes")
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"  # from mimetype/charset, as the worker does
    assert requests.get(f"{host.base}/HELLO/Ada", timeout=5).text == "hello Ada"  # literals ignore case
    assert requests.get(f"{host.base}/hello/world", timeout=5).text == "the whole world"  # literal beats {name}
    assert requests.get(f"http://127.0.0.1:{host.port}/api/hello/ada", timeout=5).status_code == 404  # prefix


def test_json_body_query_header_and_optional_route_param_round_trip(devhost):
    host = devhost()
    r = requests.put(f"{host.base}/items/7/more?q=x", json={"a": [1, "b"]}, headers={"X-Test": "t"}, timeout=5)
    assert r.status_code == 201 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"id": "7", "extra": "more", "method": "PUT", "q": "x", "header": "t", "json": {"a": [1, "b"]}}
    assert requests.get(f"{host.base}/items/7", timeout=5).json()["extra"] is None  # {extra?} left out
    assert requests.get(f"{host.base}/items/seven", timeout=5).status_code == 404  # {id:int} is checked
    assert requests.get(f"{host.base}/files/a/b%2Fc/d.txt", timeout=5).text == "path=a/b%2Fc/d.txt"  # {*path}


def test_unknown_route_is_404_wrong_method_405_and_an_exception_500_with_traceback_logged(devhost):
    host = devhost()
    assert requests.get(f"{host.base}/nope", timeout=5).status_code == 404
    r = requests.delete(f"{host.base}/hello/ada", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    assert requests.get(f"{host.base}/boom", timeout=5).status_code == 500
    host.wait(lambda: "RuntimeError: boom" in host.text(), 5, "the traceback in the log")
    assert "Executed 'Functions.boom' (Failed" in host.text()


def test_plain_return_values_become_responses(devhost):
    host = devhost()
    r = requests.get(f"{host.base}/files/x", timeout=5)  # a str
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (200, "path=x", "text/plain; charset=utf-8")
    r = requests.post(f"{host.base}/nothing", timeout=5)  # None
    assert (r.status_code, r.content) == (204, b"")


def test_a_function_with_a_context_parameter_gets_one(devhost):
    host = devhost()
    first, second = (requests.get(f"{host.base}/whoami", timeout=5).json() for _ in range(2))
    assert first["function"] == "whoami" and first["instance"] == "0"
    assert first["invocation_id"] != second["invocation_id"]
    assert first["trace_parent"] is None  # the request carried no trace context


def test_the_callers_traceparent_is_the_invocations_trace_context(devhost):
    host = devhost()
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    seen = requests.get(f"{host.base}/whoami", headers={"traceparent": parent}, timeout=5).json()
    assert seen["trace_parent"] == parent


def test_a_missing_setting_puts_only_that_function_in_error(devhost, tmp_path):
    settings = tmp_path / "bare.settings.json"
    settings.write_text('{"Values": {}}')
    host = devhost("--settings", str(settings), env={"SAMPLE_SCHEDULE": "0 0 0 1 1 *"})
    assert "The 'consume' function is in error: app setting 'SAMPLE_QUEUE' is not set" in host.text()
    assert requests.get(f"{host.base}/hello/ada", timeout=5).text == "hello ada"
