"""The served OpenAPI document against the running app: Schemathesis fuzzes every operation with
valid and invalid requests (all its checks: status codes, content types, headers and bodies as
documented, no 5xx, invalid input refused, valid input accepted, auth enforced), and function keys
are enforced as in Azure. The local host runs with a function key, so the key matters here."""

from __future__ import annotations

import json
import subprocess
import sysconfig
import time
from pathlib import Path

import pytest
import requests

from tools.azurite import REPO_ROOT

pytestmark = pytest.mark.e2e

KEY = "contract-test-key"
CONFIG = REPO_ROOT / "tests" / "e2e" / "schemathesis.toml"
# Pinned in requirements-dev.txt; the venv's own script, never one found on PATH.
SCHEMATHESIS = Path(sysconfig.get_path("scripts")) / "schemathesis"
SEED = 1
MAX_EXAMPLES = 30  # per operation and phase: 26 operations, about 2,000 cases, 50-60 s on 2 cores
# One worker: with two, Schemathesis's threads run `ast.parse` at the same time, and CPython 3.11
# keeps the AST constructor's recursion counter per interpreter, not per thread (CPython
# gh-106905): now and then a run errors with "SystemError: AST constructor recursion depth
# mismatch", which is no fault of the app. On 2 cores one worker is no slower anyway.
WORKERS = 1
ANONYMOUS = ("/api/health", "/api/openapi.json", "/api/docs", "/api/docs/init.js", "/api/docs/swagger-ui.css")


def schemathesis_summary(report: dict) -> str:
    ops, cases = report["operations"], report["test_cases"]
    phases = ", ".join(f"{name} {p['status']}" for name, p in report["phases"].items())
    failures = sum(f["count"] for f in report["failures"])
    kinds = "; ".join(
        f"{f['code']} {f['title']} x{f['count']} ({', '.join(f['operations'])})" for f in report["failures"]
    )
    warnings = {name: items for name, items in report["warnings"].items() if items}
    return (
        f"Schemathesis {report['schemathesis_version']} (seed {report['seed']}, {MAX_EXAMPLES} examples, "
        f"checks all, mode all): {ops['tested']}/{ops['total']} operations tested, "
        f"{cases['generated']} test cases generated, {failures} failures"
        f"{' - ' + kinds if kinds else ''}, {len(report['errors'])} errors, "
        f"{cases['without_checks']} without checks; phases: {phases}; {report['running_time']:.1f} s"
        f"{'; warnings: ' + json.dumps(warnings) if warnings else ''}"
    )


def test_schemathesis_finds_no_contract_violation(start_host, tmp_path):
    host = start_host("--function-key", KEY)
    junit, report_json = tmp_path / "schemathesis-junit.xml", tmp_path / "schemathesis.json"
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", host.url("/api/openapi.json"),
        "-H", f"x-functions-key: {KEY}",
        "--checks", "all", "--mode", "all",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", str(WORKERS),
        "--generation-database", "none",  # the same cases on every run and machine
        "--report", "junit,json", "--report-junit-path", str(junit), "--report-json-path", str(report_json),
        "--no-color",
    ]  # fmt: skip
    started = time.monotonic()
    # In tmp_path, so its caches (.hypothesis, .schemathesis) stay out of the repository.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    elapsed = time.monotonic() - started
    assert report_json.is_file(), f"Schemathesis wrote no report (exit {run.returncode}):\n{output[-6000:]}"
    report = json.loads(report_json.read_text())
    summary = schemathesis_summary(report)
    print(f"\n{summary}; wall {elapsed:.1f} s; JUnit report: {junit}")
    failures_at = output.find(" FAILURES ")
    shown = output[failures_at - 40 :] if failures_at >= 0 else output
    assert run.returncode == 0, f"{summary}\n\n{shown[-12000:]}\n\nhost log:\n{host.log()[-3000:]}"
    assert junit.is_file() and "<testsuite" in junit.read_text()
    ops = report["operations"]
    assert ops["tested"] == ops["selected"] == ops["total"] and ops["errored"] == 0, summary
    assert report["test_cases"]["generated"] >= 20 * ops["tested"], f"too few cases to mean much: {summary}"
    assert report["phases"]["coverage"]["status"] == report["phases"]["fuzzing"]["status"] == "success", summary


