"""Jobs too old for the reconciler's window (it reads by first due time, which never changes) are
on its watch list while they are live, so a worker lost in their attempt is still found: when
such a job is claimed, or when a renewal takes its lease past the window's reach. A plain job is
never watched (its cost is pinned in test_pipeline.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

from shared import reconciler
from shared.job import Job, Status, utcnow
from shared.messages import enqueue
from shared.registry import Registry
from shared.watchlist import MARGIN
from shared.worker import Outcome
from tests.blocking import unwrap
from tests.integration.conftest import deliver, messages_in, record_reads, run_until


def submit_first_due(services, job_type: str, first_due) -> Job:
    """A job as if submitted when it was first due: its row key says so, as a redriven, long
    parked or long waiting job's does."""
    raw = unwrap(services)
    written = services.store.insert(Job.new(job_type, None, 3, shard=0, now=first_due))
    services._portal.run(enqueue(raw.storage, written.job, written.etag))
    return written.job


def watched(services) -> list[str]:
    return [entry.job_id for entry in services.service.watchlist.entries()]


def test_an_old_job_whose_worker_is_lost_mid_attempt_is_repaired_though_its_message_is_gone(services_factory):
    services = services_factory(JOBS_LEASE_SECONDS="3", JOBS_HEARTBEAT_SECONDS="2")
    raw = unwrap(services)
    reg = Registry()
    started = asyncio.Event()

    @reg.handler("old")
    async def old(ctx):
        if ctx.attempt == 1:
            started.set()
            await asyncio.sleep(3600)
        return "ok"

    services.worker.registry = services.service.registry = reg
    job = submit_first_due(services, "old", utcnow() - timedelta(hours=3))

    async def attempt_cut_off() -> None:
        """The host cancels the invocation mid-attempt (or dies): nothing is written."""
        message = [m async for m in raw.storage.queue.receive_messages(visibility_timeout=1)][0]
        task = asyncio.ensure_future(raw.worker.process(message.content))
        await started.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    services._portal.run(attempt_cut_off())
    assert services.service.get(job.id).status is Status.RUNNING
    assert watched(services) == [job.id]  # written before the claim

    time.sleep(1.2)  # the message comes back while the lease holds: a duplicate, deleted
    assert deliver(services) == [Outcome.DUPLICATE]
    assert services.storage.queue.peek_messages() == []

    time.sleep(2)  # the lease runs out; the job is three hours outside the reconciler's window
    assert services.reconciler.run()["lease_expired"] == 1
    assert (services.service.get(job.id).status, services.service.get(job.id).attempt) == (Status.QUEUED, 2)
    assert run_until(services, lambda: services.service.get(job.id).status.terminal) == [Outcome.SUCCEEDED]
    assert services.service.get(job.id).result == "ok"
    assert watched(services) == []  # the attempt that ended it took it off the list


def test_a_renewal_that_takes_the_lease_past_the_windows_reach_watches_the_job_first(services_factory):
    services = services_factory(JOBS_LEASE_SECONDS="2", JOBS_HEARTBEAT_SECONDS="0.5")
    raw = unwrap(services)
    reg = Registry()
    seen: dict[str, list[str]] = {}

    @reg.handler("long")
    async def long(ctx):
        for when, seconds in (("early", 1), ("late", 3.5)):
            await asyncio.sleep(seconds)
            seen[when] = [entry.job_id for entry in await raw.service.watchlist.entries()]
        return "done"

    services.worker.registry = services.service.registry = reg
    # Leaves the window 5 s from now (the window less its margin): the claim's 2 s lease ends
    # before that, a renewal 3 s in takes it past.
    first_due = utcnow() - raw.reconciler.window + MARGIN + timedelta(seconds=5)
    job = submit_first_due(services, "long", first_due)
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert seen == {"early": [], "late": [job.id]}
    assert watched(services) == []  # the success took it off the list


