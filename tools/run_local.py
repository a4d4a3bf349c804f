"""`make run`: use the storage the settings point at if it answers, else start Azurite there
(in memory), then run the function app under the local host on http://localhost:7071.

Ctrl-C stops the host and, if we started it, Azurite. If that Azurite dies, the host is stopped
too and we say so: every request would otherwise answer 503 with no hint why. Storage we did not
start is only watched: a warning when it stops answering, and another when it is back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from urllib.parse import urlparse

from tools.azurite import REPO_ROOT, Azurite, port_open

DEV_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
WATCH_SECONDS = 2.0


def storage_ports(connection: str) -> dict[str, tuple[str, int]]:
    """Where the connection string points, per service (the emulator's defaults for the shortcut)."""
    if connection.strip().rstrip(";") == "UseDevelopmentStorage=true":
        return {s: ("127.0.0.1", p) for s, p in DEV_PORTS.items()}
    parts = dict(p.split("=", 1) for p in connection.split(";") if "=" in p)
    out = {}
    for service in DEV_PORTS:
        url = parts.get(f"{service.capitalize()}Endpoint")
        if url:
            u = urlparse(url)
            out[service] = (u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--settings", default="local.settings.json")
    args = parser.parse_args()

    settings_path = REPO_ROOT / args.settings
    values = json.loads(settings_path.read_text()).get("Values", {}) if settings_path.exists() else {}
    connection = os.environ.get("AzureWebJobsStorage") or values.get("AzureWebJobsStorage", "")
    endpoints = storage_ports(connection)
    azurite = None
    if endpoints and all(port_open(h, p) for h, p in endpoints.values()):
        print(f"Storage already answers at {sorted(p for _, p in endpoints.values())}: using it.", flush=True)
    elif endpoints and all(h in ("127.0.0.1", "localhost") for h, _ in endpoints.values()):
        print("Starting Azurite (in memory)...", flush=True)
        azurite = Azurite(
            blob_port=endpoints["blob"][1], queue_port=endpoints["queue"][1], table_port=endpoints["table"][1]
        ).start()
        print(f"Azurite is up (pid {azurite.pid}).", flush=True)
    else:
        print("AzureWebJobsStorage does not point at a local emulator that answers.", file=sys.stderr)
        return 1

    host = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devhost",
            "--app-dir",
            str(REPO_ROOT),
            "--port",
            str(args.port),
            "--settings",
            str(settings_path),
        ],
        cwd=REPO_ROOT,
    )
    # Ctrl-C reaches the host too (same process group); we only wait for it to finish.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: host.send_signal(signal.SIGTERM))
    try:
        code = watch(host, azurite, endpoints)
    finally:
        if azurite is not None:
            print("Stopping Azurite...", flush=True)
            azurite.stop()
    return 0 if code in (0, -signal.SIGINT, -signal.SIGTERM) else code


def watch(host: subprocess.Popen, azurite: Azurite | None, endpoints: dict[str, tuple[str, int]]) -> int:
    """Wait for the host to exit; stop it (exit 1) if the Azurite we started exits first."""
    answering = True
    while True:
        try:
            return host.wait(timeout=WATCH_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        if azurite is not None and azurite.proc is not None and azurite.proc.poll() is not None:
            print(
                f"Azurite exited (code {azurite.proc.returncode}) while the app was running: stopping the host. "
                "Run `make run` again to start both.",
                file=sys.stderr,
                flush=True,
            )
            host.send_signal(signal.SIGTERM)
            try:
                host.wait(timeout=15)
            except subprocess.TimeoutExpired:
                host.kill()
                host.wait()
            return 1
        if azurite is None:
            now = all(port_open(h, p) for h, p in endpoints.values())
            if now != answering:
                answering = now
                note = (
                    "Storage answers again (if it kept its data in memory, its tables and queues are gone:"
                    " restart `make run` if /api/health says so)."
                    if now
                    else "Storage stopped answering: requests fail until it is back."
                )
                print(note, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
