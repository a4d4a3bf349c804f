"""Start `python -m devhost` on the sample app against the session's Azurite, one queue and host id
per test, and read back what the sample app recorded."""

from __future__ import annotations

import base64
import contextlib
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
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from tools.azurite import REPO_ROOT, free_port

SAMPLE = Path(__file__).parent / "sample_app"
NEVER = "0 0 0 1 1 *"  # midnight on January 1st: never due while a test runs


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class Hosted:
    proc: subprocess.Popen
    port: int
    out: Path
    log: Path
    queue: QueueClient
    poison: QueueClient

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/sample"

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def records(self, kind: str) -> list[dict]:
        if not self.out.exists():
            return []
        return [r for r in map(json.loads, self.out.read_text().splitlines()) if r["kind"] == kind]

    def values(self, kind: str = "queue") -> list[str]:
        return [r["value"] for r in self.records(kind)]

    def wait(self, check: Callable[[], object], timeout: float = 20, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}\n--- host log ---\n{self.text()[-4000:]}")
            time.sleep(0.05)

    def send(self, text: str, encode: bool = True) -> None:
        self.queue.send_message(b64(text) if encode else text)

    def poisoned(self) -> list[str]:
        try:
            return [m.content for m in self.poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:  # created on first use, as the real host does
            return []

    def queue_length(self) -> int:
        return self.queue.get_queue_properties().approximate_message_count

    def started(self) -> int:
        return self.text().count("Host started (instance")


@pytest.fixture
def devhost(azurite, unique_name, tmp_path) -> Iterator[Callable[..., Hosted]]:
    """start(*args, app_dir=, schedule=, env=, instances=) -> a running host (or supervisor)."""
    procs: list[subprocess.Popen] = []
    out = tmp_path / "out.jsonl"
    settings = tmp_path / "local.settings.json"
    # The file points storage at the default emulator ports; the environment (Azurite) must win.
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {
        "FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "SAMPLE_QUEUE": unique_name, "SAMPLE_OUT": str(out), "SAMPLE_SCHEDULE": NEVER,
    }}))  # fmt: skip
    queue = QueueClient.from_connection_string(azurite.connection_string, unique_name)
    poison = QueueClient.from_connection_string(azurite.connection_string, unique_name + "-poison")

    def start(
        *args: str,
        app_dir: Path = SAMPLE,
        schedule: str | None = None,
        env: dict[str, str | None] | None = None,
        instances: int = 1,
    ) -> Hosted:
        port = free_port()
        log = tmp_path / f"host-{len(procs)}.log"
        environ = {
            **os.environ,
            "AzureWebJobsStorage": azurite.connection_string,
            "AzureFunctionsWebHost__hostid": unique_name,
            "PYTHON_THREADPOOL_THREAD_COUNT": "16",
            "PYTHONUNBUFFERED": "1",
        }
        if schedule:
            environ["SAMPLE_SCHEDULE"] = schedule
        for key, value in (env or {}).items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        command = [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(port),
                   "--settings", str(settings), *args]  # fmt: skip
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        procs.append(proc)
        hosted = Hosted(proc, port, out, log, queue, poison)
        hosted.wait(lambda: hosted.started() >= instances or proc.poll() is not None, 40, "the host to start")
        assert proc.poll() is None, hosted.text()
        return hosted

    yield start
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for client in (queue, poison):
        with contextlib.suppress(ResourceNotFoundError):
            client.delete_queue()
        client.close()