def test_function_routes_need_the_key_and_anonymous_routes_do_not(start_host):
    host = start_host("--function-key", KEY)
    jobs = host.url("/api/jobs")
    assert requests.get(jobs, timeout=5).status_code == 401
    assert requests.get(jobs, headers={"x-functions-key": "wrong"}, timeout=5).status_code == 401
    assert requests.get(jobs, params={"code": "wrong"}, timeout=5).status_code == 401
    assert requests.get(jobs, headers={"x-functions-key": KEY.upper()}, timeout=5).status_code == 401
    assert requests.post(jobs, json={"type": "echo"}, timeout=5).status_code == 401
    assert requests.get(host.url("/api/metrics"), timeout=5).status_code == 401
    # Nothing was submitted by the refused POST.
    listed = requests.get(jobs, headers={"x-functions-key": KEY}, timeout=5)
    assert listed.status_code == 200 and listed.json()["jobs"] == []
    # The key in the query works too, and the route does not take `code` for a filter.
    assert requests.get(jobs, params={"code": KEY, "limit": 1}, timeout=5).status_code == 200
    submitted = requests.post(jobs, json={"type": "echo"}, headers={"x-functions-key": KEY}, timeout=5)
    assert submitted.status_code == 202
    job_url = host.url(submitted.headers["Location"])
    assert requests.get(job_url, timeout=5).status_code == 401
    assert requests.get(job_url, params={"code": KEY}, timeout=5).json()["id"] == submitted.json()["id"]
    for path in ANONYMOUS:
        r = requests.get(host.url(path), timeout=5)
        assert r.status_code == 200 and r.content, path
    # Paths no function takes go to the anonymous fallback: a problem, not a 401.
    r = requests.get(host.url("/api/no-such-route"), timeout=5)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_documented_job_types_are_the_ones_the_app_accepts(start_host):
    host = start_host("--function-key", KEY)
    document = requests.get(host.url("/api/openapi.json"), timeout=5).json()
    documented = document["components"]["schemas"]["JobRequest"]["properties"]["type"]["enum"]
    r = requests.post(host.url("/api/jobs"), json={"type": "no-such-type"}, headers={"x-functions-key": KEY}, timeout=5)
    assert (r.status_code, r.json()["code"]) == (400, "unknown_job_type")
    assert r.json()["known_types"] == documented


def test_times_are_rfc3339_date_times_only(start_host):
    """Found by Schemathesis (`GET /api/jobs?until=0` was a 200): the document says `date-time`,
    and pydantic alone also takes a Unix time or a time without seconds."""
    host = start_host("--function-key", KEY)
    auth = {"x-functions-key": KEY}
    for value in ("0", "1700000000", "2026-01-31", "2026-01-31T12:00Z", "2026-01-31T12:00:00", "2026-01-31 12:00:00Z"):
        r = requests.get(host.url("/api/jobs"), params={"until": value}, headers=auth, timeout=5)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_parameter"), value
    for value in ("2026-01-31T12:00:00Z", "2026-01-31t12:00:00.5+02:00", "1999-12-31T23:59:59.123456789-05:30"):
        r = requests.get(host.url("/api/jobs"), params={"since": value}, headers=auth, timeout=5)
        assert r.status_code == 200, (value, r.text)
    for since in (0, "0", 1.5e9, "2026-01-31T12:00Z"):
        r = requests.post(host.url("/api/jobs/cancel"), json={"filter": {"since": since}}, headers=auth, timeout=5)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_field"), since
    r = requests.post(host.url("/api/jobs/cancel"), json={"filter": {"since": "2026-01-31T12:00:00Z"}}, headers=auth,
                      timeout=5)  # fmt: skip
    assert r.status_code == 202, r.text
