"""Jobs/s through the whole pipeline against the raw storage calls those jobs need, in one run.

    python -m bench.pipeline --jobs 500 --concurrency 16 --runs 3

1. ceiling: the SDK alone makes exactly the calls one job costs (insert, put, receive in
   batches of 16, conditional claim, conditional result write, delete) at the same concurrency;
2. pipeline: the same number of `echo` jobs submitted over HTTP to the local host (one
   instance) and run by its queue trigger, timed from the first submit to the last success;
3. idle latency: one job on an idle host, submit to success (maxPollingInterval dominates).
Everything runs against one Azurite on loopback started here, bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from azure.core import MatchConditions
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from tools.azurite import REPO_ROOT, Azurite, free_port

BATCH = 16


def raw_ceiling(conn: str, jobs: int, concurrency: int) -> float:
    """Jobs/s when the SDK makes exactly the calls our pipeline makes for one job (insert, put,
    receive in batches, conditional claim, conditional result, delete), with no app in between."""
    name = "raw" + uuid.uuid4().hex[:10]
    table = TableClient.from_connection_string(conn, name)
    queue = QueueClient.from_connection_string(conn, name)
    table.create_table()
    queue.create_queue()
    payload = json.dumps({"n": 1})

    def submit(i: int) -> None:
        keys = {"PartitionKey": f"p{i % 4:02d}", "RowKey": f"{i:023d}"}
        meta = table.create_entity({**keys, "status": "queued", "payload": payload, "attempt": 1})
        queue.send_message(json.dumps({"id": i, "attempt": 1, "etag": meta["etag"], "payload": payload}))

    completed = 0
    lock = threading.Lock()

    def work(message) -> None:
        nonlocal completed
        i = json.loads(message.content)["id"]
        keys = {"PartitionKey": f"p{i % 4:02d}", "RowKey": f"{i:023d}"}
        etag = json.loads(message.content)["etag"]
        meta = table.update_entity(
            {**keys, "status": "running"},
            mode=UpdateMode.MERGE,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )
        table.update_entity(
            {**keys, "status": "succeeded", "result": payload},
            mode=UpdateMode.MERGE,
            etag=meta["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
        queue.delete_message(message)
        with lock:
            completed += 1

    deadline = time.monotonic() + 300
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as submitters, ThreadPoolExecutor(BATCH) as workers:
        submits = [submitters.submit(submit, i) for i in range(jobs)]
        in_flight: list = []
        while completed < jobs:
            if time.monotonic() > deadline:
                raise RuntimeError("raw ceiling run did not finish in time")
            for f in in_flight:
                if f.done() and f.exception():
                    raise f.exception()
            in_flight = [f for f in in_flight if not f.done()]
            if len(in_flight) > BATCH // 2:  # fetch more when half the batch is done, as the host does
                time.sleep(0.002)
                continue
            batch = list(next(queue.receive_messages(messages_per_page=BATCH).by_page(), []))
            if not batch:
                time.sleep(0.01)
                continue
            in_flight += [workers.submit(work, m) for m in batch]
        for f in submits:
            f.result()
    elapsed = time.perf_counter() - start
    table.delete_table()
    queue.delete_queue()
    return jobs / elapsed


class LocalHost:
    """The function app under devhost, on its own queue and table names."""

    def __init__(self, conn: str, log: Path) -> None:
        self.name = "bench" + uuid.uuid4().hex[:8]
        self.port = free_port()
        self.env = {
            **os.environ,
            "AzureWebJobsStorage": conn,
            "JOBS_QUEUE_NAME": self.name,
            "JOBS_TABLE_NAME": self.name,
            "JOBS_CONTAINER_NAME": self.name,
            "AzureFunctionsWebHost__hostid": self.name,
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devhost",
                "--app-dir",
                str(REPO_ROOT),
                "--port",
                str(self.port),
                "--settings",
                str(REPO_ROOT / "local.settings.json.example"),
            ],  # the defaults; env wins
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}/api"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host did not start; see {log}")
            time.sleep(0.2)
        self.table = TableClient.from_connection_string(conn, self.name)

    def succeeded(self) -> int:
        rows = self.table.query_entities("status eq 'succeeded'", select=["RowKey"])
        return sum(1 for _ in rows)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def pipeline(host: LocalHost, jobs: int, concurrency: int, timeout: float = 300) -> float:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=concurrency, pool_maxsize=concurrency)
    session.mount("http://", adapter)
    base_done = host.succeeded()

    def submit(i: int) -> None:
        r = session.post(f"{host.base}/jobs", json={"type": "echo", "payload": {"n": i}}, timeout=30)
        r.raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(submit, range(jobs)))
    deadline = time.monotonic() + timeout
    while host.succeeded() - base_done < jobs:
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not finish in time")
        time.sleep(0.05)
    return jobs / (time.perf_counter() - start)


def idle_latency(host: LocalHost, samples: int = 5, settle: float = 5.0) -> float:
    """Median submit-to-success time of one job on an idle host. The queue listener has backed
    off to maxPollingInterval (2 s in host.json), which dominates: expect 0.1 to 2 s."""
    times = []
    for _ in range(samples):
        time.sleep(settle)
        start = time.perf_counter()
        job = requests.post(f"{host.base}/jobs", json={"type": "echo", "payload": 1}, timeout=10).json()
        while requests.get(f"{host.base}/jobs/{job['id']}", timeout=10).json()["status"] != "succeeded":
            time.sleep(0.02)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    results: dict[str, list[float]] = {
        "ceiling_jobs_per_s": [],
        "pipeline_jobs_per_s": [],
        "ratio": [],
        "idle_latency_s": [],
    }
    with tempfile.TemporaryDirectory() as tmp, Azurite() as azurite:
        host = LocalHost(azurite.connection_string, Path(tmp) / "host.log")
        try:
            for run in range(args.runs):
                ceiling = raw_ceiling(azurite.connection_string, args.jobs, args.concurrency)
                ours = pipeline(host, args.jobs, args.concurrency)
                latency = idle_latency(host)
                results["ceiling_jobs_per_s"].append(ceiling)
                results["pipeline_jobs_per_s"].append(ours)
                results["ratio"].append(ours / ceiling)
                results["idle_latency_s"].append(latency)
                print(
                    f"run {run + 1}: ceiling {ceiling:.1f} jobs/s, pipeline {ours:.1f} jobs/s "
                    f"({ours / ceiling:.0%}), idle latency {latency:.2f} s",
                    flush=True,
                )
        finally:
            host.stop()
    summary = {k: round(statistics.median(v), 3) for k, v in results.items()}
    summary.update(jobs=args.jobs, concurrency=args.concurrency, runs=args.runs, cpus=os.cpu_count())
    print(json.dumps(summary, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
