"""Schedules end to end: the local host runs the scheduler's timer (every second here) against
Azurite, and a schedule created over HTTP makes jobs that run, stops while paused, and goes
again when resumed."""

from __future__ import annotations

import time

import pytest
import requests

pytestmark = pytest.mark.e2e

EVERY_2_SECONDS = "*/2 * * * * *"


def jobs_of(host, schedule_id: str) -> list[dict]:
    """The jobs a schedule made, found from the listing by their payload: its id, or "pending" for
    a fire between the create and the change that names it (the only schedule of this file)."""
    listed = requests.get(host.url("/api/jobs"), params={"limit": 200}, timeout=10).json()["jobs"]
    return [j for j in listed if j["payload"] in ({"schedule": schedule_id}, {"schedule": "pending"})]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_a_schedule_every_2_seconds_makes_jobs_stops_when_paused_and_goes_on_when_resumed(host):
    created = requests.post(host.url("/api/schedules"), timeout=10, json={
        "cron": EVERY_2_SECONDS, "time_zone": "Europe/Berlin", "name": "heartbeat",
        "job": {"type": "echo", "payload": {"schedule": "pending"}},
    })  # fmt: skip
    assert created.status_code == 201, created.text
    schedule = created.json()
    sid = schedule["id"]
    assert created.headers["Location"] == f"/api/schedules/{sid}"
    fires = [f["at"] for f in schedule["next_fires"]]
    assert len(fires) == 5 and all(int(at[17:19]) % 2 == 0 for at in fires)  # every even second
    # Give the jobs a payload naming the schedule, so this test finds them.
    patched = requests.patch(host.url(f"/api/schedules/{sid}"), json={"job": {"payload": {"schedule": sid}}},
                             timeout=10)  # fmt: skip
    assert patched.status_code == 200 and patched.json()["job"]["payload"] == {"schedule": sid}

    made = wait_until(lambda: len(jobs_of(host, sid)) >= 3 and jobs_of(host, sid), 20, "three scheduled jobs")
    assert {j["type"] for j in made} == {"echo"}
    host.wait_for(made[-1]["id"], lambda j: j["status"] == "succeeded")  # they run like any job
    shown = requests.get(host.url(f"/api/schedules/{sid}"), timeout=10).json()
    assert shown["fired"] >= 3 and shown["last_fire"]["job_id"] in {j["id"] for j in jobs_of(host, sid)}
    recent = shown["recent_fires"]  # the way from a schedule to its jobs
    times = [f["at"] for f in recent]
    assert recent[0] == shown["last_fire"] and times == sorted(times, reverse=True)
    assert len(recent) == min(shown["fired"], 10)
    assert {f["job_id"] for f in recent} <= {j["id"] for j in jobs_of(host, sid)}
    # One job per fire time: their due times are distinct even seconds.
    dues = [j["created_at"] for j in jobs_of(host, sid)]
    assert len(dues) == len(set(dues))

    paused = requests.patch(host.url(f"/api/schedules/{sid}"), json={"paused": True}, timeout=10).json()
    assert paused["paused"] is True and paused["next_fires"] == []
    time.sleep(1)  # a pass that read the schedule before the pause may still finish its fire
    count = len(jobs_of(host, sid))
    time.sleep(5)
    assert len(jobs_of(host, sid)) == count, "a paused schedule made a job"
    assert requests.get(host.url(f"/api/schedules/{sid}"), timeout=10).json()["fired"] == count

    resumed = requests.patch(host.url(f"/api/schedules/{sid}"), json={"paused": False}, timeout=10).json()
    assert resumed["paused"] is False
    wait_until(lambda: len(jobs_of(host, sid)) >= count + 2, 15, "jobs after the resume")

    assert requests.delete(host.url(f"/api/schedules/{sid}"), timeout=10).status_code == 204
    assert requests.get(host.url(f"/api/schedules/{sid}"), timeout=10).status_code == 404
    # The host ran the scheduler's own timer function (the reconciler fires schedules too).
    assert "Executed 'Functions.fire_schedules' (Succeeded" in host.log()


def test_a_problem_for_a_bad_cron_and_a_listing_of_what_exists(host):
    r = requests.post(host.url("/api/schedules"), json={"cron": "every minute", "job": {"type": "echo"}}, timeout=10)
    assert (r.status_code, r.headers["Content-Type"], r.json()["code"]) == (
        400, "application/problem+json", "invalid_cron")  # fmt: skip
    r = requests.post(host.url("/api/schedules"), json={"cron": "0 0 30 2 *", "job": {"type": "echo"}}, timeout=10)
    assert (r.status_code, r.json()["code"]) == (422, "unsatisfiable_cron")
    made = [
        requests.post(host.url("/api/schedules"), json={"cron": "0 9 * * MON", "job": {"type": "echo"}}, timeout=10)
        for _ in range(3)
    ]
    listed = requests.get(host.url("/api/schedules"), params={"limit": 2}, timeout=10).json()
    assert len(listed["schedules"]) == 2 and listed["continuation"]
    rest = requests.get(host.url("/api/schedules"), params={"continuation": listed["continuation"]}, timeout=10)
    ids = [s["id"] for s in listed["schedules"] + rest.json()["schedules"]]
    assert ids == [m.json()["id"] for m in made]
    r = requests.put(host.url(f"/api/schedules/{ids[0]}"), json={}, timeout=10)
    assert (r.status_code, r.headers["Allow"]) == (405, "DELETE, GET, PATCH")
