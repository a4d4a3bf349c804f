"""The HTTP contract through shared.api on a real Azurite: statuses, headers, problems, and
no writes on bad input."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest

from shared import api
from shared.api import ApiRequest
from shared.job import Status, utcnow
from shared.worker import Outcome
from tests.integration.conftest import call_api, deliver


@pytest.fixture
def call(services):
    def call(route, body=None, raw: bytes | None = None, route_params=None, query=None, headers=None):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = {"content-type": "application/json", **(headers or {})}
        request = ApiRequest("POST", route_params or {}, query or {}, hdrs, data)
        return call_api(services, route, request)

    return call


def table_rows(services):
    return list(services.storage.table.list_entities())


def test_submit_returns_202_with_location_and_retry_after(call, services):
    r = call(api.submit_job, {"type": "echo", "payload": {"a": 1}})
    assert r.status == 202
    assert r.headers["Location"] == f"/api/jobs/{r.body['id']}"
    assert int(r.headers["Retry-After"]) >= 1
    assert {k: r.body[k] for k in ("type", "status", "attempt", "max_attempts", "payload", "result", "errors")} == {
        "type": "echo",
        "status": "queued",
        "attempt": 1,
        "max_attempts": 5,
        "payload": {"a": 1},
        "result": None,
        "errors": [],
    }
    assert r.body["created_at"].endswith("Z") and r.body["updated_at"]


def test_a_payloads_size_is_its_json_in_utf8_bytes_as_sent(services_factory):
    """JOBS_MAX_PAYLOAD_BYTES counts `é` as 2 bytes, as a client sends it, not as its 6-byte escape."""
    services = services_factory(JOBS_MAX_PAYLOAD_BYTES="1000")

    def submit(payload):
        body = json.dumps({"type": "echo", "payload": payload}, ensure_ascii=False).encode()
        request = ApiRequest("POST", {}, {}, {"content-type": "application/json"}, body)
        return call_api(services, api.submit_job, request)

    accepted = submit("é" * 499)  # 1,000 bytes with its quotes
    assert accepted.status == 202 and accepted.body["payload"] == "é" * 499
    refused = submit("é" * 500)
    assert (refused.status, refused.body["detail"]) == (413, "payload is 1002 bytes; the limit is 1000")


def test_get_returns_the_job_and_404_for_unknown_ids(call):
    job = call(api.submit_job, {"type": "echo", "payload": 1}).body
    assert call(api.get_job, route_params={"id": job["id"]}).body["id"] == job["id"]
    for bad in ("00" + "1" * 13 + "0" * 10, "not-an-id"):
        r = call(api.get_job, route_params={"id": bad})
        assert (r.status, r.content_type, r.body["code"]) == (404, api.PROBLEM_JSON, "job_not_found")


@pytest.mark.parametrize(
    ("body", "raw", "status", "code"),
    [
        (None, b"{not json", 400, "malformed_json"),
        (None, b"", 400, "invalid_body"),
        ([1, 2], None, 400, "invalid_body"),
        ({"payload": 1}, None, 400, "missing_type"),
        ({"type": "nope"}, None, 400, "unknown_job_type"),
        ({"type": "echo", "colour": "red"}, None, 400, "unknown_field"),
        ({"type": "echo", "max_attempts": 0}, None, 400, "invalid_field"),
        ({"type": "echo", "max_attempts": "3"}, None, 400, "invalid_field"),
        ({"type": "echo", "max_attempts": 101}, None, 400, "invalid_field"),
        ({"type": "echo", "delay_seconds": -1}, None, 400, "invalid_field"),
        ({"type": "echo", "delay_seconds": True}, None, 400, "invalid_field"),
        ({"type": "echo", "payload": "x" * 1_100_000}, None, 413, "payload_too_large"),
        (None, b"x" * 2_000_000, 413, "body_too_large"),
        (None, b"[" * 100_000, 400, "malformed_json"),  # deeper than the parser goes: not a 500
        (None, b'{"type": "echo", "payload": NaN}', 400, "malformed_json"),  # not JSON, cannot be sent back
        (None, b'{"type": "echo", "payload": 1e999}', 400, "malformed_json"),  # would become Infinity
        ({"type": "echo", "max_attempts": 2.5}, None, 400, "invalid_field"),
        ({"type": "echo", "delay_seconds": "5"}, None, 400, "invalid_field"),
    ],
)
def test_bad_submit_gets_a_problem_and_writes_nothing(call, services, body, raw, status, code):
    r = call(api.submit_job, body, raw=raw)
    assert (r.status, r.body["code"]) == (status, code), r.body
    assert r.content_type == api.PROBLEM_JSON
    assert r.body["status"] == status and r.body["detail"] and r.body["type"].startswith("urn:problem:")
    assert table_rows(services) == []
    assert services.storage.queue.get_queue_properties().approximate_message_count == 0


def test_unknown_job_type_problem_lists_known_types(call):
    r = call(api.submit_job, {"type": "nope"})
    assert {"echo", "sleep", "fail"} <= set(r.body["known_types"])


def test_wrong_content_type_is_415(call):
    r = call(api.submit_job, {"type": "echo"}, headers={"content-type": "text/plain"})
    assert (r.status, r.body["code"]) == (415, "unsupported_media_type")


def test_idempotency_key_header_returns_the_same_job(call, services):
    first = call(api.submit_job, {"type": "echo", "payload": 1}, headers={"idempotency-key": "abc"})
    again = call(api.submit_job, {"type": "echo", "payload": 1}, headers={"idempotency-key": "abc"})
    assert again.status == 202 and again.body["id"] == first.body["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    other = call(api.submit_job, {"type": "echo", "payload": 2}, headers={"idempotency-key": "abc"})
    assert (other.status, other.body["code"]) == (422, "idempotency_key_reused")
    bad = call(api.submit_job, {"type": "echo"}, headers={"idempotency-key": "with space"})
    assert (bad.status, bad.body["code"]) == (400, "invalid_idempotency_key")


def test_a_replay_may_spell_the_same_request_otherwise(call, services):
    """`30` or `30.0`, a null field or none, key order: the same request as the API reads it. A
    payload is compared as sent, since the handler would see the difference."""
    first = call(api.submit_job, {"type": "echo", "delay_seconds": 30, "payload": {"n": 1}},
                 headers={"idempotency-key": "spelled"})  # fmt: skip
    again = call(api.submit_job, {"payload": {"n": 1}, "delay_seconds": 30.0, "priority": None, "type": "echo"},
                 headers={"idempotency-key": "spelled"})  # fmt: skip
    assert (again.status, again.body["id"], again.headers.get("Idempotent-Replayed")) == (202, first.body["id"], "true")
    other = call(api.submit_job, {"type": "echo", "delay_seconds": 30, "payload": {"n": 1.0}},
                 headers={"idempotency-key": "spelled"})  # fmt: skip
    assert (other.status, other.body["code"]) == (422, "idempotency_key_reused")


def test_run_at_null_is_left_out_like_any_other_optional_field(call):
    r = call(api.submit_job, {"type": "echo", "run_at": None, "max_attempts": None})
    assert r.status == 202, r.body
    delayed = call(api.submit_job, {"type": "echo", "run_at": None, "delay_seconds": 5})
    assert delayed.status == 202 and delayed.body["due_at"] > r.body["due_at"], delayed.body
    both = call(api.submit_job, {"type": "echo", "run_at": "2026-01-01T00:00:00Z", "delay_seconds": 5})
    assert (both.status, both.body["code"]) == (400, "invalid_field"), both.body


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "done"}, "invalid_parameter"),
        ({"limit": "0"}, "invalid_parameter"),
        ({"limit": "201"}, "invalid_parameter"),
        ({"limit": "ten"}, "invalid_parameter"),
        ({"type": "a b"}, "invalid_parameter"),
        ({"colour": "red"}, "unknown_parameter"),
        ({"continuation": "xyz"}, "invalid_continuation"),
        ({"order": "random"}, "invalid_parameter"),
        ({"order": "oldest", "continuation": "xyz"}, "invalid_continuation"),
    ],
)
def test_bad_list_parameters_get_400(call, query, code):
    r = call(api.list_jobs, query=query)
    assert (r.status, r.body["code"]) == (400, code)


def test_list_pages_with_continuation(call):
    ids = [call(api.submit_job, {"type": "echo", "payload": i}).body["id"] for i in range(3)]
    first = call(api.list_jobs, query={"limit": "2"}).body
    rest = call(api.list_jobs, query={"limit": "2", "continuation": first["continuation"]}).body
    assert sorted(j["id"] for j in first["jobs"] + rest["jobs"]) == sorted(ids)
    assert rest["continuation"] is None


def test_list_oldest_first_pages_with_continuation(call):
    ids = []
    for i in range(5):
        ids.append(call(api.submit_job, {"type": "echo", "payload": i}).body["id"])
        time.sleep(0.002)  # distinct due times
    seen, token = [], None
    while True:
        query = {"limit": "2", "order": "oldest", **({"continuation": token} if token else {})}
        page = call(api.list_jobs, query=query).body
        seen += [j["id"] for j in page["jobs"]]
        token = page["continuation"]
        if token is None:
            break
    assert seen == ids


def test_cancel_and_retry_return_200_or_409_with_reason(call):
    job = call(api.submit_job, {"type": "echo"}).body
    r = call(api.retry_job, route_params={"id": job["id"]})
    assert (r.status, r.body["code"]) == (409, "invalid_state") and "queued" in r.body["detail"]
    # A body is refused, not ignored (a caller who sent one meant something cancel does not do).
    for raw in (b'{"reason": "x"}', b"garbage", b"[]"):
        refused = call(api.cancel_job, raw=raw, route_params={"id": job["id"]})
        assert (refused.status, refused.body["code"]) == (400, "invalid_body"), raw
    assert call(api.get_job, route_params={"id": job["id"]}).body["status"] == "queued"
    assert call(api.cancel_job, raw=b"{}", route_params={"id": job["id"]}).body["status"] == "cancelled"
    again = call(api.cancel_job, route_params={"id": job["id"]})
    assert again.status == 409 and "cancelled" in again.body["detail"]
    r = call(api.retry_job, {"extra_attempts": 2}, route_params={"id": job["id"]})
    # It never ran: put back as it was, its attempt unspent.
    assert (r.status, r.body["status"], r.body["attempt"], r.body["max_attempts"]) == (
        200,
        "queued",
        1,
        job["max_attempts"],
    )
    call(api.cancel_job, route_params={"id": job["id"]})
    bad = call(api.retry_job, {"extra_attempts": 0}, route_params={"id": job["id"]})
    assert bad.status == 400
    assert call(api.cancel_job, route_params={"id": "nope"}).status == 404


def test_retrying_a_job_cancelled_while_running_is_a_409_that_says_when_in_retry_after(call, services):
    """Until the cancelled attempt's lease runs out it may still be running: the refusal names the
    time in its detail and in Retry-After, so a client can wait for it."""
    job = call(api.submit_job, {"type": "echo"}).body
    found = services.store.get(job["id"])
    lease = utcnow() + timedelta(seconds=60)
    running = replace(found.job, status=Status.RUNNING, started_at=utcnow(), lease_until=lease)
    services.store.replace(running, found.etag, was=Status.QUEUED)
    assert call(api.cancel_job, route_params={"id": job["id"]}).body["status"] == "cancelled"
    r = call(api.retry_job, route_params={"id": job["id"]})
    assert (r.status, r.body["code"]) == (409, "invalid_state") and "retry after that" in r.body["detail"]
    assert 55 <= int(r.headers["Retry-After"]) <= 61
    other = call(api.cancel_job, route_params={"id": job["id"]})
    assert other.status == 409 and "Retry-After" not in other.headers  # no time ends that refusal


def test_a_delayed_job_cancelled_then_retried_keeps_its_start_and_runs_once_on_two_messages(call, services):
    """Put back as it was, the job has two messages for its one attempt (the one from its submit,
    still hidden, and the retry's): it runs once, at its start time."""
    job = call(api.submit_job, {"type": "echo", "payload": 1, "delay_seconds": 1.5}).body
    call(api.cancel_job, route_params={"id": job["id"]})
    back = call(api.retry_job, route_params={"id": job["id"]})
    assert (back.status, back.body["attempt"], back.body["due_at"]) == (200, 1, job["due_at"])
    assert deliver(services) == []  # both hidden until it is due
    time.sleep(2)
    outcomes = deliver(services)
    assert sorted(outcomes) == sorted([Outcome.SUCCEEDED, Outcome.STALE]), outcomes
    done = call(api.get_job, route_params={"id": job["id"]}).body
    assert (done["status"], done["attempt"], done["result"]) == ("succeeded", 1, 1)
    assert done["started_at"] >= job["due_at"]


def test_health_is_200_when_table_and_queue_answer(call):
    r = call(api.health)
    assert r.status == 200 and r.body["checks"] == {"table": "ok", "queue": "ok"}


def test_health_is_503_naming_what_failed(call, services):
    services.storage.queue.delete_queue()
    r = call(api.health)
    assert r.status == 503 and r.body["checks"]["table"] == "ok"
    assert r.body["checks"]["queue"] != "ok" and "queue" in r.body["detail"]
    services.storage.queue.create_queue()  # for the fixture's clean-up


def test_health_is_503_when_the_table_is_missing(call, services):
    services.storage.table.delete_table()
    r = call(api.health)
    assert r.status == 503 and r.body["checks"]["table"] != "ok" and r.body["checks"]["queue"] == "ok"
    services.storage.table.create_table()


def test_batch_of_100_jobs_costs_one_table_transaction(call, services):
    counter = services.storage.counter
    counter.reset()
    r = call(api.submit_jobs, {"jobs": [{"type": "echo", "payload": i} for i in range(100)]})
    assert r.status == 202 and len(r.body["jobs"]) == 100
    assert counter.total("table") == 1  # one entity-group transaction for 100 records
    assert counter.total("queue") == 100  # one message each: queues have no batch put
    assert len({j["id"][:2] for j in r.body["jobs"]}) == 1  # one partition
    assert services.storage.queue.get_queue_properties().approximate_message_count == 100


def test_batch_with_an_invalid_item_writes_nothing_and_names_it(call, services):
    r = call(api.submit_jobs, {"jobs": [{"type": "echo"}, {"type": "nope"}, {"type": "echo", "max_attempts": 0}]})
    assert (r.status, r.body["code"]) == (400, "invalid_batch")
    assert [(e["index"], e["code"]) for e in r.body["errors"]] == [(1, "unknown_job_type"), (2, "invalid_field")]
    assert table_rows(services) == []


@pytest.mark.parametrize("body", [{"jobs": []}, {"jobs": [{"type": "echo"}] * 101}, {"jobs": {}}, [1]])
def test_batch_shape_is_checked(call, body):
    r = call(api.submit_jobs, body)
    assert (r.status, r.body["code"]) == (400, "invalid_body")


@pytest.mark.parametrize("body", [{"x": 1}, {"jobs": [{"type": "echo"}], "x": 1}])
def test_a_batch_with_a_field_it_does_not_take_names_that_field(call, body):
    r = call(api.submit_jobs, body)
    assert (r.status, r.body["code"], r.body["fields"]) == (400, "unknown_field", ["x"])
    assert '{"jobs": [...]}' in r.body["detail"]


def test_deeply_nested_batch_is_a_400_problem(call, services):
    r = call(api.submit_jobs, None, raw=b'{"jobs": ' + b"[" * 100_000)
    assert (r.status, r.body["code"]) == (400, "malformed_json")
    assert table_rows(services) == []


def test_whole_valued_numbers_are_integers(call):
    r = call(api.submit_job, {"type": "echo", "max_attempts": 2.0})  # JSON Schema: 2.0 is an integer
    assert (r.status, r.body["max_attempts"]) == (202, 2)


def test_list_ignores_the_function_key_parameter_and_empty_values(call):
    job = call(api.submit_job, {"type": "echo"}).body
    r = call(api.list_jobs, query={"code": "a-function-key", "status": "", "continuation": ""})
    assert r.status == 200 and [j["id"] for j in r.body["jobs"]] == [job["id"]]


def test_list_since_until(call):
    job = call(api.submit_job, {"type": "echo"}).body
    inside = call(api.list_jobs, query={"since": "2000-01-01T00:00:00Z", "until": "2999-01-01T00:00:00+02:00"})
    assert [j["id"] for j in inside.body["jobs"]] == [job["id"]]
    before = call(api.list_jobs, query={"until": "2000-01-01T00:00:00Z"})
    assert (before.status, before.body["jobs"]) == (200, [])
    naive = call(api.list_jobs, query={"since": "2000-01-01T00:00:00"})
    assert (naive.status, naive.body["code"]) == (400, "invalid_parameter")


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("OPTIONS", "jobs/batch", 405, "method_not_allowed"),
        ("DELETE", "jobs/00820439375526612345abcde", 405, "method_not_allowed"),
        ("GET", "jobs/0082043937552", 404, "job_not_found"),  # an id of the wrong length
        ("GET", "nothing/here", 404, "not_found"),
    ],
)
def test_fallback_answers_405_with_allow_or_404(services, method, path, status, code):
    r = call_api(services, api.fallback, ApiRequest(method, {"path": path}))
    assert (r.status, r.body["code"]) == (status, code)
    if status == 405:
        assert r.headers["Allow"] == ("POST" if path == "jobs/batch" else "GET")


