"""A type with a concurrency limit, drained by local hosts: how long it took, how busy its slots
were, and what waiting cost in storage calls.

    python -m bench.flow [--jobs 50] [--limit 2] [--seconds 0.2] [--instances 3] [--runs 3]
                         [--raise-to N --raise-after S]

It sets the `sleep` type's limit over the API, waits until every instance has seen it, submits
`--jobs` sleep jobs at once and waits until all have succeeded. Reported per run: the drain time
(first start to last finish), the slots' busy fraction (the jobs' running time over limit x drain
time), the median gap between one start and the next, and the storage calls per job counted from
Azurite's access log, less the hosts' idle polling (measured just before) and the bench's own
reads. `--app-dir` runs another checkout's app, to compare two versions.

With `--raise-to N`, the limit is raised to N through the API `--raise-after` seconds after the
submit, and the run also reports how long after that request N jobs were running at once.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from bench.pipeline import AccessLog, LocalHosts
from bench.priority import submit
from bench.results import report
from shared.flow.settings import CACHE_SECONDS
from tools.azurite import REPO_ROOT, Azurite

IDLE_SECONDS = 5.0


def one_run(
    log_path: Path,
    hosts: LocalHosts,
    jobs: int,
    limit: int,
    seconds: float,
    raise_to: int | None = None,
    raise_after: float = 3.0,
) -> dict:
    r = requests.patch(f"{hosts.base}/types/sleep", json={"max_concurrency": limit}, timeout=30)
    r.raise_for_status()
    time.sleep(CACHE_SECONDS + 0.5)  # every instance has read the new limit
    log = AccessLog(log_path, hosts.names)
    offset = log.mark()
    time.sleep(IDLE_SECONDS)
    idle_per_second = sum(log.count_since(offset).values()) / IDLE_SECONDS

    offset, started = log.mark(), time.monotonic()
    hosts.counter.calls = 0
    submit(hosts.base, [{"type": "sleep", "payload": {"seconds": seconds}}] * jobs)
    raised_at = None
    if raise_to is not None:
        time.sleep(raise_after)
        raised_at = time.time()
        r = requests.patch(f"{hosts.base}/types/sleep", json={"max_concurrency": raise_to}, timeout=30)
        r.raise_for_status()
    deadline = started + 600
    while hosts.any_unfinished():
        if time.monotonic() > deadline:
            raise RuntimeError("the jobs did not all finish in 10 minutes")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    counts = log.count_since(offset)
    counts["table"] -= hosts.counter.calls  # the bench's own polling
    records = hosts.records()
    runs = sorted((_at(j["started_at"]), _at(j["finished_at"])) for j in records)
    drain = runs[-1][1] - runs[0][0]
    busy = sum(end - begin for begin, end in runs)
    starts = [begin for begin, _ in runs]
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    idle_calls = idle_per_second * elapsed
    total = sum(counts.values()) - idle_calls
    extra = {}
    if raise_to is not None and raised_at is not None:
        extra = {"raise_reached_s": _reached(runs, raised_at, raise_to), "woken_by_raise": r.json().get("woken")}
    return {
        **extra,
        "drain_s": round(drain, 2),
        "slots_busy": round(busy / (limit * drain), 3) if raise_to is None else None,  # no single limit to weigh it by
        "median_start_gap_s": round(statistics.median(gaps), 3),
        "calls_per_job": round(total / jobs, 2),
        "by_kind_per_job": {k: round(v / jobs, 2) for k, v in sorted(counts.items())},
        "idle_calls_per_s": round(idle_per_second, 1),
    }


def _reached(runs: list[tuple[float, float]], since: float, count: int) -> float | None:
    """Seconds from `since` to the first start after it at which `count` jobs ran at once."""
    for begin, _ in runs:
        if begin >= since and sum(1 for b, e in runs if b <= begin < e) >= count:
            return round(begin - since, 2)
    return None


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--limit", type=int, default=2, help="the sleep type's max_concurrency")
    parser.add_argument("--seconds", type=float, default=0.2, help="how long each job sleeps")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--raise-to", type=int, default=None, help="raise the limit to this mid-run")
    parser.add_argument("--raise-after", type=float, default=3.0, help="seconds after the submit")
    parser.add_argument("--app-dir", default=str(REPO_ROOT), help="the function app the hosts run")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            log_path = Path(tmp) / f"azurite-{run}.log"
            with Azurite(log_path=str(log_path), access_log=True) as azurite:
                hosts = LocalHosts(azurite.connection_string, args.instances, Path(tmp), Path(args.app_dir))
                try:
                    result = one_run(log_path, hosts, args.jobs, args.limit, args.seconds, args.raise_to,
                                     args.raise_after)  # fmt: skip
                finally:
                    hosts.stop()
            print(f"run {run + 1}: {result}", flush=True)
            results.append(result)
    summary = {
        "jobs": args.jobs, "limit": args.limit, "seconds": args.seconds, "instances": args.instances,
        "runs": results,
        **{f"median_{k}": statistics.median(r[k] for r in results)
           for k in ("drain_s", "slots_busy", "median_start_gap_s", "calls_per_job", "raise_reached_s")
           if all(r.get(k) is not None for r in results)},
    }  # fmt: skip
    report(summary, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
