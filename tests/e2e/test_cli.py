"""The `jobs` command line, run as a real process against the local host and Azurite: what it
prints on stdout (human, or only JSON with --json) and the exit codes scripts rely on."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from jobs_client import JobsClient, cli
from typer.testing import CliRunner

pytestmark = pytest.mark.e2e

UNKNOWN_ID = "0" * 25  # well-formed (shard, inverted due time, suffix), but no such job

JOBS = Path(sys.executable).with_name("jobs")  # the console script pip installed with the package
FAST = ("--poll-interval", "0.1")


def jobs(*args: str, url: str | None = None, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    clean.update(COLUMNS="200", NO_COLOR="1", **env)
    if url is not None:
        clean["JOBS_URL"] = url
    return subprocess.run(
        [str(JOBS), *args], input=stdin, capture_output=True, text=True, timeout=60, env=clean, check=False
    )


def all_jobs(host) -> list[dict]:
    return requests.get(host.url("/api/jobs"), params={"limit": 200}, timeout=10).json()["jobs"]


def delayed(host, payload=1, job_type="echo") -> str:
    return host.submit({"type": job_type, "payload": payload, "delay_seconds": 3600}).json()["id"]


def dead_lettered(host, n: int) -> list[str]:
    with JobsClient(host.base) as client:
        ids = [client.submit("fail", max_attempts=1).id for _ in range(n)]
        assert all(client.wait(i, timeout=20, poll_interval=0.1).status == "dead_lettered" for i in ids)
    return ids


@pytest.fixture
def unavailable() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server on 127.0.0.1 that answers every request 503, and the headers it received."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(dict(self.headers.items()))
            body = json.dumps({"status": 503, "title": "Service Unavailable", "detail": "down", "code": "x"}).encode()
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


# --- success, and what is printed ------------------------------------------------------------


def test_submit_with_wait_prints_the_jobs_key_facts_and_exits_0_when_it_succeeds(host):
    r = jobs("--url", host.base, "submit", "echo", "--payload", '{"hello": "world"}', "--wait", *FAST)
    assert r.returncode == 0, r.stderr
    [job] = all_jobs(host)
    assert job["id"] in r.stdout and "succeeded" in r.stdout and '{"hello":"world"}' in r.stdout
    assert "attempt" in r.stdout and "1 of" in r.stdout


def test_json_puts_only_the_job_as_json_on_stdout_before_or_after_the_command(host):
    r = jobs("--json", "submit", "echo", "--payload", "[1, 2]", "--wait", *FAST, url=host.base)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["status"], job["result"]) == ("succeeded", [1, 2])
    again = jobs("get", job["id"], "--json", url=host.base)
    assert again.returncode == 0 and json.loads(again.stdout) == job


def test_submit_without_wait_prints_the_queued_job_and_the_same_idempotency_key_the_same_job(host):
    r = jobs("--json", "submit", "echo", "--delay", "3600", "--max-attempts", "2", "--idempotency-key", "k-1",
             url=host.base)  # fmt: skip
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["status"], job["max_attempts"]) == ("queued", 2)
    again = jobs("--json", "submit", "echo", "--delay", "3600", "--max-attempts", "2", "--idempotency-key", "k-1",
                 url=host.base)  # fmt: skip
    assert json.loads(again.stdout)["id"] == job["id"] and len(all_jobs(host)) == 1


def test_list_prints_a_table_and_with_json_an_array_cut_at_the_limit(host):
    ids = [delayed(host, i) for i in range(3)]
    table = jobs("list", url=host.base)
    assert table.returncode == 0, table.stderr
    assert "STATUS" in table.stdout and all(i in table.stdout for i in ids) and "queued" in table.stdout
    assert "3 jobs" in table.stderr
    cut = jobs("--json", "list", "--limit", "2", url=host.base)
    assert [j["id"] for j in json.loads(cut.stdout)] == ids[::-1][:2]
    cut_human = jobs("list", "--limit", "2", url=host.base)
    assert "more" in cut_human.stderr and ids[0] not in cut_human.stdout


def test_list_oldest_first(host):
    ids = [host.submit({"type": "echo", "delay_seconds": 3600 + i}).json()["id"] for i in range(3)]
    oldest = jobs("--json", "list", "--oldest", "--limit", "2", url=host.base)
    assert oldest.returncode == 0, oldest.stderr
    assert [j["id"] for j in json.loads(oldest.stdout)] == ids[:2]


def test_list_filters_by_status_type_and_due_time(host):
    later = delayed(host, 1)
    failed = dead_lettered(host, 1)[0]
    in_half_an_hour = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    listing = {
        "status": jobs("--json", "list", "--status", "dead_lettered", url=host.base),
        "type": jobs("--json", "list", "--type", "echo", url=host.base),
        "since": jobs("--json", "list", "--since", in_half_an_hour, url=host.base),
        "until": jobs("--json", "list", "--until", "1m", url=host.base),  # an age: due before a minute ago
    }
    got = {name: [j["id"] for j in json.loads(r.stdout)] for name, r in listing.items()}
    assert got == {"status": [failed], "type": [later], "since": [later], "until": []}


def test_submit_file_submits_every_line_in_order_from_a_file_or_stdin(host, tmp_path):
    lines = [json.dumps({"type": "echo", "payload": i, "delay_seconds": 3600}) for i in range(5)]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(["# five echoes", *lines[:2], "", *lines[2:]]) + "\n")
    r = jobs("--json", "submit", "--file", str(path), url=host.base)
    assert r.returncode == 0, r.stderr
    from_file = json.loads(r.stdout)
    assert [j["payload"] for j in from_file] == [0, 1, 2, 3, 4]
    r = jobs("submit", "--file", "-", stdin='{"type": "echo", "payload": 5}\n{"type": "echo"}\n', url=host.base)
    assert r.returncode == 0, r.stderr
    from_stdin = r.stdout.split()  # one id per line
    assert "submitted 2 jobs" in r.stderr
    assert sorted(j["id"] for j in all_jobs(host)) == sorted([j["id"] for j in from_file] + from_stdin)


def test_submit_file_names_the_jobs_the_service_refuses_by_their_line_from_1(host, tmp_path):
    """The service names a refused job by its place in its batch of 100 (from 0, blank lines and
    comments not counted): the CLI says which line of the file it is, as an editor numbers it."""
    path = tmp_path / "jobs.jsonl"
    path.write_text('# comment\n{"type": "echo"}\n{"type": "nope"}\n\n{"type": "echo", "max_attempts": 0}\n')
    r = jobs("submit", "--file", str(path), url=host.base)
    assert r.returncode == 4 and "  line 3: no handler for job type 'nope'" in r.stderr, r.stderr
    assert "  line 5: `max_attempts`" in r.stderr and "job 1" not in r.stderr
    r = jobs("--json", "submit", "--file", str(path), url=host.base)
    refused = json.loads(r.stderr)
    assert (r.returncode, refused["code"], refused["lines"]) == (4, "invalid_batch", {"1": 3, "2": 5})
    # In a later batch of 100, its line all the same.
    path.write_text("\n".join(['{"type": "echo", "delay_seconds": 3600}'] * 101 + ['{"type": "nope"}']) + "\n")
    r = jobs("submit", "--file", str(path), url=host.base)
    assert r.returncode == 4 and "  line 102: no handler" in r.stderr, r.stderr
    assert "100 of 102 jobs were submitted before the error (in file order, listed above)" in r.stderr
    assert "give --idempotency-key" in r.stderr
    stored = sorted(j["id"] for j in all_jobs(host))
    assert len(stored) == 100  # the first batch; nothing of the refused ones
    assert sorted(r.stdout.split()) == stored  # named, so a rerun can leave them out
    r = jobs("--json", "submit", "--file", str(path), "--idempotency-key", "partial", url=host.base)
    assert (r.returncode, len(json.loads(r.stdout)), json.loads(r.stderr)["code"]) == (4, 100, "invalid_batch")


@pytest.mark.parametrize("payload", ["NaN", "-Infinity", "1e400", '{"a": [NaN]}'])
def test_a_payload_json_cannot_carry_is_a_usage_error(host, payload):
    r = jobs("submit", "echo", "--payload", payload, url=host.base)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert "not valid JSON" in r.stderr and "Traceback" not in r.stderr


def test_a_url_that_is_not_the_api_is_said_to_be_so_not_a_missing_job(host):
    """A 404 or 400 without a problem body came from something else (another server, a path
    outside the API): not "no such job" (exit 3) or "refused" (exit 4)."""
    r = jobs("get", UNKNOWN_ID, url=host.base + "/elsewhere")
    assert r.returncode == 6, r.stderr
    assert f"GET {host.base}/elsewhere/api/jobs/{UNKNOWN_ID} answered 404" in r.stderr
    assert "is the URL right?" in r.stderr


def test_health_exits_0_and_shows_each_check_from_the_console_script_or_python_m(host):
    r = jobs("health", url=host.base)
    assert r.returncode == 0 and "table" in r.stdout and "queue" in r.stdout
    r = subprocess.run(
        [sys.executable, "-m", "jobs_client.cli", "--url", host.base, "--json", "health"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout) == {"status": "ok", "checks": {"table": "ok", "queue": "ok"}}


def test_help_documents_the_exit_codes():
    r = jobs("--help")
    assert r.returncode == 0
    for line in ("Exit codes", "1  the job or operation ended unsuccessfully", "5  timed out waiting"):
        assert line in r.stdout


@pytest.mark.parametrize(
    "command",
    [("--help",), ("pause", "--help"), ("list", "--help"), ("submit", "--help"), ("schedules", "--help"),
     ("schedules", "create", "--help")],
)  # fmt: skip
def test_help_shows_no_value_for_a_flag(command):
    """`--json <bool>` reads as if the flag took a value (`--json true` is an error); `--help` too."""
    r = jobs(*command)
    wanted = r"--(json|wait|all|oldest|paused|no-name|help)\b"
    flags = [line for line in r.stdout.splitlines() if re.search(wanted, line)]
    assert flags and not [line for line in flags if "<bool>" in line], r.stdout


# --- exit codes -----------------------------------------------------------------------------


def test_wait_exits_1_when_the_job_is_dead_lettered_and_5_on_timeout_still_printing_the_job(host):
    job_id = json.loads(jobs("--json", "submit", "fail", "--max-attempts", "1", url=host.base).stdout)["id"]
    r = jobs("--json", "wait", job_id, *FAST, url=host.base)
    assert r.returncode == 1
    assert json.loads(r.stdout)["status"] == "dead_lettered"
    queued = delayed(host)
    r = jobs("--json", "wait", queued, "--timeout", "0.5", *FAST, url=host.base)
    assert r.returncode == 5
    assert json.loads(r.stdout)["status"] == "queued" and "still queued" in r.stderr


def test_usage_errors_exit_2_and_send_nothing(unavailable, tmp_path):
    """In-process with typer's CliRunner (the same app object the console script runs): quicker."""
    url, seen = unavailable
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"type": "echo"}\n{oops\n')
    cases = [
        ("submit", "echo", "--payload", "{oops"),
        ("submit",),
        ("submit", "echo", "--max-attempts", "0"),
        ("submit", "--file", str(bad_file)),
        ("submit", "echo", "--file", str(bad_file)),
        ("submit", "echo", "--timeout", "3"),
        ("list", "--since", "yesterday"),
        ("cancel",),
        ("cancel", "some-id", "--status", "queued"),
        ("retry",),
        ("--no-such-flag", "health"),
        ("--url", "localhost:7071", "health"),
    ]
    runner = CliRunner()
    for args in cases:
        result = runner.invoke(cli.app, list(args), env={"JOBS_URL": url, "JOBS_KEY": ""})
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stdout == "", args
    assert "not valid JSON" in runner.invoke(cli.app, cases[0], env={"JOBS_URL": url}).stderr
    # With --json (before the command or after it), the error is one JSON object on stderr, as any other.
    for args in [*cases, ("submit", "echo", "--priority", "urgent"), ("no-such-command",)]:
        for given in (["--json", *args], [*args, "--json"]):
            result = runner.invoke(cli.app, given, env={"JOBS_URL": url, "JOBS_KEY": ""})
            assert (result.exit_code, result.stdout) == (2, ""), (given, result.stdout, result.stderr)
            problem = json.loads(result.stderr)
            assert problem["exit_code"] == 2 and problem["message"] and problem["error"], given
    refused = json.loads(runner.invoke(cli.app, ["--json", *cases[0]], env={"JOBS_URL": url}).stderr)
    assert (refused["error"], refused["usage"]) == ("BadParameter", "Usage: jobs submit [OPTIONS] [TYPE]")
    assert refused["message"].startswith("Invalid value for --payload: not valid JSON")
    assert seen == []


def test_an_unknown_job_or_operation_exits_3(host):
    r = jobs("get", UNKNOWN_ID, url=host.base)
    assert r.returncode == 3 and r.stdout == "" and "job_not_found" in r.stderr
    r = jobs("--json", "get", UNKNOWN_ID, url=host.base)
    assert r.returncode == 3 and r.stdout == ""
    assert json.loads(r.stderr)["code"] == "job_not_found"
    assert jobs("operation", "no-such-operation", url=host.base).returncode == 3


def test_rejected_requests_exit_4_cancelling_twice_or_an_unknown_job_type(host):
    job_id = delayed(host)
    first = jobs("--json", "cancel", job_id, url=host.base)
    assert first.returncode == 0 and json.loads(first.stdout)["status"] == "cancelled"
    again = jobs("cancel", job_id, url=host.base)
    assert again.returncode == 4 and "invalid_state" in again.stderr
    r = jobs("submit", "no-such-type", url=host.base)
    assert r.returncode == 4 and "unknown_job_type" in r.stderr and "echo" in r.stderr


def test_an_unreachable_service_exits_6():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = jobs("--retries", "1", "health", url=f"http://127.0.0.1:{port}")
    assert r.returncode == 6 and r.stdout == ""
    listed = jobs("--retries", "1", "--json", "list", url=f"http://127.0.0.1:{port}")
    assert listed.returncode == 6 and listed.stdout == ""  # not a lone `[`


def test_each_retry_is_said_as_it_happens_naming_the_url_but_not_with_json():
    """An app that is down takes some 10 s of retries to report: each one is said on stderr, so
    the wait does not look hung, and the URL is named, since a wrong one is the usual cause."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api/jobs/abc"
    r = jobs("--retries", "2", "get", "abc", url=f"http://127.0.0.1:{port}")
    lines = r.stderr.splitlines()
    assert r.returncode == 6 and len(lines) == 3, r.stderr
    assert lines[0].startswith(f"GET {url}: ConnectError") and lines[0].endswith("(retry 1 of 2)")
    assert lines[1].endswith("(retry 2 of 2)") and "sending it again in" in lines[1]
    assert lines[2].startswith(f"error: GET {url}: ConnectError") and lines[2].endswith("(after 3 attempts)")
    quiet = jobs("--retries", "2", "--json", "get", "abc", url=f"http://127.0.0.1:{port}")
    assert quiet.returncode == 6 and json.loads(quiet.stderr)["error"] == "ServiceUnreachable"  # one JSON object


def test_503_after_the_retries_exits_6(unavailable):
    url, seen = unavailable
    r = jobs("--retries", "2", "get", "1", url=url)
    assert r.returncode == 6 and len(seen) == 3 and "503" in r.stderr


def test_key_is_sent_as_x_functions_key(unavailable):
    url, seen = unavailable
    jobs("--key", "from-flag", "--retries", "0", "get", "1", url=url)
    jobs("--retries", "0", "get", "1", url=url, JOBS_KEY="from-env")
    assert [h.get("x-functions-key") for h in seen] == ["from-flag", "from-env"]


# --- redrive and bulk operations ------------------------------------------------------------


def test_retry_of_a_cancelled_job_with_wait_exits_0_when_it_then_succeeds(host):
    job_id = host.submit({"type": "echo", "payload": 1, "delay_seconds": 2}).json()["id"]
    assert jobs("cancel", job_id, url=host.base).returncode == 0
    r = jobs("--json", "retry", job_id, "--extra-attempts", "2", "--wait", *FAST, url=host.base)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["status"], job["attempt"]) == ("succeeded", 1)  # cancelled before it ran: its attempt unspent
    assert job["started_at"] >= job["due_at"]  # and its start time kept


def test_bulk_retry_with_wait_follows_the_operation_and_exits_0(host):
    ids = dead_lettered(host, 3)
    r = jobs("--json", "retry", "--status", "dead_lettered", "--type", "fail", "--wait", *FAST, url=host.base)
    assert r.returncode == 0, r.stderr
    op = json.loads(r.stdout)
    assert (op["action"], op["status"], op["matched"], op["applied"]) == ("retry", "succeeded", 3, 3)
    with JobsClient(host.base) as client:
        assert all(client.get(i).attempt == 2 for i in ids)


def test_bulk_cancel_prints_the_operation_and_jobs_operation_wait_follows_it_to_the_end(host):
    ids = [delayed(host, i) for i in range(2)]
    started = jobs("cancel", "--status", "queued", "--type", "echo", "--json", url=host.base)
    assert started.returncode == 0, started.stderr
    op = json.loads(started.stdout)
    assert op["action"] == "cancel"
    human = jobs("operation", op["id"], "--wait", *FAST, url=host.base)
    assert human.returncode == 0 and "succeeded" in human.stdout and "applied" in human.stdout
    done = json.loads(jobs("--json", "operation", op["id"], url=host.base).stdout)
    assert (done["status"], done["applied"]) == ("succeeded", 2)
    assert {j["status"] for j in all_jobs(host) if j["id"] in ids} == {"cancelled"}


def test_submit_at_a_time_with_a_priority_prints_them_and_refuses_at_with_delay(host):
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    r = jobs("submit", "echo", "--at", at.isoformat(), "--priority", "high", "--json", url=host.base)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["priority"], job["due_at"]) == ("high", at.isoformat().replace("+00:00", "Z").replace("Z", ".000Z"))
    r = jobs("submit", "echo", "--at", at.isoformat(), "--delay", "5", url=host.base)
    assert r.returncode == 2 and "--delay or --at" in r.stderr
    r = jobs("submit", "echo", "--priority", "urgent", url=host.base)
    assert r.returncode == 2


@pytest.mark.parametrize(
    "args", [("pause", "a/b"), ("resume", "a?b"), ("pause", ".."), ("limit", "", "--concurrency", "2")]
)
def test_a_type_name_no_type_can_have_is_a_usage_error_before_anything_is_sent(args):
    r = jobs(*args, url="http://127.0.0.1:9")  # nothing listens there: a request would fail otherwise
    assert r.returncode == 2 and "is not a job type name" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_types_pause_resume_and_limit_commands(host):
    r = jobs("pause", "echo", url=host.base)
    assert r.returncode == 0 and "paused" in r.stdout
    r = jobs("types", url=host.base)
    assert r.returncode == 0
    [echo_row] = [line for line in r.stdout.splitlines() if line.startswith("echo ")]
    assert "paused" in echo_row
    r = jobs("resume", "echo", "--json", url=host.base)
    assert json.loads(r.stdout)["paused"] is False
    r = jobs("limit", "sleep", "--concurrency", "2", "--rate", "10/m", "--json", url=host.base)
    body = json.loads(r.stdout)
    assert (body["max_concurrency"], body["rate_limit"]) == (2, {"limit": 10, "period_seconds": 60.0})
    r = jobs("limit", "sleep", "--concurrency", "default", "--json", url=host.base)
    assert json.loads(r.stdout)["max_concurrency"] is None
    r = jobs("limit", "sleep", "--rate", "none", url=host.base)
    assert r.returncode == 2 and "nor 'default'" in r.stderr  # the way back to the code's limit is named
    assert jobs("pause", url=host.base).returncode == 2  # neither TYPE nor --all
    r = jobs("pause", "echo", "--all", url=host.base)
    assert r.returncode == 2 and "not both" in r.stderr, r.stderr
    r = jobs("limit", "sleep", "--concurrency", "4", url=host.base)
    assert "running          0" in r.stdout and "waiting          0 for a slot" in r.stdout, r.stdout
    r = jobs("pause", "--all", "--json", url=host.base)
    assert json.loads(r.stdout)["paused_all"] is True
    jobs("pause", "echo", url=host.base)
    r = jobs("types", url=host.base)
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line.strip()}
    assert "paused (type, all)" in rows["echo"] and "paused (all)" in rows["sleep"]
    assert rows["sleep"].split()[-2:] == ["0", "0"] and rows["fail"].split()[-2:] == ["-", "-"]  # RUNNING, WAITING
    r = jobs("resume", "--all", url=host.base)
    assert r.returncode == 0 and "parked jobs released" in r.stderr, r.stderr  # even when none were parked
    assert json.loads(jobs("types", "--json", url=host.base).stdout)["paused_all"] is False
    r = jobs("resume", "echo", url=host.base)  # its own pause, kept through resume --all
    assert r.returncode == 0 and "released         0 parked jobs\n" in r.stdout, r.stdout  # said once


def test_get_says_what_holds_a_queued_job_back(host):
    assert jobs("pause", "echo", url=host.base).returncode == 0
    try:
        job_id = requests.post(host.url("/api/jobs"), json={"type": "echo"}, timeout=10).json()["id"]
        deadline = time.monotonic() + 15  # every instance reads the pause within 5 s
        while "held by" not in (r := jobs("get", job_id, url=host.base)).stdout:
            assert time.monotonic() < deadline, r.stdout
            time.sleep(0.5)
        assert "held by  its type is paused" in r.stdout and "queued" in r.stdout, r.stdout
        held = json.loads(jobs("get", job_id, "--json", url=host.base).stdout)["held_by"]
        assert held == {"reason": "pause", "until": None}
    finally:
        jobs("resume", "echo", url=host.base)


# --- schedules -------------------------------------------------------------------------------------


def test_schedules_create_show_list_pause_resume_delete(host):
    r = jobs("schedules", "create", "echo", "--cron", "30 2 * * *", "--tz", "Europe/Berlin", "--payload", '{"a": 1}',
             "--overlap", "skip", "--name", "nightly", "--json", url=host.base)  # fmt: skip
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    sid = created["id"]
    assert (created["time_zone"], created["overlap"], created["job"]["payload"]) == ("Europe/Berlin", "skip", {"a": 1})
    r = jobs("schedules", "show", sid, url=host.base)
    assert r.returncode == 0 and sid in r.stdout and "nightly" in r.stdout and "Europe/Berlin" in r.stdout
    assert r.stdout.count(" UTC ") >= 5 and ("+01:00" in r.stdout or "+02:00" in r.stdout)  # next fires, both ways
    r = jobs("schedules", "list", url=host.base)
    [row] = [line for line in r.stdout.splitlines() if line.startswith(sid)]
    assert "30 2 * * *" in row and "active" in row
    r = jobs("schedules", "pause", sid, "--json", url=host.base)
    assert json.loads(r.stdout)["paused"] is True
    assert "paused" in jobs("schedules", "list", url=host.base).stdout
    r = jobs("schedules", "resume", sid, "--json", url=host.base)
    assert json.loads(r.stdout)["paused"] is False
    r = jobs("schedules", "list", "--json", url=host.base)
    assert [s["id"] for s in json.loads(r.stdout)] == [sid]
    r = jobs("schedules", "delete", sid, url=host.base)
    assert r.returncode == 0 and "deleted" in r.stderr
    assert jobs("schedules", "show", sid, url=host.base).returncode == 3  # not found
    assert jobs("schedules", "delete", sid, url=host.base).returncode == 3


def test_schedules_show_lists_the_recent_fires_with_the_jobs_they_made():
    from jobs_client import Schedule
    from jobs_client._render import schedule_facts

    fires = [{"at": f"2026-11-25T0{n}:30:00.000Z", "job_id": f"job-{n}"} for n in (3, 2, 1)]
    text = schedule_facts(Schedule.from_dict({"id": "s1", "cron": "30 * * * *", "recent_fires": fires})).plain
    lines = [line for line in text.splitlines() if "job-" in line]
    assert lines[0].startswith("recent fires") and [line.split()[-1] for line in lines] == ["job-3", "job-2", "job-1"]
    assert "2026-11-25 03:30:00 UTC" in lines[0]


def test_schedules_update_changes_only_the_fields_given_and_refuses_what_it_cannot_send(host):
    r = jobs("schedules", "create", "echo", "--cron", "30 2 * * *", "--payload", '{"a": 1}', "--max-attempts", "2",
             "--priority", "high", "--name", "nightly", "--json", url=host.base)  # fmt: skip
    sid = json.loads(r.stdout)["id"]
    r = jobs("schedules", "update", sid, "--cron", "*/10 * * * * *", "--tz", "Asia/Tokyo", "--payload", '{"b": 2}',
             "--max-attempts", "default", "--overlap", "skip", "--no-name", "--json", url=host.base)  # fmt: skip
    assert r.returncode == 0, r.stderr
    updated = json.loads(r.stdout)
    assert (updated["cron"], updated["time_zone"], updated["overlap"]) == ("*/10 * * * * *", "Asia/Tokyo", "skip")
    assert updated["job"]["payload"] == {"b": 2} and updated["job"].get("max_attempts") is None  # the type's again
    assert updated["job"]["priority"] == "high" and updated.get("name") is None  # untouched; removed
    assert updated["catch_up"] == "once" and updated["paused"] is False
    r = jobs("schedules", "update", sid, "--priority", "default", "--name", "hourly", url=host.base)
    assert r.returncode == 0 and "hourly" in r.stdout and "Asia/Tokyo" in r.stdout  # the facts, as `show` prints them
    assert host.services.schedules.get(sid).job.priority is None
    # Refused before anything is sent (usage, exit 2), by the API (4), or not found (3).
    assert jobs("schedules", "update", sid, url=host.base).returncode == 2  # nothing to change
    assert jobs("schedules", "update", sid, "--name", "x", "--no-name", url=host.base).returncode == 2
    assert jobs("schedules", "update", sid, "--max-attempts", "0", url=host.base).returncode == 2
    assert jobs("schedules", "update", sid, "--priority", "urgent", url=host.base).returncode == 2
    assert jobs("schedules", "update", sid, "--payload", "{bad", url=host.base).returncode == 2
    r = jobs("schedules", "update", sid, "--cron", "every day", "--json", url=host.base)
    assert r.returncode == 4 and json.loads(r.stderr)["code"] == "invalid_cron"
    assert jobs("schedules", "update", "nope", "--name", "x", url=host.base).returncode == 3
    # --if-revision: only if nobody changed it since that revision (show prints it).
    assert re.search(r"^revision +3$", jobs("schedules", "show", sid, url=host.base).stdout, re.MULTILINE)
    r = jobs("schedules", "update", sid, "--name", "late", "--if-revision", "2", "--json", url=host.base)
    assert r.returncode == 4 and json.loads(r.stderr)["code"] == "revision_mismatch"
    r = jobs("schedules", "update", sid, "--name", "kept", "--if-revision", "3", "--json", url=host.base)
    assert r.returncode == 0 and json.loads(r.stdout)["revision"] == 4
    r = jobs("schedules", "delete", sid, "--if-revision", "3", url=host.base)
    assert r.returncode == 4
    [line] = r.stderr.splitlines()  # one line, however long: not wrapped at 80 columns for a log or a grep
    assert "412 revision_mismatch" in line and "at revision 4" in line and len(line) > 80, r.stderr
    assert jobs("schedules", "delete", sid, "--if-revision", "4", url=host.base).returncode == 0


def test_schedules_create_refusals_have_their_exit_codes(host):
    r = jobs("schedules", "create", "echo", "--cron", "every day", "--json", url=host.base)
    assert r.returncode == 4 and json.loads(r.stderr)["code"] == "invalid_cron"
    r = jobs("schedules", "create", "echo", "--cron", "* * * * *", "--tz", "Mars/Base", url=host.base)
    assert r.returncode == 4 and "unknown time zone" in r.stderr
    bad_payload = jobs("schedules", "create", "echo", "--cron", "* * * * *", "--payload", "{bad", url=host.base)
    assert bad_payload.returncode == 2
    assert jobs("schedules", "create", "echo", url=host.base).returncode == 2  # no --cron
    assert jobs("schedules", "create", "echo", "--cron", "* * * * *", "--overlap", "maybe",
                url=host.base).returncode == 2  # fmt: skip
    assert json.loads(jobs("schedules", "list", "--json", url=host.base).stdout) == []
