"""`--instances N`: N host processes on the same storage and port, as a scaled-out app. The
supervisor starts them, reports (or with --restart replaces) one that dies, and stops them all on
SIGINT/SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

STOP_GRACE_SECONDS = 15.0  # a child's own drain is 10 s
RESTART_DELAY_SECONDS = 1.0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies (Linux), so no host is orphaned."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"


class Supervisor:
    def __init__(self, host_args: list[str], instances: int, restart: bool) -> None:
        self.host_args = host_args
        self.restart = restart
        self.children: list[subprocess.Popen[bytes] | None] = [None] * instances
        self.restart_at: dict[int, float] = {}
        self.reported: set[int] = set()  # exited, reported, not restarted
        self.stopping = False

    def spawn(self, index: int) -> None:
        env = {**os.environ, "DEVHOST_INSTANCE": str(index)}
        child = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "devhost", *self.host_args, "--instance", str(index)],
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - the supervisor is single-threaded
        )
        self.children[index] = child
        print(f"Started instance {index} (pid {child.pid})", flush=True)

    def request_stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        print(f"Supervisor (pid {os.getpid()}) starting {len(self.children)} instances", flush=True)
        for index in range(len(self.children)):
            self.spawn(index)
        while not self.stopping:
            self._check_children()
            if not self.restart and all(c is None or c.poll() is not None for c in self.children):
                break
            time.sleep(0.1)
        return self._stop_all()

    def _check_children(self) -> None:
        now = time.monotonic()
        for index, child in enumerate(self.children):
            if child is None:
                if index in self.restart_at and now >= self.restart_at[index]:
                    del self.restart_at[index]
                    self.spawn(index)
                continue
            code = child.poll()
            if code is None or index in self.reported:
                continue
            print(f"Instance {index} (pid {child.pid}) exited with {_describe(code)}"
                  + ("; restarting it" if self.restart else ""), flush=True)  # fmt: skip
            if self.restart:
                self.children[index] = None
                self.restart_at[index] = now + RESTART_DELAY_SECONDS
            else:
                self.reported.add(index)

    def _stop_all(self) -> int:
        running = [c for c in self.children if c is not None and c.poll() is None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        codes = []
        for child in running:
            try:
                codes.append(child.wait(timeout=max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                child.kill()
                codes.append(child.wait())
        if self.stopping:
            return 0 if all(code == 0 for code in codes) else 1
        finished = [c.returncode for c in self.children if c is not None]
        return 0 if all(code == 0 for code in finished) else 1


def supervise(host_args: list[str], instances: int, restart: bool) -> int:
    return Supervisor(host_args, instances, restart).run()
