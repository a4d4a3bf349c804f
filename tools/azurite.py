"""Start and stop Azurite, the Azure Storage emulator, from the npm package pinned in package.json.

Used by `make run` and by the tests, which each start their own instance on free ports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# The emulator's well-known development account: public, documented by Microsoft, not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def connection_string(blob_port: int, queue_port: int, table_port: int, host: str = "127.0.0.1") -> str:
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{DEV_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{DEV_ACCOUNT};"
    )


PORT_TRIES = 3


class AzuriteExited(RuntimeError):
    """Azurite stopped before it opened its ports (most often: one of them was taken)."""


@dataclass
class Azurite:
    """A running Azurite process. `location=None` keeps everything in memory."""

    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    location: str | None = None
    log_path: str | None = None
    access_log: bool = False  # one line per request in log_path (bench counts transactions from it)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.queue_port, self.table_port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def ports(self) -> tuple[int, int, int]:
        return (self.blob_port, self.queue_port, self.table_port)

    def start(self, timeout: float = 30.0) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"Azurite is not installed: run `npm ci` in {REPO_ROOT.name}/ first")
        chosen_here = not any(self.ports)
        for tries_left in reversed(range(PORT_TRIES)):
            try:
                return self._start(timeout)
            except AzuriteExited:
                if not chosen_here or not tries_left:
                    raise
                # A free port can be taken by another process between free_port() and Azurite's
                # bind (tests start many servers at once): pick new ones.
                self.blob_port = self.queue_port = self.table_port = 0
        raise AssertionError("unreachable: the last try returns or raises")

    def _start(self, timeout: float) -> Azurite:
        self.blob_port = self.blob_port or free_port()
        self.queue_port = self.queue_port or free_port()
        self.table_port = self.table_port or free_port()
        args = [
            str(AZURITE_BIN),
            "--disableTelemetry",
            *([] if self.access_log else ["--silent"]),
            "--skipApiVersionCheck",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]  # fmt: skip
        if self.location:
            Path(self.location).mkdir(parents=True, exist_ok=True)
            args += ["--location", self.location]
            cwd = self.location
        else:
            # In memory, capped so a long test run cannot take half the machine's RAM.
            args += ["--inMemoryPersistence", "--extentMemoryLimit", "512"]
            cwd = tempfile.gettempdir()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - outlives this call
        self.proc = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not all(port_open("127.0.0.1", p) for p in self.ports):
            if self.proc.poll() is not None:
                raise AzuriteExited(f"Azurite exited with code {self.proc.returncode} on start")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("Azurite did not open its ports in time")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
