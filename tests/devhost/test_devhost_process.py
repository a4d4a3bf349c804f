"""The local host as a process, against a real Azurite, with a sample app that is not a job system."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from azure.storage.queue import QueueClient

from tools.azurite import REPO_ROOT, free_port

SAMPLE = Path(__file__).parent / "sample_app"


@dataclass
class Running:
    proc: subprocess.Popen
    base: str
    out: Path
    queue: QueueClient
    poison: QueueClient
    log: Path

    def records(self, kind: str) -> list[dict]:
        if not self.out.exists():
            return []
        return [r for r in map(json.loads, self.out.read_text().splitlines()) if r["kind"] == kind]

    def wait(self, check: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.05)


@pytest.fixture
def start(azurite, unique_name, tmp_path) -> Iterator[Callable[..., Running]]:
    procs: list[subprocess.Popen] = []

    def start(app_dir: Path = SAMPLE, *extra: str, schedule: str = "0 0 0 1 1 *") -> Running:
        port = free_port()
        out, log = tmp_path / "out.jsonl", tmp_path / f"host-{len(procs)}.log"
        env = {
            **os.environ,
            "AzureWebJobsStorage": azurite.connection_string,
            "SAMPLE_QUEUE": unique_name,
            "SAMPLE_OUT": str(out),
            "SAMPLE_SCHEDULE": schedule,
            "AzureFunctionsWebHost__hostid": unique_name,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(port), *extra],
            cwd=REPO_ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        running = Running(
            proc, f"http://127.0.0.1:{port}", out,
            QueueClient.from_connection_string(azurite.connection_string, unique_name),
            QueueClient.from_connection_string(azurite.connection_string, unique_name + "-poison"), log,
        )  # fmt: skip
        running.wait(lambda: "Host started" in log.read_text() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text()
        return running

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_startup_lists_functions_like_func_start(start):
    host = start()
    text = host.log.read_text()
    assert "Functions:" in text
    assert f"hello: [GET] http://localhost:{host.base.rsplit(':', 1)[1]}/sample/hello/{{name}}" in text
    assert "consume: queueTrigger" in text and "tick: timerTrigger" in text


def test_http_routes_params_status_headers_and_errors(start):
    host = start()
    r = requests.get(f"{host.base}/sample/hello/ada", timeout=5)
    assert (r.status_code, r.text, r.headers["X-Sample"]) == (200, "hello ada", "yes")
    r = requests.put(f"{host.base}/sample/items/7/more?q=x", json={"a": 1}, timeout=5)
    assert r.status_code == 201 and r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"id": "7", "extra": "more", "method": "PUT", "q": "x", "json": {"a": 1}}
    assert requests.get(f"{host.base}/sample/items/7", timeout=5).json()["extra"] is None
    assert requests.get(f"{host.base}/sample/items/notanint", timeout=5).status_code == 404
    assert requests.get(f"{host.base}/api/hello/ada", timeout=5).status_code == 404  # wrong prefix
    assert requests.delete(f"{host.base}/sample/hello/ada", timeout=5).status_code == 405
    assert requests.get(f"{host.base}/sample/boom", timeout=5).status_code == 500


def test_queue_message_is_processed_and_deleted(start):
    host = start()
    host.queue.send_message(b64("hello"))
    host.wait(lambda: [r["value"] for r in host.records("queue")] == ["hello|1"])
    host.wait(lambda: host.queue.get_queue_properties().approximate_message_count == 0)


def test_invalid_base64_goes_straight_to_poison(start):
    host = start()
    host.queue.send_message("not base64 !!")
    host.wait(lambda: [m.content for m in host.poison.peek_messages()] == ["not base64 !!"])
    assert host.records("queue") == []


def test_failing_message_retries_after_visibility_timeout_then_poison_with_body_intact(start):
    host = start()
    host.queue.send_message(b64("fail-1"))
    host.wait(lambda: [m.content for m in host.poison.peek_messages()] == [b64("fail-1")])
    runs = host.records("queue")
    assert [r["value"] for r in runs] == ["fail-1|1", "fail-1|2", "fail-1|3"]  # maxDequeueCount 3
    gaps = [b["t"] - a["t"] for a, b in zip(runs, runs[1:], strict=False)]
    assert all(g >= 0.9 for g in gaps), gaps  # visibilityTimeout 1 s between deliveries
    assert host.queue.get_queue_properties().approximate_message_count == 0


def test_message_encoding_none_passes_text_through(start, tmp_path):
    app = tmp_path / "plain"
    app.mkdir()
    (app / "function_app.py").symlink_to(SAMPLE / "function_app.py")
    host_json = json.loads((SAMPLE / "host.json").read_text())
    host_json["extensions"]["queues"]["messageEncoding"] = "none"
    (app / "host.json").write_text(json.dumps(host_json))
    host = start(app)
    host.queue.send_message("plain text")
    host.wait(lambda: [r["value"] for r in host.records("queue")] == ["plain text|1"])


def test_a_batch_runs_concurrently(start):
    host = start()
    for i in range(8):
        host.queue.send_message(b64(f"slow-{i}"))
    started = time.monotonic()
    host.wait(lambda: len(host.records("queue")) == 8)
    host.wait(lambda: host.queue.get_queue_properties().approximate_message_count == 0)
    assert time.monotonic() - started < 5  # 8 one-second messages, not 8 seconds in a row


def test_idle_polling_backs_off_no_further_than_max_polling_interval(start):
    host = start()
    time.sleep(3)  # idle long enough to back off fully (maxPollingInterval is 500 ms)
    sent = time.monotonic()
    host.queue.send_message(b64("wake"))
    host.wait(lambda: len(host.records("queue")) == 1)
    assert time.monotonic() - sent < 1.5


def test_timer_fires_on_startup_and_on_schedule(start):
    host = start(schedule="*/1 * * * * *")
    host.wait(lambda: len(host.records("timer")) >= 3, timeout=15)


def test_timer_runs_on_one_instance_at_a_time(start):
    host = start(SAMPLE, "--instances", "2", schedule="*/1 * * * * *")
    host.wait(lambda: "Host started (instance 1" in host.log.read_text(), timeout=30)
    time.sleep(4)
    instances = {r["instance"] for r in host.records("timer")}
    assert len(instances) == 1, host.records("timer")


def test_sigterm_stops_cleanly(start):
    host = start()
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=20) == 0
    assert "Unclosed" not in host.log.read_text()
