"""Host CPU per job: the host process's own CPU time (user + system, from /proc) while it accepts
N submits, then while it runs those N jobs, divided by N. CPU time drifts far less than wall time
on a shared machine, so this is the figure to compare versions with.

    python -m bench.cpu [--jobs 1000] [--runs 3] [--type echo]

The jobs are submitted with a delay so they all fall due together after the submits are done:
the two phases do not overlap. One host instance (one process), Azurite in memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.pipeline import LocalHosts, cpu_seconds
from bench.results import report
from tools.azurite import REPO_ROOT, Azurite


def one_run(
    conn: str, jobs: int, job_type: str, concurrency: int, folder: Path, app_dir: Path = REPO_ROOT
) -> dict[str, float]:
    hosts = LocalHosts(conn, 1, folder, app_dir)
    try:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
        session.mount("http://", adapter)
        for i in range(20):  # warm up: imports, clients, connection pools
            session.post(f"{hosts.base}/jobs", json={"type": job_type, "payload": {"n": i}}, timeout=60)
        while hosts.any_unfinished():
            time.sleep(0.2)
        time.sleep(3)
        # Every job falls due at the same moment, well after the last submit.
        due = time.time() + 15 + jobs / 40

        def submit(i: int) -> None:
            body = {"type": job_type, "payload": {"n": i}, "delay_seconds": max(0.0, due - time.time())}
            r = session.post(f"{hosts.base}/jobs", json=body, timeout=120)
            r.raise_for_status()

        pid = hosts.proc.pid  # --instances 1: the host is this process itself
        before = cpu_seconds(pid)
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(submit, range(jobs)))
        submit_cpu = cpu_seconds(pid) - before
        if time.time() > due - 2:
            raise RuntimeError("the submits took longer than the delay: raise it")
        time.sleep(max(0.0, due - time.time() - 1))
        before = cpu_seconds(pid)
        started = time.monotonic()
        while hosts.any_unfinished():
            if time.monotonic() - started > 600:
                raise RuntimeError("the jobs did not finish in 600 s")
            time.sleep(0.5)
        run_cpu = cpu_seconds(pid) - before
        return {
            "submit_cpu_ms_per_job": round(submit_cpu * 1000 / jobs, 3),
            "run_cpu_ms_per_job": round(run_cpu * 1000 / jobs, 3),
            "run_seconds": round(time.monotonic() - started, 1),
        }
    finally:
        hosts.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--type", default="echo")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--app-dir", default=str(REPO_ROOT), help="the function app to run (another checkout)")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            with Azurite() as azurite:  # fresh per run: the emulator slows as it fills
                result = one_run(
                    azurite.connection_string, args.jobs, args.type, args.concurrency, Path(tmp), Path(args.app_dir)
                )
            print(f"run {run + 1}: {result}", flush=True)
            runs.append(result)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "jobs": args.jobs,
        "type": args.type,
        "runs": runs,
        "median": {k: statistics.median(r[k] for r in runs) for k in runs[0]},
    }
    report(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