def test_batch_larger_than_one_transaction_is_split_and_all_succeed(call, services):
    from tests.integration.conftest import run_until

    big = "x" * 25_000  # inline (under the blob threshold): 100 of these exceed one 4 MiB transaction
    r = call(api.submit_jobs, {"jobs": [{"type": "echo", "payload": big} for _ in range(100)]})
    assert r.status == 202 and len(r.body["jobs"]) == 100
    ids = [j["id"] for j in r.body["jobs"]]
    run_until(services, lambda: services.store.list(status="succeeded", limit=200).jobs.__len__() == 100, timeout=60)
    assert {services.service.get(i).result == big for i in ids} == {True}


def test_batch_idempotency_key_returns_the_same_jobs_and_writes_nothing_more(call, services):
    body = {"jobs": [{"type": "echo", "payload": i} for i in range(5)]}
    first = call(api.submit_jobs, body, headers={"idempotency-key": "batch-1"})
    counter = services.storage.counter
    counter.reset()
    again = call(api.submit_jobs, body, headers={"idempotency-key": "batch-1"})
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert [j["id"] for j in again.body["jobs"]] == [j["id"] for j in first.body["jobs"]]
    assert counter.total("queue") == 0  # nothing enqueued twice
    other = call(api.submit_jobs, {"jobs": [{"type": "echo"}]}, headers={"idempotency-key": "batch-1"})
    assert (other.status, other.body["code"]) == (422, "idempotency_key_reused")
    single = call(api.submit_job, {"type": "echo"}, headers={"idempotency-key": "batch-1"})
    assert single.status == 422  # a batch's key cannot name a single job


