"""`make bench`: the job pipeline on this machine, against Azurite on loopback, side by side with
the raw storage calls it needs.

    python -m bench.pipeline [--jobs 2000] [--instances 1,3] [--runs 3] [--concurrency 16]

For each number of host instances and each workload (`echo`, and a `mix` with sleep, retry and
dead-letter), it submits the jobs over HTTP from a concurrent client, waits until every one is
finished, and reports jobs/s end to end, submit requests/s, p50/p95/p99 of submit-to-done and of
queue wait (from the records' timestamps), and storage transactions per job by kind, counted
exactly from Azurite's own access log (one line per request; the bench's own polling is
subtracted). In the same run it measures the ceiling (`bench/raw.py`): the SDK alone making
exactly the calls one job costs at the same concurrency, and the same calls with the submit behind
a bare HTTP endpoint fed by the same client; `fraction_of_ceiling` and `fraction_of_http_ceiling`
are each run's echo jobs/s over that run's ceilings. Each measurement gets a fresh Azurite, warmed
up (see `warm_azurite`). Also the time of one job on an idle host, which the queue trigger's
maxPollingInterval (1 s) dominates. Medians of `--runs`; figures to JSON and a PNG.

The client, the hosts and Azurite share the machine's cores, so each figure comes with the CPU
time per job of each process (`cpu_ms_per_job`: `hosts`, `azurite`, and `bench`, the client
itself), for the pipeline and for the ceiling. `--app-dir` runs another checkout's app under this
bench, to compare two versions with the same client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import requests
from azure.core.exceptions import AzureError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.data.tables import TableClient

from bench.raw import raw_ceiling, raw_ceiling_async
from tools.azurite import REPO_ROOT, Azurite, free_port

TERMINAL = ("succeeded", "dead_lettered", "cancelled")
OUT = REPO_ROOT / "bench" / "out"
TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU time per process: the client, the hosts and Azurite share the machine's cores ----------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its children (a supervisor and its host instances)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            fields = tail.split()
            if int(stat.parent.name) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / TICKS
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total


def own_cpu_seconds() -> float:
    """This process's CPU, every thread included: the bench's own client."""
    times = os.times()
    return times.user + times.system


class CpuMeter:
    """CPU ms per job of each process taking part, over one measured stretch."""

    def __init__(self, azurite_pid: int | None, hosts_pid: int | None = None) -> None:
        self.pids = {"azurite": azurite_pid, "hosts": hosts_pid}
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        out = {"bench": own_cpu_seconds()}
        for name, pid in self.pids.items():
            if pid is not None:
                out[name] = tree_cpu_seconds(pid) if name == "hosts" else cpu_seconds(pid)
        return out

    def per_job(self, jobs: int) -> dict[str, float]:
        end = self._read()
        return {k: round((end[k] - self.start[k]) * 1000 / jobs, 2) for k in end}


# --- the ceiling: raw SDK calls ----------------------------------------------------------------


def queue_concurrency(app_dir: Path) -> tuple[int, int]:
    """(batchSize, newBatchThreshold) of the app's host.json: the ceiling keeps as many messages in
    flight as the host does, so the two are compared at the same concurrency."""
    from devhost.settings import load_host_json

    queues = load_host_json(app_dir).queues
    return queues.batch_size, queues.new_batch_threshold


def raw_over_http(
    conn: str, jobs: int, concurrency: int, batch: int, threshold: int, azurite_pid: int | None
) -> tuple[float, dict[str, float]]:
    """Jobs/s and CPU ms per job of the ceiling's calls with the submit behind a bare HTTP endpoint
    in its own process (`bench.raw`), submitted by this bench's client as the pipeline is."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.raw", "--port", str(port), "--batch", str(batch), "--threshold", str(threshold)],
        cwd=REPO_ROOT, env={**os.environ, "AzureWebJobsStorage": conn}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the raw HTTP ceiling did not start")
        base = f"http://127.0.0.1:{port}/api"
        meter = CpuMeter(azurite_pid, proc.pid)
        start = time.time()
        submit_all(base, [{"n": i} for i in range(jobs)], concurrency)
        deadline = time.monotonic() + 300
        while (done := requests.get(f"{base}/done", timeout=10).json())["completed"] < jobs:
            if time.monotonic() > deadline:
                raise RuntimeError("raw HTTP ceiling run did not finish in time")
            time.sleep(0.05)
        return jobs / (done["last_done"] - start), meter.per_job(jobs)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- counting transactions from Azurite's access log -------------------------------------------


