"""How long a bulk redrive takes: dead-letter N jobs, then `POST /api/jobs/retry` with a filter,
and time until the operation has redriven them all (the local host, Azurite in memory).

    python -m bench.bulk --jobs 1000 [--runs 3] [--instances 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import requests

from bench.pipeline import on_fresh_hosts
from bench.results import report


def dead_letter(base: str, n: int) -> None:
    for start in range(0, n, 100):
        jobs = [{"type": "fail", "max_attempts": 1, "payload": {"n": i}} for i in range(start, min(n, start + 100))]
        r = requests.post(f"{base}/jobs/batch", json={"jobs": jobs}, timeout=60)
        r.raise_for_status()
    deadline = time.monotonic() + 300
    while count(base, "dead_lettered") < n:
        if time.monotonic() > deadline:
            raise RuntimeError("the jobs did not all dead-letter in 300 s")
        time.sleep(1)


def count(base: str, status: str) -> int:
    total, token = 0, None
    while True:
        params = {"status": status, "limit": 200, **({"continuation": token} if token else {})}
        page = requests.get(f"{base}/jobs", params=params, timeout=60).json()
        total += len(page["jobs"])
        token = page["continuation"]
        if not token:
            return total


def redrive(base: str, n: int) -> dict[str, float]:
    started = time.monotonic()
    r = requests.post(f"{base}/jobs/retry", json={"filter": {"status": "dead_lettered"}}, timeout=60)
    accepted = time.monotonic() - started
    r.raise_for_status()
    location = r.headers["Location"].removeprefix("/api")
    while True:
        op = requests.get(f"{base}{location}", timeout=60).json()
        if op["status"] != "running":
            break
        time.sleep(0.2)
    seconds = time.monotonic() - started
    if (op["status"], op["applied"]) != ("succeeded", n):
        raise RuntimeError(f"the operation ended {op}")
    return {"seconds": round(seconds, 2), "accepted_in_s": round(accepted, 3), "jobs_per_s": round(n / seconds, 1)}


def dead_letter_then_redrive(base: str, n: int) -> dict[str, float]:
    dead_letter(base, n)
    return redrive(base, n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    runs = on_fresh_hosts(
        args.runs, args.instances, lambda base: (dead_letter(base, args.jobs), redrive(base, args.jobs))[1]
    )
    summary = {
        "jobs": args.jobs,
        "instances": args.instances,
        "runs": runs,
        "median_seconds": statistics.median(r["seconds"] for r in runs),
    }
    report(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
