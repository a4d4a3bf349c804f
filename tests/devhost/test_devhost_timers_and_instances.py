"""Timer triggers and `--instances` through `python -m devhost`."""

from __future__ import annotations

import os
import re
import signal
import time

import requests


def test_run_on_startup_fires_once_at_start_even_when_not_due(devhost):
    host = devhost()  # the settings file's schedule is never due during the test
    host.wait(lambda: len(host.records("timer")) == 1, 10, "the startup run")
    time.sleep(1)
    assert [r["value"] for r in host.records("timer")] == ["False"]  # past_due False


def test_six_field_schedule_with_seconds_fires_every_second(devhost):
    host = devhost(schedule="*/1 * * * * *")  # the environment wins over the settings file
    host.wait(lambda: len(host.records("timer")) >= 3, 10, "the startup run and two scheduled runs")
    first, second = [r["t"] for r in host.records("timer")][1:3]  # after the startup run
    assert 0.3 < second - first < 1.7, second - first


def test_instances_share_the_port_and_a_timer_runs_on_one_instance_until_it_dies(devhost):
    host = devhost("--instances", "2", schedule="*/1 * * * * *", instances=2)
    # SO_REUSEPORT: the kernel spreads new connections over both instances.
    seen = {requests.get(f"{host.base}/whoami", timeout=5).json()["instance"] for _ in range(40)}
    assert seen == {"0", "1"}

    host.wait(lambda: len(host.records("timer")) >= 3, 10, "timer runs")
    time.sleep(1)
    before = host.records("timer")
    holders = {r["instance"] for r in before}
    assert len(holders) == 1, before  # the blob lease keeps the timer on one instance
    holder = before[0]
    killed_at = time.time()
    os.kill(holder["pid"], signal.SIGKILL)  # a crash: the lease is not released, it lapses
    host.wait(lambda: "exited with signal SIGKILL" in host.text(), 5, "the supervisor to report the crash")

    other = "1" if holder["instance"] == "0" else "0"
    host.wait(lambda: any(r["instance"] == other for r in host.records("timer")), 30, "the other instance")
    after = host.records("timer")
    took_over = min(r["t"] for r in after if r["instance"] == other)
    assert took_over - killed_at > 5  # not before the dead holder's 15 s lease lapsed (renewed every 5 s)
    assert all(r["t"] < killed_at + 0.5 for r in after if r["instance"] == holder["instance"])
    assert host.started() == 2  # no restart without --restart
    assert host.proc.poll() is None  # the supervisor keeps serving with one instance


def test_restart_flag_replaces_a_killed_instance_and_sigterm_stops_all_with_exit_0(devhost):
    host = devhost("--instances", "2", "--restart", instances=2)
    pids = {int(i): int(p) for i, p in re.findall(r"Started instance (\d) \(pid (\d+)\)", host.text())}
    os.kill(pids[1], signal.SIGKILL)
    host.wait(lambda: host.started() == 3, 20, "instance 1 to be restarted")
    new_pids = {int(i): int(p) for i, p in re.findall(r"Started instance (\d) \(pid (\d+)\)", host.text())}
    assert new_pids[1] != pids[1] and new_pids[0] == pids[0]

    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(timeout=30) == 0
    for pid in new_pids.values():
        assert not _alive(pid), f"instance pid {pid} still running"
    text = host.text()
    assert "Host stopped (instance 0)" in text and "Host stopped (instance 1)" in text
    for bad in ("Unclosed", "Task was destroyed", "Traceback"):
        assert bad not in text, text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too: its parent (the supervisor) has exited.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"