class AccessLog:
    """Azurite writes `"METHOD /account/<resource>... HTTP/1.1" status` per request."""

    def __init__(self, path: Path, names: dict[str, str]) -> None:
        self.path = path
        queues = [names["queue"], f"{names['queue']}-high", f"{names['queue']}-low"]  # one per priority
        self.kinds = {
            **{q: "queue" for q in queues},
            **{f"{q}-poison": "queue" for q in queues},
            names["table"]: "table",
            "$batch": "table",
            "Tables": "table",
            names["container"]: "blob",
            "azure-webjobs-hosts": "blob",
        }

    def mark(self) -> int:
        return self.path.stat().st_size

    def count_since(self, offset: int) -> Counter[str]:
        counts: Counter[str] = Counter()
        with self.path.open("rb") as f:
            f.seek(offset)
            for raw in f:
                line = raw.decode(errors="replace")
                if '"' not in line or " HTTP/" not in line:
                    continue
                path = line.split('"')[1].split(" ")[1]
                parts = path.split("?")[0].split("/")
                resource = parts[2].split("(")[0] if len(parts) > 2 else ""
                counts[self.kinds.get(resource, "other")] += 1
        return counts


class CallCounter(SansIOHTTPPolicy):
    """The bench's own calls, to subtract them from Azurite's count."""

    def __init__(self) -> None:
        self.calls = 0

    def on_request(self, request: Any) -> None:
        self.calls += 1


# --- the pipeline: local hosts over HTTP -------------------------------------------------------


class LocalHosts:
    def __init__(self, conn: str, instances: int, folder: Path, app_dir: Path = REPO_ROOT) -> None:
        token = uuid.uuid4().hex[:8]
        self.names = {"queue": f"qbench{token}", "table": f"tbench{token}", "container": f"cbench{token}"}
        self.port = free_port()
        env = {
            **os.environ, "AzureWebJobsStorage": conn, "JOBS_QUEUE_NAME": self.names["queue"],
            "JOBS_TABLE_NAME": self.names["table"], "JOBS_CONTAINER_NAME": self.names["container"],
            "AzureFunctionsWebHost__hostid": f"bench{token}",
        }  # fmt: skip
        log = (folder / f"hosts-{token}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(app_dir), "--port", str(self.port),
             "--instances", str(instances), "--settings", str(app_dir / "local.settings.json.example")],
            cwd=app_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{self.port}/api"
        self.counter = CallCounter()
        self.table = TableClient.from_connection_string(conn, self.names["table"], per_retry_policies=[self.counter])
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hosts did not start; see {log.name}")
            time.sleep(0.2)
        time.sleep(1.0 + 0.5 * instances)  # every instance up and polling

    JOB_ROWS = "PartitionKey ge 'p' and PartitionKey lt 'q' and RowKey lt 'a'"

    def records(self) -> list[dict[str, Any]]:
        fields = ["status", "created_at", "finished_at", "started_at", "not_before"]
        return list(self.table.query_entities(self.JOB_ROWS, select=fields))

    def any_unfinished(self) -> bool:
        """Whether some job is not in a terminal state yet. Pages of one entity: a poll costs
        Azurite about 1.5 ms of CPU whatever is left, where counting every unfinished job cost it
        6.5 ms with 1,000 left (and the bench as much to parse them), on the cores the run shares."""
        query = self.JOB_ROWS + "".join(f" and status ne '{s}'" for s in TERMINAL)
        for page in self.table.query_entities(query, select=["status"], results_per_page=1).by_page():
            for _ in page:
                return True
        return False

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


