"""What a priority buys: a backlog of normal jobs, then high-priority jobs submitted after it,
and each group's queue wait (due time to claim) as the job records state it.

    python -m bench.priority [--backlog 2000] [--high 50] [--runs 3] [--instances 1]

Each priority has its own queue and trigger, so the high jobs should not wait behind the backlog:
the issue asks for their p95 wait to be at least 5 times lower than the backlog's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from typing import Any

import requests

from bench.pipeline import on_fresh_hosts, percentiles
from bench.results import report


def submit(base: str, jobs: list[dict[str, Any]]) -> list[str]:
    ids = []
    for start in range(0, len(jobs), 100):
        r = requests.post(f"{base}/jobs/batch", json={"jobs": jobs[start : start + 100]}, timeout=60)
        r.raise_for_status()
        ids += [j["id"] for j in r.json()["jobs"]]
    return ids


def finished(base: str, ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Every job's record once all have succeeded (the listing, 200 a page)."""
    wanted, deadline = set(ids), time.monotonic() + timeout
    while True:
        jobs, token = [], None
        while True:
            params = {"status": "succeeded", "limit": 200, **({"continuation": token} if token else {})}
            page = requests.get(f"{base}/jobs", params=params, timeout=60).json()
            jobs += [j for j in page["jobs"] if j["id"] in wanted]
            token = page["continuation"]
            if not token:
                break
        if len(jobs) == len(wanted):
            return jobs
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(jobs)} of {len(wanted)} jobs succeeded in {timeout:.0f} s")
        time.sleep(1)


def waits_ms(jobs: list[dict[str, Any]]) -> list[float]:
    return [
        (datetime.fromisoformat(j["started_at"]) - datetime.fromisoformat(j["due_at"])).total_seconds() * 1000
        for j in jobs
    ]


def one_run(base: str, backlog: int, high: int) -> dict[str, Any]:
    normal_ids = submit(base, [{"type": "echo", "payload": n} for n in range(backlog)])
    high_ids = submit(base, [{"type": "echo", "payload": n, "priority": "high"} for n in range(high)])
    jobs = finished(base, normal_ids + high_ids, timeout=600)
    by_id = {j["id"]: j for j in jobs}
    normal = percentiles(waits_ms([by_id[i] for i in normal_ids]))
    urgent = percentiles(waits_ms([by_id[i] for i in high_ids]))
    return {"normal_wait_ms": normal, "high_wait_ms": urgent,
            "p95_ratio": round(normal["p95"] / max(urgent["p95"], 1.0), 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=2000, help="normal jobs submitted first")
    parser.add_argument("--high", type=int, default=50, help="high-priority jobs submitted after them")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    runs = on_fresh_hosts(args.runs, args.instances, lambda base: one_run(base, args.backlog, args.high))
    summary = {
        "backlog": args.backlog,
        "high": args.high,
        "instances": args.instances,
        "runs": runs,
        "median_normal_p95_ms": statistics.median(r["normal_wait_ms"]["p95"] for r in runs),
        "median_high_p95_ms": statistics.median(r["high_wait_ms"]["p95"] for r in runs),
        "median_p95_ratio": statistics.median(r["p95_ratio"] for r in runs),
    }
    report(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
