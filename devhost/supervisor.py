"""`--instances N`: N host processes on the same storage and port, as a scaled-out app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def supervise(args: list[str], instances: int, restart: bool) -> int:
    def spawn(index: int) -> subprocess.Popen:
        env = {**os.environ, "DEVHOST_INSTANCE": str(index)}
        return subprocess.Popen([sys.executable, "-m", "devhost", *args, "--instance", str(index)], env=env)

    children = [spawn(i) for i in range(instances)]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        for i, child in enumerate(children):
            code = child.poll()
            if code is not None and not stopping:
                print(f"Instance {i} (pid {child.pid}) exited with {code}" + ("; restarting" if restart else ""),
                      flush=True)  # fmt: skip
                if restart:
                    children[i] = spawn(i)
        if not restart and all(c.poll() is not None for c in children):
            break
        time.sleep(0.2)
    codes = [child.wait() for child in children]
    return 0 if stopping else max(codes)
