"""A storage account that accepts connections but does not answer (here: Azurite stopped with
SIGSTOP) must not hold the API's requests: they answer 503 within JOBS_API_TIMEOUT_SECONDS, and
health names each check that did not answer. Once storage answers again, so does the API."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import requests

from tools.azurite import Azurite


@pytest.fixture
def azurite() -> Iterator[Azurite]:
    """An Azurite of this test's own (it is stopped for a while), in place of the shared one."""
    with Azurite() as own:
        yield own


def timed_get(url: str) -> tuple[requests.Response, float]:
    began = time.monotonic()
    response = requests.get(url, timeout=60)
    return response, time.monotonic() - began


def test_storage_that_does_not_answer_gets_a_503_in_time_and_health_names_the_checks(azurite, start_host):
    host = start_host(JOBS_API_TIMEOUT_SECONDS="3")
    job_id = host.submit({"type": "echo", "payload": 1}).json()["id"]
    assert azurite.pid is not None
    os.kill(azurite.pid, signal.SIGSTOP)
    try:
        health, health_took = timed_get(host.url("/api/health"))
        listed, list_took = timed_get(host.url("/api/jobs?limit=1"))
        got, get_took = timed_get(host.url(f"/api/jobs/{job_id}"))
    finally:
        os.kill(azurite.pid, signal.SIGCONT)
    assert health.status_code == 503 and health_took < 3, (health.status_code, health_took)
    body = health.json()
    assert body["code"] == "dependency_unavailable"
    assert body["checks"] == {"table": "no answer in 1.5 s", "queue": "no answer in 1.5 s"}
    for response, took in ((listed, list_took), (got, get_took)):
        assert response.status_code == 503 and 3 <= took < 5, (response.status_code, took)
        assert response.json()["code"] == "storage_unavailable" and response.headers["Retry-After"] == "5"

    deadline = time.monotonic() + 30
    while requests.get(host.url("/api/health"), timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the API did not come back with storage"
        time.sleep(0.2)
    assert requests.get(host.url(f"/api/jobs/{job_id}"), timeout=10).status_code == 200
