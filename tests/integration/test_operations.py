"""Bulk operations: redrive or cancel what a filter or a list of ids selects, in pages, in the
background, resumable after a crash, never redriving a job twice for one operation."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from shared import api
from shared.api import ApiRequest
from shared.contract import JobFilter, OperationStatus
from shared.idempotency import RequestHash
from shared.job import MS_CEILING, Job, Status, to_ms, utcnow
from shared.operations import PAGE, STALLED, _to_entity
from shared.worker import Outcome
from tests.integration.conftest import call_api, deliver


def dead_lettered(services, count: int, job_type: str = "fail") -> list[str]:
    ids = []
    for i in range(count):
        stored = services.store.insert(Job.new(job_type, {"n": i}, 1, shard=i % services.config.partitions))
        services.store.replace(stored.job.dead_letter("boom"), stored.etag, was=Status.QUEUED)
        ids.append(stored.job.id)
    return ids


def operation_messages(services) -> list[dict]:
    peeked = services.storage.queue.peek_messages(max_messages=32)
    return [json.loads(m.content) for m in peeked if '"op"' in m.content]


def run_operation(services, op_id: str, limit: int = 50):
    """Play the host: deliver messages (the operation's steps, and any jobs it queued) until done."""
    for _ in range(limit):
        op = services.operations.get(op_id)
        if op.status is not OperationStatus.RUNNING:
            return op
        deliver(services)
    raise AssertionError(f"operation did not finish: {services.operations.get(op_id)}")


def test_bulk_retry_by_filter_redrives_every_dead_letter_once_across_pages(services):
    ids = dead_lettered(services, 2 * PAGE + 30)
    started = services.operations.start("retry", JobFilter(status=Status.DEAD_LETTERED), None)
    assert operation_messages(services) == [{"op": started.operation.id}]
    op = run_operation(services, started.operation.id)
    assert (op.status, op.matched, op.applied, op.skipped, op.failed) == ("succeeded", 230, 230, 0, 0)
    jobs = [services.service.get(i) for i in ids]
    assert {j.attempt for j in jobs} == {2}  # one new attempt each, no more
    assert {j.operation for j in jobs} == {op.id}


def test_a_page_done_twice_after_a_crash_redrives_nothing_twice(services):
    """The worker dies after changing a page's jobs, before saving the cursor: the page is done
    again from the saved record, and the jobs' own marks stop a second redrive."""
    ids = dead_lettered(services, 10)
    op = services.operations.start("retry", None, ids).operation
    saved = services.storage.table.get_entity("ops", op.id)  # the record before the step
    services.operations.process(op.id)
    assert services.operations.get(op.id).applied == 10
    for job_id in ids:  # the redriven jobs run and fail again before the step is retried
        job = services.service.get(job_id)
        found = services.store.get(job_id)
        services.store.replace(job.claim(2, timedelta(seconds=30)), found.etag, was=Status.QUEUED)
        found = services.store.get(job_id)
        services.store.replace(found.job.dead_letter("boom again"), found.etag, was=Status.RUNNING)
    services.storage.table.update_entity(saved)  # the crash: the saved progress never happened
    services.operations.process(op.id)
    op = services.operations.get(op.id)
    assert (op.status, op.applied, op.skipped) == ("succeeded", 10, 0)  # counted as this operation's
    assert {services.service.get(i).status for i in ids} == {Status.DEAD_LETTERED}  # not redriven again
    assert {services.service.get(i).attempt for i in ids} == {2}


def test_bulk_by_ids_counts_what_it_could_not_apply(services):
    [doomed] = dead_lettered(services, 1)
    queued = services.service.submit("echo", 1, delay_seconds=600).job.id
    missing = "00" + "1" * 13 + "0" * 10
    op = services.operations.start("retry", None, [doomed, queued, missing, doomed], extra_attempts=3).operation
    assert services.operations.get(op.id).to_resource()["ids_count"] == 3  # each id once
    op = run_operation(services, op.id)
    assert (op.matched, op.applied, op.skipped, op.failed) == (3, 1, 2, 0)
    assert services.service.get(doomed).max_attempts == 1 + 3


def test_bulk_cancel_by_type_and_time_cancels_only_what_matches(services):
    now = utcnow()
    old = [services.store.insert(Job.new("sleep", 1, 1, shard=0, now=now - timedelta(hours=2))).job.id
           for _ in range(3)]  # fmt: skip
    recent = [services.service.submit("sleep", 1, delay_seconds=300).job.id for _ in range(3)]
    other = services.service.submit("echo", 1, delay_seconds=300).job.id
    job_filter = JobFilter(type="sleep", since=now - timedelta(minutes=1))
    op = run_operation(services, services.operations.start("cancel", job_filter, None).operation.id)
    assert (op.matched, op.applied) == (3, 3)
    assert {services.service.get(i).status for i in recent} == {Status.CANCELLED}
    assert {services.service.get(i).status for i in [*old, other]} == {Status.QUEUED}


def test_idempotency_key_returns_the_same_operation(services):
    dead_lettered(services, 2)
    first = services.operations.start(
        "retry", JobFilter(), None, idempotency_key="k1", request_hash=RequestHash.of("h")
    )
    again = services.operations.start(
        "retry", JobFilter(), None, idempotency_key="k1", request_hash=RequestHash.of("h")
    )
    assert (again.created, again.operation.id) == (False, first.operation.id)
    assert len(operation_messages(services)) == 1


def test_reconciler_restarts_an_operation_whose_message_was_lost(services):
    dead_lettered(services, 3)
    op = services.operations.start("retry", JobFilter(), None).operation
    services.storage.queue.clear_messages()  # the put was lost (a crash right after the record)
    services.reconciler.run(now=utcnow() + STALLED / 2)
    assert operation_messages(services) == []  # not stalled yet
    services.reconciler.run(now=utcnow() + STALLED * 2)
    assert operation_messages(services) == [{"op": op.id}]
    assert run_operation(services, op.id).applied == 3


def test_a_poisoned_operation_message_fails_the_operation(services):
    op = services.operations.start("cancel", JobFilter(), None).operation
    services.storage.queue.clear_messages()
    services.storage.poison_queue.send_message(json.dumps({"op": op.id}))
    services.reconciler.run()
    failed = services.operations.get(op.id)
    assert failed.status is OperationStatus.FAILED and "poison" in failed.errors[-1]["error"]


def test_the_worker_takes_operation_messages_from_the_jobs_queue(services):
    op = services.operations.start("cancel", JobFilter(), None).operation
    assert deliver(services) == [Outcome.OPERATION]
    assert services.operations.get(op.id).status is OperationStatus.SUCCEEDED


def test_retention_deletes_finished_operations_reading_only_those_made_before_the_cutoff(services):
    op = services.operations.start("cancel", JobFilter(), None, idempotency_key="old").operation
    recent = services.operations.start("cancel", JobFilter(), None).operation
    deliver(services)
    done = services.operations.get(op.id)
    # The same operation, as if made and finished 30 days ago (its row key holds its creation time).
    month_ago = utcnow() - timedelta(days=30)
    stale = replace(done, id=f"o{MS_CEILING - to_ms(month_ago):013d}{op.id[-8:]}", created_at=month_ago,
                    finished_at=month_ago + timedelta(minutes=1))  # fmt: skip
    services.storage.table.upsert_entity(_to_entity(stale))
    services.storage.table.delete_entity("ops", op.id)
    # Made after the cutoff, so not read at all: even a finish time before it (which cannot
    # happen) does not get it deleted. A query over the whole partition would delete it.
    unread = replace(services.operations.get(recent.id), finished_at=month_ago)
    services.storage.table.upsert_entity(_to_entity(unread))
    assert services.operations.prune(utcnow() - timedelta(days=7)) == 1
    assert [e["RowKey"] for e in services.storage.table.query_entities("PartitionKey eq 'ops'")] == [recent.id]


# --- over the API ---------------------------------------------------------------------------


@pytest.fixture
def post(services):
    def post(route, body, headers=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = ApiRequest("POST", {}, {}, {"content-type": "application/json", **(headers or {})}, raw)
        return call_api(services, route, request)

    return post


def test_bulk_retry_answers_202_with_an_operation_to_poll(services, post):
    dead_lettered(services, 2)
    r = post(api.retry_jobs, {"filter": {"status": "dead_lettered", "type": "fail"}})
    assert r.status == 202 and r.headers["Location"] == f"/api/operations/{r.body['id']}"
    expected = ("running", "retry", {"status": "dead_lettered", "type": "fail"})
    assert (r.body["status"], r.body["action"], r.body["filter"]) == expected
    run_operation(services, r.body["id"])
    got = call_api(services, api.get_operation, ApiRequest("GET", {"id": r.body["id"]}))
    assert got.status == 200 and got.body["applied"] == 2 and "Retry-After" not in got.headers


def test_a_bulk_retrys_key_sent_to_the_cancel_route_is_another_request(services, post):
    """Both routes keep their keys in one place, and `{"filter": {}}` is a valid body of either:
    replaying the retry there would answer a cancel with the retry's operation."""
    key = {"idempotency-key": "nightly-redrive"}
    retried = post(api.retry_jobs, {"filter": {}}, key)
    assert post(api.retry_jobs, {"filter": {}}, key).body["id"] == retried.body["id"]
    r = post(api.cancel_jobs, {"filter": {}}, key)
    assert (r.status, r.body["code"]) == (422, "idempotency_key_reused"), r.body


def test_an_empty_bulk_cancel_filter_cancels_every_queued_job_of_every_type_as_documented(services, post):
    """`{"filter": {}}` asks for no confirmation: the README and the document say what it does."""
    queued = [services.service.submit(t, 1, delay_seconds=300).job.id for t in ("sleep", "echo", "fail")]
    r = post(api.cancel_jobs, {"filter": {}})
    assert (r.status, r.body["filter"]) == (202, {})
    assert run_operation(services, r.body["id"]).applied == 3
    assert {services.service.get(i).status for i in queued} == {Status.CANCELLED}


@pytest.mark.parametrize(
    ("route", "body", "code"),
    [
        (api.retry_jobs, {}, "invalid_field"),  # neither filter nor ids
        (api.retry_jobs, {"filter": {}, "ids": ["x"]}, "invalid_field"),  # both
        (api.retry_jobs, {"filter": None, "ids": ["x"]}, "invalid_field"),  # null is not absent
        (api.retry_jobs, {"filter": {"status": "queued"}}, "invalid_field"),  # retry takes finished jobs only
        (api.cancel_jobs, {"filter": {"status": "succeeded"}}, "invalid_field"),
        (api.cancel_jobs, {"filter": {"since": "2026-01-01T00:00:00"}}, "invalid_field"),  # no time zone
        (api.cancel_jobs, {"ids": []}, "invalid_field"),
        (api.cancel_jobs, {"ids": ["a"] * 1001}, "invalid_field"),
        (api.cancel_jobs, {"filter": {}, "colour": "red"}, "unknown_field"),
        (api.cancel_jobs, {"filter": {}, "extra_attempts": 2}, "unknown_field"),  # a cancel has no attempts
    ],
)
def test_bad_bulk_requests_get_400_and_start_nothing(services, post, route, body, code):
    r = post(route, body)
    assert (r.status, r.body["code"]) == (400, code), r.body
    assert list(services.storage.table.query_entities("PartitionKey eq 'ops'")) == []


def test_an_unknown_field_in_the_filter_is_named_with_its_path(services, post):
    r = post(api.cancel_jobs, {"filter": {"colour": "red"}})
    assert (r.status, r.body["code"], r.body["fields"]) == (400, "unknown_field", ["filter.colour"])


def test_get_operation_404(services):
    for op_id in ("o" + "1" * 20, "nope"):
        r = call_api(services, api.get_operation, ApiRequest("GET", {"id": op_id}))
        assert (r.status, r.body["code"]) == (404, "operation_not_found")


def test_a_page_of_100_redrives_costs_two_table_calls_and_a_put_per_job(services):
    """A read and one conditional write (with the index copy's removal) per job, a put per job; for
    the page, the operation's read, one transaction of watch entries and the saved cursor."""
    ids = dead_lettered(services, 100)
    op = services.operations.start("retry", None, ids).operation
    counter = services.storage.counter
    counter.reset()
    services.operations.process(op.id)
    assert counter.total("table") == 2 * 100 + 3
    assert counter.snapshot()[("queue", "POST")] == 100
    assert services.operations.get(op.id).applied == 100