def on_fresh_hosts(runs: int, instances: int, work: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """`work(base_url)` once per run, each on a fresh Azurite (its speed drifts as it fills) with
    `instances` local hosts; the results, printed as they come."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            with Azurite() as azurite:
                hosts = LocalHosts(azurite.connection_string, instances, Path(tmp))
                try:
                    result = work(hosts.base)
                finally:
                    hosts.stop()
            print(f"run {run + 1}: {result}", flush=True)
            results.append(result)
    return results


def workload(kind: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    if kind == "echo":
        return [{"type": "echo", "payload": {"n": i}} for i in range(n)]
    jobs = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.15:
            jobs.append({"type": "sleep", "payload": {"seconds": round(rng.uniform(0.2, 1.0), 2)}})
        elif roll < 0.25:
            jobs.append({"type": "fail", "payload": {"times": 1}, "max_attempts": 3})  # retried once
        elif roll < 0.30:
            jobs.append({"type": "fail", "max_attempts": 2})  # dead-lettered
        else:
            jobs.append({"type": "echo", "payload": {"n": i}})
    return jobs


def _ms(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() * 1000


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {
            "p50": values[0] if values else 0.0,
            "p95": values[0] if values else 0.0,
            "p99": values[0] if values else 0.0,
        }
    q = statistics.quantiles(values, n=100)
    return {"p50": round(q[49], 1), "p95": round(q[94], 1), "p99": round(q[98], 1)}


def submit_all(base: str, jobs: list[dict], concurrency: int) -> None:
    """POST every job from `concurrency` clients, each with its own keep-alive connection. They are
    tasks on one event loop rather than threads: the client shares the cores with the hosts and
    Azurite, and the ceiling has no client of this kind, so it should take as little CPU as it can."""

    async def run() -> None:
        todo = iter(jobs)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:

            async def client() -> None:
                for job in todo:
                    for _ in range(5):  # a 503 (storage did not answer) is retried, as a client should
                        async with session.post(f"{base}/jobs", json=job) as response:
                            text = await response.text()
                            if response.status != 503:
                                break
                            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    if response.status >= 400:
                        raise RuntimeError(f"submit failed: {response.status} {text[:300]}")

            await asyncio.gather(*(client() for _ in range(concurrency)))

    asyncio.run(run())


def run_workload(
    hosts: LocalHosts, log: AccessLog, jobs: list[dict], concurrency: int, azurite_pid: int | None = None
) -> dict[str, Any]:
    hosts.counter.calls = 0
    offset = log.mark()
    meter = CpuMeter(azurite_pid, hosts.proc.pid)
    start = time.perf_counter()
    started_at = datetime.now(UTC)
    submit_all(hosts.base, jobs, concurrency)
    submitted = time.perf_counter()
    deadline = time.monotonic() + 600
    # Every record exists once its submit answered: poll until none is left unfinished (Azurite
    # filters for us), then read them all once for the latencies and the time the last one ended.
    while hosts.any_unfinished():
        if time.monotonic() > deadline:
            raise RuntimeError("jobs did not finish in time")
        print(f"    {time.perf_counter() - start:.1f} s", end="\r", flush=True)
        time.sleep(0.1)
    cpu = meter.per_job(len(jobs))
    rows = hosts.records()
    counts = log.count_since(offset)
    counts["table"] -= hosts.counter.calls  # the bench's own polling
    # The run ends when the last job did, not at the poll that noticed it (up to 0.1 s later).
    elapsed = max(datetime.fromisoformat(r["finished_at"]) for r in rows if r.get("finished_at")) - started_at
    elapsed = elapsed.total_seconds()
    latency = [v for r in rows if (v := _ms(r.get("created_at"), r.get("finished_at"))) is not None]
    wait = [v for r in rows if (v := _ms(r.get("not_before"), r.get("started_at"))) is not None]
    return {
        "jobs_per_s": round(len(jobs) / elapsed, 1),
        "submit_per_s": round(len(jobs) / (submitted - start), 1),
        "latency_ms": percentiles(latency),
        "queue_wait_ms": percentiles(wait),
        "transactions_per_job": {k: round(v / len(jobs), 2) for k, v in sorted(counts.items())},
        "transactions_total_per_job": round(sum(counts.values()) / len(jobs), 2),
        "cpu_ms_per_job": cpu,
    }


def idle_latency(hosts: LocalHosts, samples: int = 5, settle: float = 5.0) -> float:
    """Median submit-to-success time of one job on an idle host: the listener has backed off to
    maxPollingInterval (1 s in host.json), which dominates."""
    times = []
    for _ in range(samples):
        time.sleep(settle)
        start = time.perf_counter()
        response = requests.post(f"{hosts.base}/jobs", json={"type": "echo", "payload": 1}, timeout=60)
        if response.status_code != 202:  # say what went wrong, and leave this sample out
            print(f"    idle probe: {response.status_code} {response.text[:300]}", flush=True)
            continue
        job = response.json()
        while requests.get(f"{hosts.base}/jobs/{job['id']}", timeout=60).json()["status"] != "succeeded":
            time.sleep(0.02)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3) if times else float("nan")


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Field by field median of several runs' figures."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            out[key] = median_of([r[key] for r in runs])
        elif isinstance(value, int | float):
            out[key] = round(statistics.median(r.get(key, 0) for r in runs), 2)
    return out


def draw(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = sorted(int(m) for m in summary["results"])
    for kind, marker in (("echo", "o"), ("mix", "s")):
        points = sorted((int(m), r) for m, r in summary["results"].items() if r.get(kind))
        if not points:  # a workload this run left out
            continue
        px = [m for m, _ in points]
        left.plot(px, [r[kind]["jobs_per_s"] for _, r in points], marker=marker, label=f"{kind}: jobs/s")
        right.plot(px, [r[kind]["latency_ms"]["p50"] for _, r in points], marker=marker, label=f"{kind} p50")
        right.plot(px, [r[kind]["latency_ms"]["p99"] for _, r in points], marker=marker, linestyle="--",
                   label=f"{kind} p99")  # fmt: skip
    left.axhline(summary["ceiling_jobs_per_s"], color="grey", linestyle=":", label="raw SDK ceiling")
    left.axhline(summary["http_ceiling_jobs_per_s"], color="grey", linestyle="--", label="the same over HTTP")
    left.set(
        xlabel="host instances",
        ylabel="jobs/s",
        title="Throughput",
        xticks=xs,
        ylim=(0, 1.15 * max(summary["ceiling_jobs_per_s"], summary["http_ceiling_jobs_per_s"])),
    )
    right.set(xlabel="host instances", ylabel="ms", title="Submit-to-done latency", xticks=xs)
    left.legend()
    right.legend()
    fig.suptitle(f"{summary['jobs']} jobs, {summary['concurrency']} concurrent clients, {summary['cpus']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


@contextlib.contextmanager
def warm_azurite(log_path: Path, concurrency: int, batch: tuple[int, int]) -> Iterator[Azurite]:
    """A fresh Azurite for each measurement, warmed up first (a new one is several times slower
    until its JIT has warmed up). Fresh because its in-memory queue store's clean-up, every 60 s,
    grows faster than linearly with the messages put since the last one: after a few thousand it
    took tens of seconds of CPU, and a run it met stalled for about 100 s."""
    with Azurite(log_path=str(log_path), access_log=True) as azurite:
        raw_ceiling_async(azurite.connection_string, 500, concurrency, *batch)
        yield azurite


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--instances", default="1,3", help="comma-separated host instance counts")
    parser.add_argument("--workloads", default="echo,mix")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(OUT / "pipeline.json"))
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-latency probe")
    parser.add_argument(
        "--app-dir",
        default=str(REPO_ROOT),
        help="the function app the hosts run (another checkout, to compare versions with this bench)",
    )
    args = parser.parse_args()
    rng = random.Random(7)
    instance_counts = [int(x) for x in args.instances.split(",")]
    kinds = args.workloads.split(",")
    results: dict[str, dict[str, list[dict]]] = {str(m): {k: [] for k in kinds} for m in instance_counts}
    ceilings: list[float] = []
    ceiling_cpu: list[dict[str, float]] = []
    sync_ceilings: list[float] = []
    http_ceilings: list[float] = []
    http_ceiling_cpu: list[dict[str, float]] = []
    idle: list[float] = []
    batch = queue_concurrency(Path(args.app_dir))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)

        def fresh() -> contextlib.AbstractContextManager[Azurite]:
            return warm_azurite(folder / "azurite.log", args.concurrency, batch)

        for run in range(args.runs):
            # The app's clients are async: its ceiling is the async SDK's (the sync one, for reference).
            with fresh() as azurite:
                meter = CpuMeter(azurite.pid)
                ceilings.append(raw_ceiling_async(azurite.connection_string, args.jobs, args.concurrency, *batch))
                ceiling_cpu.append(meter.per_job(args.jobs))
            with fresh() as azurite:
                try:
                    sync_ceilings.append(raw_ceiling(azurite.connection_string, args.jobs, args.concurrency, *batch))
                except AzureError as exc:  # a reference figure only: Azurite resets a pooled connection now and then
                    print(f"run {run + 1}: the sync ceiling failed ({exc}); left out", flush=True)
                    sync_ceilings.append(float("nan"))
            with fresh() as azurite:
                rate, cpu = raw_over_http(azurite.connection_string, args.jobs, args.concurrency, *batch, azurite.pid)
                http_ceilings.append(rate)
                http_ceiling_cpu.append(cpu)
            print(f"run {run + 1}: raw SDK ceiling {ceilings[-1]:.1f} jobs/s async ({ceiling_cpu[-1]} CPU ms/job), "
                  f"{sync_ceilings[-1]:.1f} sync; over HTTP {rate:.1f} ({cpu})", flush=True)  # fmt: skip
            for m in instance_counts:
                for kind in kinds:  # fresh hosts, table and Azurite per workload: figures do not mix
                    with fresh() as azurite:
                        hosts = LocalHosts(azurite.connection_string, m, folder, Path(args.app_dir))
                        log = AccessLog(folder / "azurite.log", hosts.names)
                        try:
                            figures = run_workload(hosts, log, workload(kind, args.jobs, rng), args.concurrency,
                                                   azurite.pid)  # fmt: skip
                            if kind == "echo":  # against the ceilings of this same run: the machine is shared
                                rate = figures["jobs_per_s"]
                                figures["fraction_of_ceiling"] = round(rate / ceilings[-1], 3)
                                figures["fraction_of_http_ceiling"] = round(rate / http_ceilings[-1], 3)
                            results[str(m)][kind].append(figures)
                            print(f"run {run + 1}: {m} instance(s), {kind}: {json.dumps(figures)}", flush=True)
                            if m == 1 and kind == kinds[0] and not args.no_idle:
                                idle.append(idle_latency(hosts))
                                print(f"run {run + 1}: idle latency {idle[-1]} s", flush=True)
                        finally:
                            hosts.stop()
    ceiling = statistics.median(ceilings)
    sync_ok = [x for x in sync_ceilings if not math.isnan(x)]
    azurite_version = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["azurite"]
    summary = {
        "machine": f"{os.cpu_count()} cores, Linux, Azurite {azurite_version} on loopback",
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "ceiling_jobs_per_s": round(ceiling, 1),
        "ceiling_cpu_ms_per_job": median_of(ceiling_cpu),
        "sync_ceiling_jobs_per_s": round(statistics.median(sync_ok), 1) if sync_ok else None,
        "http_ceiling_jobs_per_s": round(statistics.median(http_ceilings), 1),
        "http_ceiling_cpu_ms_per_job": median_of(http_ceiling_cpu),
        "idle_latency_s": statistics.median(idle) if idle else None,
        "results": {m: {k: median_of(v) for k, v in per.items() if v} for m, per in results.items()},
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": results, "ceilings": ceilings, "ceiling_cpu": ceiling_cpu,
                               "http_ceilings": http_ceilings, "http_ceiling_cpu": http_ceiling_cpu,
                               "idle": idle}, indent=2))  # fmt: skip
    draw(summary, out.with_suffix(".png"))
    print(json.dumps(summary, indent=2))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
