"""The local host's parsing and matching, without processes or storage."""

import json
import os

import pytest
from croniter import croniter

from devhost.routes import Router
from devhost.settings import load_host_json, load_local_settings, parse_timespan, resolve
from devhost.timer import to_croniter


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("00:00:02", 2), ("00:01:00", 60), ("1.00:00:00", 86400), ("00:00:00.500", 0.5), (2000, 2), (None, 7)],
)
def test_timespans_as_host_json_writes_them(value, seconds):
    assert parse_timespan(value, default=7) == seconds


def test_bad_timespan_is_refused():
    with pytest.raises(ValueError, match="not a timespan"):
        parse_timespan("two seconds", 0)


def test_host_json_queue_options_and_defaults(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": {"batchSize": 32}}}))
    config = load_host_json(tmp_path)
    q = config.queues
    assert (q.batch_size, q.new_batch_threshold, q.max_polling_interval, q.max_dequeue_count) == (32, 16, 60, 5)
    assert (q.visibility_timeout, q.message_encoding, config.route_prefix) == (0, "base64", "api")


def test_host_json_rejects_what_the_host_rejects(tmp_path):
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": {"batchSize": 64}}}))
    with pytest.raises(ValueError, match="batchSize"):
        load_host_json(tmp_path)


def test_local_settings_do_not_override_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ALREADY_SET", "from-env")
    monkeypatch.delenv("ONLY_IN_FILE", raising=False)
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"Values": {"ALREADY_SET": "from-file", "ONLY_IN_FILE": "x"}}))
    load_local_settings(path)
    assert (os.environ["ALREADY_SET"], os.environ["ONLY_IN_FILE"]) == ("from-env", "x")
    monkeypatch.delenv("ONLY_IN_FILE")


def test_binding_expressions_resolve_from_settings(monkeypatch):
    monkeypatch.setenv("QNAME", "orders")
    assert resolve("%QNAME%") == "orders" and resolve("plain") == "plain"
    with pytest.raises(KeyError, match="MISSING"):
        resolve("%MISSING%")


def test_ncrontab_seconds_field_moves_last_for_croniter():
    assert to_croniter("*/5 * * * * *") == "* * * * * */5"
    assert to_croniter("0 */1 * * * *") == "*/1 * * * * 0"
    croniter(to_croniter("0 30 9 * * 1-5"))
    with pytest.raises(ValueError, match="six fields"):
        to_croniter("* * * * *")


@pytest.fixture
def router():
    r = Router()
    for template, methods in [("jobs", ["POST"]), ("jobs/{id}", ["GET"]), ("jobs/batch", ["POST"]),
                              ("files/{*rest}", None), ("opt/{x?}", None), ("n/{v:int}", None)]:  # fmt: skip
        r.add(template, methods, template)
    return r


@pytest.mark.parametrize(
    ("method", "path", "target", "params"),
    [
        ("GET", "jobs/abc", "jobs/{id}", {"id": "abc"}),
        ("POST", "jobs/batch", "jobs/batch", {}),  # a literal segment beats a parameter
        ("GET", "files/a/b/c", "files/{*rest}", {"rest": "a/b/c"}),
        ("GET", "opt", "opt/{x?}", {}),
        ("GET", "opt/1", "opt/{x?}", {"x": "1"}),
        ("GET", "n/12", "n/{v:int}", {"v": "12"}),
    ],
)
def test_routes_match_like_functions(router, method, path, target, params):
    route, got, _ = router.resolve(method, path)
    assert (route.target, got) == (target, params)


def test_unknown_path_and_wrong_method_are_told_apart(router):
    assert router.resolve("GET", "n/x")[0] is None and router.resolve("GET", "n/x")[2] is False
    route, _, path_matched = router.resolve("DELETE", "jobs/1")
    assert route is None and path_matched  # 405, not 404
