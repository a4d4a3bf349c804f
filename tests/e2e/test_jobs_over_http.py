"""The whole product over HTTP: local host + Azurite, as a user runs it with `make run`."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from shared.job import Job
from shared.messages import JobMessage

pytestmark = pytest.mark.e2e

finished = lambda job: job["status"] in ("succeeded", "dead_lettered", "cancelled")  # noqa: E731


def test_echo_job_succeeds(host):
    r = host.submit({"type": "echo", "payload": {"hello": "world"}})
    assert r.status_code == 202 and r.headers["Location"].startswith("/api/jobs/")
    job = host.wait_for(r.json()["id"], finished)
    assert (job["status"], job["result"], job["attempt"]) == ("succeeded", {"hello": "world"}, 1)
    location = requests.get(host.url(r.headers["Location"]), timeout=5)
    assert location.status_code == 200 and location.json()["id"] == job["id"]


def test_a_stopped_host_closes_the_apps_storage_clients(host):
    # The app's clients live as long as the worker's event loop: a normal stop closes them there,
    # so aiohttp has no unclosed session or connector to complain about at exit.
    host.wait_for(host.submit({"type": "echo", "payload": 1}).json()["id"], finished)
    os.killpg(host.proc.pid, signal.SIGTERM)
    host.proc.wait(timeout=30)
    text = host.log()
    assert "Host stopped (instance 0)" in text
    for bad in ("Unclosed", "Task was destroyed", "Traceback"):
        assert bad not in text, text[-3000:]


def test_fail_twice_then_succeeds_on_third_attempt(host):
    job_id = host.submit({"type": "fail", "payload": {"times": 2}}).json()["id"]
    job = host.wait_for(job_id, finished)
    assert (job["status"], job["attempt"]) == ("succeeded", 3)
    assert [e["attempt"] for e in job["errors"]] == [1, 2]


def test_the_local_text_log_names_the_job_and_attempt_on_each_of_its_lines(host):
    job_id = host.submit({"type": "fail", "payload": {"times": 1}}).json()["id"]
    host.wait_for(job_id, finished)
    deadline = time.monotonic() + 10
    while "attempt succeeded" not in host.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in host.log().splitlines() if job_id in line]
    assert any("job submitted" in line and "attempt=1" in line for line in lines), host.log()[-3000:]
    assert any("retry scheduled" in line and "attempt=2" in line for line in lines), lines
    assert any("attempt succeeded" in line and "attempt=2" in line and "status=succeeded" in line for line in lines)
    assert all(f"job_id={job_id}" in line for line in lines if "Executing" not in line), lines


def test_fail_forever_dead_letters_after_max_attempts(host):
    job_id = host.submit({"type": "fail", "max_attempts": 3}).json()["id"]
    job = host.wait_for(job_id, finished)
    assert (job["status"], job["attempt"], len(job["errors"])) == ("dead_lettered", 3, 3)
    listed = requests.get(host.url("/api/jobs?status=dead_lettered"), timeout=5).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]


def test_message_the_host_poisons_ends_the_job_dead_lettered_and_it_can_be_redriven(host):
    """The worker fails outside the handler on every delivery (its payload blob is gone), so the
    host gives up after maxDequeueCount and moves the message to the poison queue."""
    big = {"data": "x" * 100_000}
    job_id = host.submit({"type": "echo", "payload": big, "delay_seconds": 2}).json()["id"]
    host.services.storage.container.delete_blob(f"{job_id}/payload.json")
    job = host.wait_for(job_id, finished, timeout=45)
    assert job["status"] == "dead_lettered" and "poison" in job["last_error"]
    # Put the payload back, and redrive: the job runs again and succeeds.
    host.services.storage.container.upload_blob(f"{job_id}/payload.json", b'{"data":"restored"}')
    r = requests.post(host.url(f"/api/jobs/{job_id}/retry"), timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "queued"
    job = host.wait_for(job_id, finished)
    assert (job["status"], job["result"]) == ("succeeded", {"data": "restored"})


def test_duplicate_message_does_not_run_an_attempt_twice(host):
    job_id = host.submit({"type": "echo", "payload": 1}).json()["id"]
    done = host.wait_for(job_id, finished)
    host.services.storage.queue.send_message(JobMessage(job_id, 1).encode())
    deadline = time.monotonic() + 10
    while host.services.storage.queue.get_queue_properties().approximate_message_count:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    again = requests.get(host.url(f"/api/jobs/{job_id}"), timeout=5).json()
    assert again == done  # not run again: same attempt, same timestamps
    assert "job is already succeeded" in host.log()


def test_enqueue_lost_after_insert_is_recovered_by_the_reconciler(host):
    # As if the API died between the insert and the enqueue: the record exists, the message not.
    job = Job.new("echo", {"lost": True}, 3, shard=0)
    host.services.store.insert(job)
    recovered = host.wait_for(job.id, finished, timeout=20)
    assert recovered["status"] == "succeeded" and recovered["result"] == {"lost": True}


def test_worker_killed_mid_job_is_recovered(start_host):
    host = start_host()
    job_id = host.submit({"type": "sleep", "payload": {"seconds": 3}}).json()["id"]
    host.wait_for(job_id, lambda j: j["status"] == "running")
    os.killpg(host.proc.pid, signal.SIGKILL)  # the host dies mid-job; its message stays hidden
    host.proc.wait()
    second = start_host()
    job = second.wait_for(job_id, finished, timeout=40)
    assert (job["status"], job["attempt"]) == ("succeeded", 2)
    assert "lease expired" in job["errors"][0]["error"]


def test_cancel_queued_job_and_redrive_it(host):
    job_id = host.submit({"type": "echo", "payload": 1, "delay_seconds": 3}).json()["id"]
    r = requests.post(host.url(f"/api/jobs/{job_id}/cancel"), timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    conflict = requests.post(host.url(f"/api/jobs/{job_id}/cancel"), timeout=5)
    assert conflict.status_code == 409
    assert conflict.headers["Content-Type"].startswith("application/problem+json")
    r = requests.post(host.url(f"/api/jobs/{job_id}/retry"), timeout=5)
    assert r.status_code == 200 and r.json()["attempt"] == 1  # it never ran: put back as it was
    done = host.wait_for(job_id, finished)
    assert (done["status"], done["attempt"]) == ("succeeded", 1) and done["started_at"] >= done["due_at"]


def test_cancel_running_job_stops_it(host):
    job_id = host.submit({"type": "sleep", "payload": {"seconds": 2}}).json()["id"]
    host.wait_for(job_id, lambda j: j["status"] == "running")
    assert requests.post(host.url(f"/api/jobs/{job_id}/cancel"), timeout=5).status_code == 200
    time.sleep(3)
    job = requests.get(host.url(f"/api/jobs/{job_id}"), timeout=5).json()
    assert job["status"] == "cancelled" and job["result"] is None


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "post",
            "/api/jobs",
            {"data": b"{oops", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
        ),
        ("post", "/api/jobs", {"json": {"type": "nope"}}, 400, "unknown_job_type"),
        ("post", "/api/jobs", {"json": {"type": "echo", "payload": "x" * 1_100_000}}, 413, "payload_too_large"),
        ("post", "/api/jobs", {"json": {"type": "echo", "max_attempts": -1}}, 400, "invalid_field"),
        ("get", "/api/jobs?limit=9999", {}, 400, "invalid_parameter"),
        ("get", "/api/jobs?status=finished", {}, 400, "invalid_parameter"),
        ("get", "/api/jobs?continuation=bogus", {}, 400, "invalid_continuation"),
        ("get", "/api/jobs/00000000000000000000000000", {}, 404, "job_not_found"),
        ("post", "/api/jobs/nope/cancel", {}, 404, "job_not_found"),
    ],
)
def test_bad_input_gets_a_problem_and_writes_nothing(host, method, path, kwargs, status, code):
    r = getattr(requests, method)(host.url(path), timeout=10, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    job_rows = [e for e in host.services.storage.table.list_entities() if e["PartitionKey"].startswith("p")]
    assert job_rows == []


def test_idempotency_key_over_http(host):
    headers = {"Idempotency-Key": "order-7"}
    first = host.submit({"type": "echo", "payload": 7}, headers=headers)
    again = host.submit({"type": "echo", "payload": 7}, headers=headers)
    assert first.json()["id"] == again.json()["id"] and again.headers["Idempotent-Replayed"] == "true"


def test_health(host):
    r = requests.get(host.url("/api/health"), timeout=5)
    assert r.status_code == 200 and r.json()["checks"] == {"table": "ok", "queue": "ok"}


def test_listing_newest_first_with_continuation(host):
    ids = [host.submit({"type": "echo", "payload": i, "delay_seconds": 60}).json()["id"] for i in range(5)]
    seen, token = [], None
    while True:
        params = {"limit": 2, **({"continuation": token} if token else {})}
        page = requests.get(host.url("/api/jobs"), params=params, timeout=5).json()
        seen += [j["id"] for j in page["jobs"]]
        token = page["continuation"]
        if not token:
            break
    assert seen == list(reversed(ids))
