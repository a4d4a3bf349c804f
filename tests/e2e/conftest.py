"""End-to-end: the function app under the local host, on a real Azurite, driven over HTTP.

The app runs from a temporary app folder that links to the real function_app.py and shared/,
with host.json tightened so that retries and the poison queue happen in seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from shared import config as config_module
from shared.app import build
from tests.blocking import drop_resources, service_view
from tools.azurite import REPO_ROOT, free_port

FAST_QUEUES = {
    "batchSize": 16,
    "newBatchThreshold": 8,
    "maxPollingInterval": "00:00:00.500",
    "visibilityTimeout": "00:00:01",
    "maxDequeueCount": 3,
    "messageEncoding": "none",
}


@dataclass
class Host:
    base: str
    proc: subprocess.Popen
    log_path: Path
    services: Any  # the same storage (a sync view of it), for the test to look at or tamper with

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, job_id: str, done: Callable[[dict], bool], timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = requests.get(self.url(f"/api/jobs/{job_id}"), timeout=5).json()
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job never reached the expected state; last: {job}\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def submit(self, body: dict, **kw) -> requests.Response:
        return requests.post(self.url("/api/jobs"), json=body, timeout=10, **kw)


def make_app_dir(tmp: Path, queue_settings: dict) -> Path:
    app = tmp / "app"
    app.mkdir()
    for name in ("function_app.py", "shared"):
        (app / name).symlink_to(REPO_ROOT / name)
    host = json.loads((REPO_ROOT / "host.json").read_text())
    host["extensions"]["queues"] = queue_settings
    (app / "host.json").write_text(json.dumps(host))
    return app


@pytest.fixture
def start_host(azurite, unique_name, tmp_path, portal) -> Iterator[Callable[..., Host]]:
    started: list[Host] = []
    app_dir = make_app_dir(tmp_path, FAST_QUEUES)
    env = {
        **os.environ,
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_QUEUE_NAME": unique_name,
        "JOBS_TABLE_NAME": unique_name,
        "JOBS_CONTAINER_NAME": unique_name,
        "JOBS_BACKOFF_BASE_SECONDS": "0.5",
        "JOBS_BACKOFF_MAX_SECONDS": "1",
        "JOBS_LEASE_SECONDS": "6",
        "JOBS_HEARTBEAT_SECONDS": "2",
        "JOBS_RECONCILE_SCHEDULE": "*/2 * * * * *",
        "JOBS_SCHEDULER_SCHEDULE": "* * * * * *",  # schedules fire within a second
        "JOBS_RECONCILE_GRACE_SECONDS": "1",
        "AzureFunctionsWebHost__hostid": unique_name,
        "PYTHONUNBUFFERED": "1",
    }
    raw = build(config_module.load(env), env=env)
    services = service_view(raw, portal)
    port = free_port()

    def start(*extra_args: str, **settings: str) -> Host:
        """A host; `settings` are app settings for it alone (JOBS_APPINSIGHTS_RESOURCE_ID=..., say)."""
        log_path = tmp_path / f"host-{len(started)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(port), *extra_args],
            cwd=REPO_ROOT,
            env={**env, **settings},
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        host = Host(f"http://127.0.0.1:{port}", proc, log_path, services)
        started.append(host)
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(host.url("/api/health"), timeout=2).status_code == 200:
                    return host
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"host did not start:\n{host.log()}")
            time.sleep(0.1)

    yield start
    for host in started:
        if host.proc.poll() is None:
            os.killpg(host.proc.pid, signal.SIGTERM)
            try:
                # A host waits for its running invocations; a test's long sleeps need not finish.
                host.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(host.proc.pid, signal.SIGKILL)
    drop_resources(raw, portal)


@pytest.fixture
def host(start_host) -> Host:
    return start_host()
