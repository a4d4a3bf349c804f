"""`make run` (tools/run_local.py): the app and its storage come up together, and when the storage
goes away the user is told, instead of every request answering 503 with no hint why."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tools.azurite import REPO_ROOT, Azurite, connection_string, free_port


def settings_file(tmp_path: Path, storage: str) -> Path:
    values = json.loads((REPO_ROOT / "local.settings.json.example").read_text())
    values["Values"]["AzureWebJobsStorage"] = storage
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(values))
    return path


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def run_local(tmp_path) -> Iterator[Callable[[str], tuple[subprocess.Popen, str, Callable[[], str]]]]:
    started: list[subprocess.Popen] = []

    def start(storage: str) -> tuple[subprocess.Popen, str, Callable[[], str]]:
        port = free_port()
        out = tmp_path / "run_local.log"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.run_local",
                "--port",
                str(port),
                "--settings",
                str(settings_file(tmp_path, storage)),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base}/api/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(lambda: healthy() or proc.poll() is not None, 60, "the app to answer")
        assert proc.poll() is None, out.read_text()
        return proc, base, lambda: out.read_text(errors="replace")

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_when_the_azurite_it_started_dies_make_run_stops_the_host_and_says_why(run_local):
    ports = [free_port() for _ in range(3)]
    proc, base, output = run_local(connection_string(*ports))
    found = re.search(r"Azurite is up \(pid (\d+)\)", output())
    assert found, output()

    os.killpg(int(found.group(1)), signal.SIGKILL)

    assert proc.wait(timeout=30) == 1, output()
    assert "Azurite exited" in output() and "stopping the host" in output()
    with pytest.raises(requests.ConnectionError):  # the host is gone too, not left answering 503
        requests.get(f"{base}/api/health", timeout=2)


def test_storage_it_did_not_start_is_used_and_watched_not_stopped(run_local, tmp_path):
    ports = [free_port() for _ in range(3)]
    # On disk, as a user's own Azurite often is, so that what the app created survives its restart.
    storage = Azurite(*ports, location=str(tmp_path / "azurite")).start()
    try:
        proc, base, output = run_local(storage.connection_string)
        assert "Storage already answers" in output()

        storage.stop()
        wait_until(lambda: "Storage stopped answering" in output(), 15, "the warning")
        assert proc.poll() is None  # someone else's storage may come back: keep the host

        storage = Azurite(*ports, location=str(tmp_path / "azurite")).start()
        wait_until(lambda: "Storage answers again" in output(), 15, "the all-clear")
        assert requests.get(f"{base}/api/health", timeout=5).status_code == 200
    finally:
        storage.stop()