def test_retention_deletes_a_keyed_batch_with_its_key(call, services):
    from datetime import timedelta

    from shared.job import utcnow
    from tests.integration.conftest import run_until

    r = call(api.submit_jobs, {"jobs": [{"type": "echo"}] * 3}, headers={"idempotency-key": "old-batch"})
    ids = [j["id"] for j in r.body["jobs"]]
    run_until(services, lambda: all(services.service.get(i).status.terminal for i in ids))
    assert services.reconciler.run(now=utcnow() + timedelta(days=8))["deleted"] == 3
    again = call(api.submit_jobs, {"jobs": [{"type": "echo"}] * 3}, headers={"idempotency-key": "old-batch"})
    assert again.status == 202 and "Idempotent-Replayed" not in again.headers


TRACED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # a caller's traceparent
APPINSIGHTS = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-jobs/providers/"
    "Microsoft.Insights/components/appi-jobs"
)


def test_answers_about_one_job_link_to_its_telemetry_when_the_app_knows_its_resource(services_factory):
    services = services_factory(JOBS_APPINSIGHTS_RESOURCE_ID=APPINSIGHTS)

    def call(route, method="GET", **params):
        return call_api(services, route, ApiRequest(method, params, {}, {}, b"", trace_parent=TRACED))

    submitted = call_api(
        services, api.submit_job,
        ApiRequest("POST", {}, {}, {"content-type": "application/json"}, b'{"type": "echo", "delay_seconds": 60}',
                   trace_parent=TRACED),
    ).body  # fmt: skip
    assert submitted["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    got = call(api.get_job, id=submitted["id"]).body
    assert got["trace_url"].startswith("https://portal.azure.com/#blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/")
    cancelled = call(api.cancel_job, "POST", id=submitted["id"]).body
    assert cancelled["trace_url"].split("/q/")[0] == got["trace_url"].split("/q/")[0]  # its query now ends
    assert "trace_url" not in call(api.list_jobs).body["jobs"][0]  # 500 characters a job: not in listings
    untraced = call_api(services, api.submit_job, ApiRequest("POST", {}, {}, {}, b'{"type": "echo"}')).body
    assert untraced["trace_id"] is None and "trace_url" not in call(api.get_job, id=untraced["id"]).body