def test_the_reconciler_takes_an_ended_jobs_entry_off_once_it_has_settled(services_factory):
    services = services_factory()
    job = services.service.submit("echo", 1).job
    assert deliver(services) == [Outcome.SUCCEEDED]
    services.service.watchlist.add(job.id)  # as a redrive does just before its write
    services.reconciler.run()
    assert watched(services) == [job.id]  # fresh: it may guard a write about to happen
    services.reconciler.run(now=utcnow() + timedelta(minutes=2))
    assert watched(services) == []


def test_a_run_reads_a_bounded_number_of_watched_jobs_in_turn(services, monkeypatch):
    """A bulk retry of thousands of old jobs watches them all: each run reads at most
    WATCHED_PER_RUN of them, going on where the last stopped, so every one is looked at within a
    few runs and no run grows with the list."""
    monkeypatch.setattr(reconciler, "WATCHED_PER_RUN", 2)
    jobs = [services.store.insert(Job.new("echo", n, 3, shard=0, now=utcnow() - timedelta(hours=3))).job
            for n in range(5)]  # fmt: skip
    for job in jobs:  # live again, and their messages lost
        services.service.watchlist.add(job.id)
    with record_reads(services) as reads:
        runs = [services.reconciler.run() for _ in range(3)]
    assert [run["requeued"] for run in runs] == [2, 2, 1]
    assert [run["watched_deferred"] for run in runs] == [1, 1, 1]  # more watched than a run reads
    assert sorted(set(reads)) == sorted(job.id for job in jobs) and len(reads) == 6  # 2 per run
    assert sorted(m.id for m in messages_in(services)) == sorted(job.id for job in jobs)


def test_a_run_keeps_an_entry_a_redrive_wrote_after_the_run_read_it(services_factory):
    """The reconciler removes a finished job's entry only if nobody wrote it since it was listed:
    a redrive landing mid-run writes the entry again before its job, and the job stays guarded."""
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0.2")
    raw = unwrap(services)
    old = submit_first_due(services, "fail", utcnow() - timedelta(hours=3))
    assert run_until(services, lambda: services.service.get(old.id).status is Status.DEAD_LETTERED)
    services.service.watchlist.add(old.id)  # an entry left over, settled by the run's `now`
    read_all = raw.reconciler._read_all

    async def redrive_after_the_reads(job_ids):
        records = await read_all(job_ids)  # the job read as dead-lettered...
        await raw.service.redrive(old.id)  # ...then redriven: its entry written again, then the job
        return records

    raw.reconciler._read_all = redrive_after_the_reads
    services.reconciler.run(now=utcnow() + timedelta(minutes=2))
    raw.reconciler._read_all = read_all
    assert watched(services) == [old.id] and services.service.get(old.id).status is Status.QUEUED
    services.storage.queue.clear_messages()  # and its message is lost
    assert services.reconciler.run(now=utcnow() + timedelta(minutes=10))["requeued"] == 1


def test_a_job_put_back_with_its_first_start_ahead_is_not_watched_until_then(services, monkeypatch):
    """A delayed job cancelled then retried keeps its start time: the window reaches it once it is
    due, so it is not watched (each entry costs a read every run). One a bulk retry watched before
    its write is taken off at the reconciler's next run."""
    later = services.service.submit("echo", 1, delay_seconds=3600).job
    services.service.cancel(later.id)
    services.service.redrive(later.id)
    assert watched(services) == []
    bulk = services.service.submit("echo", 2, delay_seconds=3600).job
    services.service.cancel(bulk.id)
    services.service.watchlist.add(bulk.id)  # as a bulk retry does for its page, before the writes
    services.service.redrive(bulk.id, watched=True)
    assert watched(services) == [bulk.id]
    monkeypatch.setattr(reconciler, "ENTRY_SETTLE", timedelta(0))
    services.reconciler.run()
    assert watched(services) == []
    assert services.service.get(bulk.id).status is Status.QUEUED  # left queued, its message hidden till due
