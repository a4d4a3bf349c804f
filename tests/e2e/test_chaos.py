"""The short chaos run of `make chaos`: a few hundred jobs through three hosts, one host killed
mid-run, junk injected, Azurite restarted; nothing may be lost or finished twice."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tools.azurite import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_short_chaos_run_loses_nothing(tmp_path):
    out = tmp_path / "out" / "chaos.json"  # a folder that does not exist yet, as in a fresh clone
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--jobs", "300", "--instances", "3", "--kill-every", "4",
         "--kills", "1", "--azurite-restart", "--timeout", "170", "--settings", "fast", "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["lost"] == 0 and result["double_terminal_writes"] == 0 and result["attempt_mismatches"] == 0
    assert result["kills"] == 1 and result["azurite_restarted"] and result["injected_malformed"] >= 2
    # The double-write check reads the hosts' logs. A kill or the outage can cut off the log line
    # of a write already made, at most one per invocation in flight (batchSize 16 + 8 fetched early).
    assert result["terminal_writes_logged"] + result["terminal_writes_unlogged"] == 300
    assert result["terminal_writes_unlogged"] <= 24 * (result["kills"] + 1)
    assert result["client_resubmissions"] == 0  # retried batches carry their Idempotency-Key
