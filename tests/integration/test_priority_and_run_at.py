"""`run_at` and priorities on a real Azurite: when a job may start, which queue it waits in, and
that every later message of the job (a retry, a repair, a poisoned one) stays on that queue."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared import api
from shared.api import ApiRequest
from shared.job import Priority, Status, isoformat, utcnow
from shared.messages import JobMessage
from shared.registry import Registry
from shared.worker import Outcome
from tests.integration.conftest import call_api, deliver


def submit(services, body):
    request = ApiRequest("POST", {}, {}, {"content-type": "application/json"}, json.dumps(body).encode())
    return call_api(services, api.submit_job, request)


def depths(services):
    return {p: q.get_queue_properties().approximate_message_count for p, q in services.storage.queues.items()}


def test_run_at_sets_the_due_time_and_hides_the_message_until_then(services):
    at = utcnow().replace(microsecond=0) + timedelta(hours=2)
    r = submit(services, {"type": "echo", "payload": 1, "run_at": isoformat(at)})
    assert r.status == 202 and r.body["due_at"] == isoformat(at)
    assert r.headers["Retry-After"] == "3600"  # capped: poll again in an hour
    assert depths(services)[Priority.NORMAL] == 1
    assert services.storage.queue.peek_messages(max_messages=1) == []  # hidden until it is due


def test_a_run_at_in_the_past_runs_now(services):
    r = submit(services, {"type": "echo", "payload": 1, "run_at": "2020-01-01T00:00:00Z"})
    assert r.status == 202
    assert deliver(services) == [Outcome.SUCCEEDED]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"run_at": "2026-01-01T00:00:00Z", "delay_seconds": 5}, 400, "invalid_field"),
        ({"run_at": None}, 202, None),  # as for every optional field: the default
        ({"run_at": "tomorrow"}, 400, "invalid_field"),
        ({"run_at": "2026-01-01T00:00:00"}, 400, "invalid_field"),  # no time zone
        ({"run_at": "2200-01-01T00:00:00Z"}, 422, "run_at_out_of_range"),
        ({"priority": "urgent"}, 400, "invalid_field"),
        ({"priority": None}, 202, None),
    ],
)
def test_bad_start_times_and_priorities_are_refused(services, body, status, code):
    r = submit(services, {"type": "echo", **body})
    assert r.status == status
    if code:
        assert r.body["code"] == code
        assert sum(depths(services).values()) == 0  # nothing written


def test_a_high_priority_job_waits_in_its_own_queue_and_runs_from_it(services):
    r = submit(services, {"type": "echo", "payload": "urgent", "priority": "high"})
    assert r.body["priority"] == "high"
    assert depths(services) == {Priority.HIGH: 1, Priority.NORMAL: 0, Priority.LOW: 0}
    assert deliver(services, priority=Priority.HIGH) == [Outcome.SUCCEEDED]
    job = services.service.get(r.body["id"])
    assert (job.status, job.priority, job.result) == (Status.SUCCEEDED, Priority.HIGH, "urgent")


def test_a_plain_job_is_normal_and_its_record_holds_no_priority(services):
    job = submit(services, {"type": "echo"}).body
    assert job["priority"] == "normal"
    pk, rk = f"p{job['id'][:2]}", job["id"][2:]
    assert "priority" not in services.storage.table.get_entity(pk, rk)  # no bigger record for a plain job


def test_a_type_may_default_to_a_priority_and_a_submit_may_override_it(services_factory):
    registry = Registry()
    registry.handler("report", priority="low")(lambda ctx: "done")
    services = services_factory(job_registry=registry)
    assert services.service.submit("report", None).job.priority is Priority.LOW
    assert services.service.submit("report", None, priority="high").job.priority is Priority.HIGH
    assert depths(services) == {Priority.HIGH: 1, Priority.NORMAL: 0, Priority.LOW: 1}


def test_a_retry_of_a_low_job_goes_back_to_the_low_queue(services):
    job = services.service.submit("fail", {"times": 1}, priority="low").job
    assert deliver(services, priority=Priority.LOW) == [Outcome.RETRY_SCHEDULED]
    assert depths(services) == {Priority.HIGH: 0, Priority.NORMAL: 0, Priority.LOW: 1}
    deadline = utcnow() + timedelta(seconds=10)
    while services.service.get(job.id).status is not Status.SUCCEEDED:
        assert utcnow() < deadline
        deliver(services, priority=Priority.LOW)


def test_the_reconciler_requeues_a_lost_high_message_on_the_high_queue(services_factory):
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0")
    job = services.service.submit("echo", 1, priority="high").job
    services.storage.queues[Priority.HIGH].clear_messages()  # lost between insert and enqueue
    assert services.reconciler.run()["requeued"] == 1
    assert depths(services) == {Priority.HIGH: 1, Priority.NORMAL: 0, Priority.LOW: 0}
    assert deliver(services, priority=Priority.HIGH) == [Outcome.SUCCEEDED]
    assert services.service.get(job.id).status is Status.SUCCEEDED


def test_a_poisoned_high_message_dead_letters_its_job(services):
    job = services.service.submit("echo", 1, priority="high").job
    services.storage.queues[Priority.HIGH].clear_messages()
    services.storage.poison_queues[Priority.HIGH].send_message(JobMessage(job.id, 1).encode())  # as the host does
    assert services.reconciler.run()["poison_dead_lettered"] == 1
    assert services.service.get(job.id).status is Status.DEAD_LETTERED


def test_a_batch_whose_only_fault_is_a_far_run_at_is_422_and_stores_nothing(services):
    body = {"jobs": [{"type": "echo"}, {"type": "echo", "run_at": "2400-01-01T00:00:00Z", "priority": "low"}]}
    request = ApiRequest("POST", {}, {}, {"content-type": "application/json"}, json.dumps(body).encode())
    r = call_api(services, api.submit_jobs, request)
    assert (r.status, r.body["code"]) == (422, "invalid_batch")
    assert r.body["errors"] == [
        {"index": 1, "code": "run_at_out_of_range", "detail": "`run_at` may be at most 365 days ahead"}
    ]
    assert sum(depths(services).values()) == 0
