"""Chaos: jobs through several local hosts while hosts are killed, junk is injected and the
storage emulator itself restarts. Then prove nothing was lost.

    python -m bench.chaos --jobs 2000 --instances 3 --kill-every 5 --azurite-restart

What it does, on loopback only, bounded in jobs and time:
- Azurite with disk persistence in a temp folder (so it can restart), N local hosts;
- submits a mix through the batch API: most succeed at once, some fail once or twice then
  succeed, some always fail (and dead-letter), some sleep (so kills land mid-job);
- every few seconds SIGKILLs a random host and starts it again; injects messages that are not
  JSON or name no job; restarts Azurite once;
- then checks and prints: every job terminal (lost = 0), each job's terminal state written once
  (from the hosts' JSON logs), attempts on the records match the handler's own execution log,
  and how many executions were repeats of an attempt (at-least-once delivery: reported);
- and how long the jobs a killed host was running took to run again elsewhere: from the kill to
  the next start of each such job (p50 and max). With `--settings default` (the product's lease,
  heartbeat and reconciler cadence) that is the recovery a user gets in Azure; `--settings fast`
  shortens them so a short run finishes quickly.
Exits 1 on any loss or double terminal write.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from bench.results import report
from shared.config import SETTINGS as CONFIG_SETTINGS
from tools.azurite import REPO_ROOT, Azurite, free_port

TERMINAL = {"succeeded", "dead_lettered", "cancelled"}
JOB_ROWS = "PartitionKey ge 'p' and PartitionKey lt 'q' and RowKey lt 'a'"  # not idempotency records
# The product's defaults for how a lost attempt is found (lease, renewals, reconciler cadence), as
# in Azure, or short ones for a quick run. The grace is for lost messages, not lost workers.
DEFAULTS = {s.name: s.default or "" for s in CONFIG_SETTINGS}
SETTINGS = {
    "default": {name: DEFAULTS[name] for name in ("JOBS_LEASE_SECONDS", "JOBS_HEARTBEAT_SECONDS",
                                                  "JOBS_RECONCILE_SCHEDULE")} | {"JOBS_RECONCILE_GRACE_SECONDS": "5"},
    "fast": {"JOBS_LEASE_SECONDS": "10", "JOBS_HEARTBEAT_SECONDS": "3", "JOBS_RECONCILE_SCHEDULE": "*/2 * * * * *",
             "JOBS_RECONCILE_GRACE_SECONDS": "5"},
}  # fmt: skip
TERMINAL_LOGS = ("attempt succeeded", "attempt failed, job dead-lettered", "job dead-lettered", "job cancelled")

CHAOS_HANDLER = '''
"""A job type for the chaos run: writes each execution to a log the harness reads."""
import os, time
from shared.registry import handler

LOG = os.environ["CHAOS_EXECUTION_LOG"]


def note(ctx, what):
    with open(LOG, "a") as f:  # one short line per write: appends do not interleave
        f.write(f"{ctx.id} {ctx.attempt} {os.getpid()} {time.time():.3f} {what}\\n")


@handler("chaos")
def chaos(ctx):
    note(ctx, "start")
    try:
        mode = ctx.payload.get("mode")
        if mode == "sleep":
            time.sleep(ctx.payload.get("seconds", 1))
        if mode == "flaky" and ctx.attempt <= ctx.payload.get("times", 1):
            raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
        if mode == "doomed":
            raise RuntimeError("always fails")
        return {"n": ctx.payload.get("n")}
    finally:
        note(ctx, "end")
'''

HOST_JSON_QUEUES = {
    "batchSize": 16,
    "newBatchThreshold": 8,
    "maxPollingInterval": "00:00:01",
    "visibilityTimeout": "00:00:01",
    "maxDequeueCount": 5,
    "messageEncoding": "none",
}


def make_app(folder: Path) -> Path:
    app = folder / "app"
    app.mkdir()
    (app / "shared").symlink_to(REPO_ROOT / "shared")
    source = (REPO_ROOT / "function_app.py").read_text()
    (app / "function_app.py").write_text(source + "\nimport chaos_handlers  # noqa: E402,F401\n")
    (app / "chaos_handlers.py").write_text(CHAOS_HANDLER)
    host = json.loads((REPO_ROOT / "host.json").read_text())
    host["extensions"]["queues"] = HOST_JSON_QUEUES
    (app / "host.json").write_text(json.dumps(host))
    return app


@dataclass
class Hosts:
    app: Path
    env: dict[str, str]
    folder: Path
    count: int
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen | None] = field(default_factory=list)
    starts: int = 0

    def start(self, index: int) -> None:
        log = (self.folder / f"host-{index}-{self.starts}.log").open("wb")
        self.starts += 1
        self.procs[index] = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(self.app), "--port", str(self.ports[index])],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def start_all(self) -> None:
        self.ports = [free_port() for _ in range(self.count)]
        self.procs = [None] * self.count
        for i in range(self.count):
            self.start(i)
        for port in self.ports:
            wait_http(f"http://127.0.0.1:{port}/api/health", 60)

    def kill(self, index: int) -> tuple[int, float] | None:
        """SIGKILL a host; its pid and the time, if it was running."""
        proc = self.procs[index]
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            killed_at = time.time()
            proc.wait()
            return proc.pid, killed_at
        return None

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            if proc:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)

    def url(self) -> str:
        alive = [p for p, proc in zip(self.ports, self.procs, strict=True) if proc and proc.poll() is None]
        return f"http://127.0.0.1:{random.choice(alive or self.ports)}/api"


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def job_mix(n: int, rng: random.Random) -> list[dict]:
    jobs = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.10:
            payload, attempts = {"mode": "flaky", "times": rng.choice([1, 2]), "n": i}, 4
        elif roll < 0.15:
            payload, attempts = {"mode": "doomed", "n": i}, 2
        elif roll < 0.20:
            payload, attempts = {"mode": "sleep", "seconds": rng.uniform(0.5, 2), "n": i}, 4
        else:
            payload, attempts = {"mode": "ok", "n": i}, 4
        jobs.append({"type": "chaos", "payload": payload, "max_attempts": attempts})
    return jobs


def submit_all(hosts: Hosts, jobs: list[dict], deadline: float, ids: list[str], pause: float) -> None:
    """Submit in batches of 100, `pause` seconds apart, so that kills land while jobs run."""
    for start in range(0, len(jobs), 100):
        if start:
            time.sleep(pause)
        pending = jobs[start : start + 100]
        # The same key on every try: a batch whose answer was lost is not stored twice. A 207 (storage
        # failed between groups, as when Azurite restarts mid-batch) keeps what it stored; the rest go
        # again under a new key, since the first would only replay the same partial answer.
        key, rounds = f"chaos-{hosts.env['JOBS_QUEUE_NAME']}-{start}", 0
        while pending:  # a host may be down or Azurite restarting: try another, until the deadline
            try:
                r = requests.post(f"{hosts.url()}/jobs/batch", json={"jobs": pending},
                                  headers={"Idempotency-Key": key}, timeout=30)  # fmt: skip
                if r.status_code == 202:
                    ids += [j["id"] for j in r.json()["jobs"]]
                    pending = []
                elif r.status_code == 207:
                    results = r.json()["results"]
                    ids += [res["job"]["id"] for res in results if res["status"] == 202]
                    pending = [pending[res["index"]] for res in results if res["status"] != 202]
                    rounds += 1
                    key = f"chaos-{hosts.env['JOBS_QUEUE_NAME']}-{start}:retry{rounds}"
                    continue
            except requests.RequestException:
                pass
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("could not submit the jobs in time")
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between host kills")
    parser.add_argument("--kills", type=int, default=1000, help="at most this many kills")
    parser.add_argument("--azurite-restart", action="store_true", help="restart Azurite once mid-run")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--submit-every", type=float, default=1.0, help="seconds between batches of 100 jobs")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="default",
                        help="lease, heartbeat, reconciler cadence: the defaults, or short ones")  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="chaos-"))
    name = "chaos" + uuid.uuid4().hex[:8]
    azurite = Azurite(location=str(folder / "azurite"), log_path=str(folder / "azurite.log")).start()
    execution_log = folder / "executions.log"
    env = {
        **os.environ,
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_QUEUE_NAME": name, "JOBS_TABLE_NAME": name, "JOBS_CONTAINER_NAME": name,
        "AzureFunctionsWebHost__hostid": name,
        **SETTINGS[args.settings],
        "JOBS_BACKOFF_BASE_SECONDS": "0.5", "JOBS_BACKOFF_MAX_SECONDS": "2",
        "JOBS_LOG_FORMAT": "json", "CHAOS_EXECUTION_LOG": str(execution_log), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    hosts = Hosts(make_app(folder), env, folder, args.instances)
    started = time.monotonic()
    deadline = started + args.timeout
    kills = injected = 0
    killed: list[tuple[int, float]] = []  # (pid, when) of each kill
    restarted_azurite = False
    try:
        hosts.start_all()
        print(f"{args.instances} hosts up; submitting {args.jobs} jobs", flush=True)
        ids: list[str] = []
        submitter = threading.Thread(
            target=submit_all, args=(hosts, job_mix(args.jobs, rng), deadline, ids, args.submit_every), daemon=True
        )
        submitter.start()
        table = TableClient.from_connection_string(azurite.connection_string, name)
        queue = QueueClient.from_connection_string(azurite.connection_string, name)
        next_kill = time.monotonic() + min(args.kill_every, 2.0)
        terminal = stored = 0
        while time.monotonic() < deadline:
            try:
                rows = list(table.query_entities(JOB_ROWS, select=["status"]))
                terminal = sum(1 for r in rows if r["status"] in TERMINAL)
                stored = len(rows)
            except Exception:  # noqa: BLE001 - Azurite may be restarting
                pass
            print(f"  {time.monotonic() - started:6.1f} s: {terminal}/{args.jobs} terminal, {kills} kills", flush=True)
            # Done when everything stored is finished and the client has nothing left to submit.
            if not submitter.is_alive() and stored and terminal == stored:
                break
            if kills < args.kills and time.monotonic() >= next_kill:
                victim = rng.randrange(args.instances)
                gone = hosts.kill(victim)
                if gone:
                    killed.append(gone)
                kills += 1
                hosts.start(victim)
                next_kill = time.monotonic() + args.kill_every
                try:
                    queue.send_message("this is not json")
                    queue.send_message(json.dumps({"id": "00" + "1" * 13 + "0" * 10, "attempt": 1}))
                    injected += 2
                except Exception:  # noqa: BLE001
                    pass
            if args.azurite_restart and not restarted_azurite and terminal >= args.jobs // 3:
                print("  restarting Azurite", flush=True)
                azurite.stop()
                time.sleep(2)
                azurite.start()
                restarted_azurite = True
            time.sleep(1)
        result = verify(table, args.jobs, execution_log, folder)
        result.update(recovery(execution_log, killed))
    except BaseException:
        print(f"FAILED: logs kept in {folder}", file=sys.stderr)
        raise
    finally:
        hosts.stop_all()
        azurite.stop()
    result.update(
        jobs=len(ids), instances=args.instances, kills=kills, injected_malformed=injected,
        azurite_restarted=restarted_azurite, seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    report(result, args.out)
    ok = (
        result["lost"] == 0
        and result["double_terminal_writes"] == 0
        and result["attempt_mismatches"] == 0
        and result["terminal_writes_logged"] > 0  # the check read the hosts' logs, not nothing
    )
    if ok:
        shutil.rmtree(folder, ignore_errors=True)
    else:
        print(f"FAILED: logs kept in {folder}", file=sys.stderr)
    return 0 if ok else 1


def verify(table: TableClient, submitted: int, execution_log: Path, folder: Path) -> dict:
    """Jobs are told apart by their payload's `n`: every `n` must be stored, and every stored job
    finished. A batch whose answer was lost is sent again with the same Idempotency-Key, so no
    `n` should be stored twice (`client_resubmissions` counts any that were)."""
    records = {}
    for row in table.query_entities(JOB_ROWS):
        records[f"{row['PartitionKey'][1:]}{row['RowKey']}"] = row
    by_n: dict[int, list[str]] = {}
    for job_id, row in records.items():
        by_n.setdefault(json.loads(row["payload"])["n"], []).append(job_id)
    never_stored = [n for n in range(submitted) if n not in by_n]
    unfinished = [i for i, r in records.items() if r["status"] not in TERMINAL]
    executions = Counter()
    for line in execution_log.read_text().splitlines() if execution_log.exists() else []:
        job_id, attempt, _, _, what = line.split()
        if what == "start":
            executions[(job_id, int(attempt))] += 1
    duplicates = sum(n - 1 for n in executions.values())
    mismatches = []
    for job_id, record in records.items():
        if record["status"] not in TERMINAL:
            continue
        ran = sorted({a for (j, a) in executions if j == job_id})
        # Every attempt the record counts ran at least once, except attempts lost with a killed
        # host before the handler started (recorded as lease-expired) or poisoned.
        lost_attempts = {
            e["attempt"]
            for e in json.loads(record.get("errors") or "[]")
            if "lease expired" in e["error"] or "poison" in e["error"]
        }
        expected = set(range(1, int(record["attempt"]) + 1)) - lost_attempts
        if not expected <= set(ran) or (ran and max(ran) > int(record["attempt"])):
            mismatches.append({"id": job_id, "record_attempt": record["attempt"], "executed": ran})
    terminal_writes = Counter()
    for log in folder.glob("host-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                entry = json.loads(line[start:])
            except ValueError:
                continue
            if any(entry.get("message", "").startswith(t) for t in TERMINAL_LOGS) and entry.get("job_id"):
                terminal_writes[entry["job_id"]] += 1
    doubles = [j for j, n in terminal_writes.items() if n > 1]
    # A terminal write whose log line never appeared: the host was killed between the write and
    # the line, or Azurite applied the write but went down before answering (the retry then meets
    # a changed ETag and is dropped). Reported so the reader knows how much the log check saw.
    unlogged = [i for i, r in records.items() if r["status"] in TERMINAL and i not in terminal_writes]
    statuses = Counter(r["status"] for r in records.values())
    return {
        "lost": len(never_stored) + len(unfinished),
        "lost_examples": {"never_stored": never_stored[:5], "unfinished": unfinished[:5]},
        "client_resubmissions": len(records) - len(by_n),
        "statuses": dict(statuses),
        "executions": sum(executions.values()),
        "duplicate_executions": duplicates,
        "attempt_mismatches": len(mismatches),
        "mismatch_examples": mismatches[:5],
        "terminal_writes_logged": sum(terminal_writes.values()),
        "terminal_writes_unlogged": len(unlogged),
        "double_terminal_writes": len(doubles),
        "double_examples": doubles[:5],
    }


def recovery(execution_log: Path, killed: list[tuple[int, float]]) -> dict:
    """For each kill, the jobs the killed host was running (started, not ended, in that process):
    seconds from the kill to their next start anywhere. The reconciler finds them when their lease
    has run out; the next attempt starts after its backoff."""
    starts: dict[str, list[float]] = {}
    running: dict[int, dict[str, float]] = {}  # pid -> job -> started
    for line in execution_log.read_text().splitlines() if execution_log.exists() else []:
        job_id, _, pid, at, what = line.split()
        if what == "start":
            starts.setdefault(job_id, []).append(float(at))
            running.setdefault(int(pid), {})[job_id] = float(at)
        else:
            running.get(int(pid), {}).pop(job_id, None)
    waits = []
    for pid, when in killed:
        for job_id, began in running.get(pid, {}).items():
            later = [t for t in starts[job_id] if t > when]
            if began <= when and later:
                waits.append(later[0] - when)
    waits.sort()
    return {
        "jobs_held_by_killed_hosts": len(waits),
        "recovery_p50_s": round(waits[len(waits) // 2], 1) if waits else None,
        "recovery_max_s": round(waits[-1], 1) if waits else None,
    }


if __name__ == "__main__":
    sys.exit(main())
