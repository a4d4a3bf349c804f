"""Heartbeats: a running attempt renews its lease while it runs, learns of a cancel from a refused
renewal, costs nothing when it ends before the first renewal, and keeps no lease past its time
limit. Sync handlers run in threads, async ones on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from azure.core.exceptions import ServiceResponseError

from shared.heartbeat import Heartbeat
from shared.job import Status, utcnow
from shared.registry import Registry
from shared.store import ConcurrencyConflict
from shared.worker import Outcome
from tests.blocking import unwrap
from tests.integration.conftest import deliver, run_until


def with_handlers(services, reg: Registry):
    services.worker.registry = reg
    services.service.registry = reg
    return services


def test_a_job_shorter_than_one_heartbeat_renews_nothing(services_factory):
    services = services_factory(JOBS_HEARTBEAT_SECONDS="5")
    services.service.submit("echo", 1)
    counter = services.storage.counter
    counter.reset()
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert counter.snapshot()[("table", "PATCH")] == 2  # the claim and the result: no renewal


def test_a_long_job_renews_its_lease_while_it_runs(services_factory):
    services = services_factory(JOBS_HEARTBEAT_SECONDS="0.2", JOBS_LEASE_SECONDS="1")
    store = unwrap(services).store  # on the loop itself: the async store, not the sync view
    reg = Registry()
    leases = []

    @reg.handler("long")
    async def long(ctx):
        for _ in range(6):
            await asyncio.sleep(0.25)
            leases.append((await store.get(ctx.id)).job.lease_until)
        return "done"

    with_handlers(services, reg)
    job = services.service.submit("long", None).job
    counter = services.storage.counter
    counter.reset()
    assert deliver(services) == [Outcome.SUCCEEDED]  # 1.5 s of running, past the 1 s lease
    assert len(set(leases)) >= 4 and leases == sorted(leases)  # the lease moved on as it ran
    renewals = counter.snapshot()[("table", "PATCH")] - 2
    assert 5 <= renewals <= 8  # one per 0.2 s of running time (the test's own reads are GETs)
    assert services.service.get(job.id).result == "done"


def test_an_async_handler_is_stopped_by_a_cancel_within_one_renewal_without_a_checkpoint(services_factory):
    services = services_factory(JOBS_HEARTBEAT_SECONDS="0.2")
    reg = Registry()
    reached = []

    @reg.handler("forever")
    async def forever(ctx):
        await asyncio.sleep(30)  # never checks for a cancel
        reached.append("end")

    with_handlers(services, reg)
    job = services.service.submit("forever", None).job

    def cancel_soon():
        time.sleep(0.3)
        services.service.cancel(job.id)

    threading.Thread(target=cancel_soon).start()
    started = time.monotonic()
    assert deliver(services) == [Outcome.CANCELLED]
    assert time.monotonic() - started < 2 and reached == []
    assert services.service.get(job.id).status is Status.CANCELLED


def test_a_sync_handler_past_its_time_limit_fails_as_timed_out_and_its_result_is_dropped(services_factory):
    services = services_factory(JOBS_HEARTBEAT_SECONDS="0.2", JOBS_LEASE_SECONDS="1")
    reg = Registry()
    finished = threading.Event()

    @reg.handler("stuck", time_limit_seconds=0.5, max_attempts=1)
    def stuck(ctx):
        time.sleep(1.5)  # a thread cannot be interrupted
        finished.set()
        return "too late"

    with_handlers(services, reg)
    job = services.service.submit("stuck", None).job
    assert deliver(services) == [Outcome.DEAD_LETTERED]
    dead = services.service.get(job.id)
    assert "time limit of 0.5 s" in dead.errors[-1]["error"] and dead.result is None
    assert finished.wait(5)  # the thread ran on to its end...
    time.sleep(0.3)
    after = services.service.get(job.id)
    assert (after.status, after.result) == (Status.DEAD_LETTERED, None)  # ...and what it returned was dropped


def test_an_async_handler_past_its_time_limit_is_cancelled(services_factory):
    services = services_factory()
    reg = Registry()
    stopped = []

    @reg.handler("slow", time_limit_seconds=0.3, max_attempts=1)
    async def slow(ctx):
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            stopped.append("cancelled")
            raise

    with_handlers(services, reg)
    job = services.service.submit("slow", None).job
    started = time.monotonic()
    assert deliver(services) == [Outcome.DEAD_LETTERED]
    assert time.monotonic() - started < 3 and stopped == ["cancelled"]
    assert "TimeoutError" in services.service.get(job.id).errors[-1]["error"]


def test_the_lease_is_not_renewed_past_the_time_limit(services_factory):
    services = services_factory(JOBS_HEARTBEAT_SECONDS="0.1", JOBS_LEASE_SECONDS="5")
    reg = Registry()
    seen = []

    @reg.handler("overrun", time_limit_seconds=0.4, max_attempts=1)
    def overrun(ctx):
        for _ in range(8):
            time.sleep(0.1)
            seen.append(services.store.get(ctx.id))
        return None

    with_handlers(services, reg)
    services.service.submit("overrun", None)
    deliver(services)
    running = [v.job for v in seen if v and v.job.status is Status.RUNNING]
    limit = running[0].started_at.timestamp() + 0.4
    assert running and all(j.lease_until.timestamp() <= limit + 0.01 for j in running)  # never past the limit


def test_sync_handlers_run_in_a_bounded_pool_and_async_ones_on_the_loop(services_factory):
    services = services_factory(JOBS_SYNC_HANDLER_THREADS="2")
    reg = Registry()
    threads: set[str] = set()
    loops = []

    @reg.handler("sync")
    def sync_handler(ctx):
        threads.add(threading.current_thread().name)
        time.sleep(0.1)

    @reg.handler("async")
    async def async_handler(ctx):
        loops.append(asyncio.get_running_loop())

    with_handlers(services, reg)
    for _ in range(6):
        services.service.submit("sync", None)
    services.service.submit("async", None)
    while deliver(services):
        pass
    assert len(threads) <= 2 and all(name.startswith("handler") for name in threads)
    assert loops == [services._portal.loop]  # the worker's own loop, not a new one per job


def deliver_together(services) -> list[Outcome]:
    """Like `deliver`, but the batch's messages are processed at once, as the host does."""
    raw = unwrap(services)

    async def batch() -> list[Outcome]:
        queue = raw.storage.queue
        messages = [m async for m in queue.receive_messages(messages_per_page=32, visibility_timeout=60)]

        async def one(message):
            outcome = await raw.worker.process(message.content)
            await queue.delete_message(message)
            return outcome

        return list(await asyncio.gather(*(one(m) for m in messages)))

    return services._portal.run(batch())


def test_a_sync_handlers_time_limit_starts_when_it_has_a_thread(services_factory):
    """A sync job takes its thread before its claim: one that waited for the only thread still
    gets its whole time limit, and its start time is when it began to run."""
    services = services_factory(JOBS_SYNC_HANDLER_THREADS="1")
    reg = Registry()

    @reg.handler("nap", time_limit_seconds=1.0, max_attempts=1)
    def nap(ctx):
        time.sleep(0.6)
        return ctx.attempt

    with_handlers(services, reg)
    ids = [services.service.submit("nap", None).job.id for _ in range(2)]
    assert deliver_together(services) == [Outcome.SUCCEEDED] * 2  # 1.2 s in all, 0.6 s each
    first, second = sorted((services.service.get(i) for i in ids), key=lambda j: j.started_at)
    assert second.started_at >= first.finished_at - timedelta(milliseconds=50)


def test_sync_jobs_go_back_to_the_queue_while_every_thread_is_held_past_its_limit(services_factory):
    """A sync handler past its time limit keeps its thread until it returns. A sync job that finds
    no thread free within JOBS_LEASE_SECONDS is sent back for later, its attempt unspent, and runs
    once a thread is free; async jobs run meanwhile."""
    services = services_factory(JOBS_SYNC_HANDLER_THREADS="1", JOBS_LEASE_SECONDS="1", JOBS_HEARTBEAT_SECONDS="0.2")
    reg = Registry()
    unstuck = threading.Event()

    @reg.handler("hang", time_limit_seconds=0.3, max_attempts=1)
    def hang(ctx):
        unstuck.wait(10)

    @reg.handler("quick")
    def quick(ctx):
        return "ran"

    @reg.handler("async")
    async def async_handler(ctx):
        return "ran"

    with_handlers(services, reg)
    services.service.submit("hang", None)
    assert deliver(services) == [Outcome.DEAD_LETTERED]  # timed out; its thread runs on
    waiting = services.service.submit("quick", None).job
    ran = services.service.submit("async", None).job
    started = time.monotonic()
    assert sorted(deliver_together(services)) == sorted([Outcome.WAITING, Outcome.SUCCEEDED])
    assert 0.9 < time.monotonic() - started < 5
    back = services.service.get(waiting.id)
    assert (back.status, back.attempt, back.started_at) == (Status.QUEUED, 1, None)  # nothing spent
    assert services.service.get(ran.id).status is Status.SUCCEEDED

    unstuck.set()
    deadline = time.monotonic() + 10
    while services.service.get(waiting.id).status is not Status.SUCCEEDED:
        assert time.monotonic() < deadline
        deliver(services)
        time.sleep(0.1)
    done = services.service.get(waiting.id)
    assert (done.attempt, done.result, done.errors) == (1, "ran", ())


def test_a_renewal_refused_because_its_own_resent_first_try_landed_keeps_the_attempt(services):
    """The SDK sends a write again when its answer is lost (a timeout, a 503). If the first try
    was applied, the resend fails its condition: the record then holds exactly this renewal, and
    the attempt goes on with it. A real change (a cancel) still stops the attempt."""
    job = services.service.submit("echo", 1).job
    found = services.store.get(job.id)
    claimed = services.store.replace(found.job.claim(1, timedelta(seconds=60)), found.etag, was=Status.QUEUED)
    beat = Heartbeat(unwrap(services.store), claimed, timedelta(seconds=60), 20, utcnow() + timedelta(minutes=5),
                     on_lost=lambda: None)  # fmt: skip
    until = utcnow() + timedelta(seconds=60)
    first_try = services.store.update(replace(claimed.job, lease_until=until), claimed.etag, ("lease_until",))

    services._portal.run(beat._renew(until))  # the resend, with the ETag from before the first try
    assert (beat.current.etag, beat.renewals) == (first_try.etag, 1)

    services.service.cancel(job.id)
    with pytest.raises(ConcurrencyConflict):
        services._portal.run(beat._renew(until + timedelta(seconds=20)))


def renewal_answers_lost(services, renewals=1):
    """The first `renewals` lease renewals land, but the caller gets an error (a timeout after the
    SDK's own retries): the worker is left holding the ETag from before them."""
    store = unwrap(services).store
    update = store.update
    left = [renewals]

    async def landed_then_failed(job, etag, fields):
        written = await update(job, etag, fields)
        if fields == ("lease_until",) and left[0] > 0:
            left[0] -= 1
            raise ServiceResponseError("the answer timed out")
        return written

    store.update = landed_then_failed


@pytest.mark.parametrize(("runs_for", "fails"), [(0.3, False), (0.7, False), (0.3, True)])
def test_a_renewal_that_landed_though_its_answer_was_an_error_keeps_the_attempt(services_factory, runs_for, fails):
    """The attempt goes on from the record that renewal left: the next renewal (0.7 s) or the
    final write (0.3 s, before the next renewal: a result, or a failure that schedules a retry)
    reads it once and writes again. Before, the next write was refused and the attempt taken
    for lost: cancelled, or its outcome dropped until its lease ran out."""
    services = services_factory(JOBS_HEARTBEAT_SECONDS="0.2", JOBS_LEASE_SECONDS="1")
    reg = Registry()

    @reg.handler("steady")
    async def steady(ctx):
        await asyncio.sleep(runs_for)
        if fails and ctx.attempt == 1:
            raise RuntimeError("once")
        return "done"

    with_handlers(services, reg)
    job = services.service.submit("steady", None).job
    renewal_answers_lost(services)
    if fails:
        assert deliver(services) == [Outcome.RETRY_SCHEDULED]
        assert run_until(services, lambda: services.service.get(job.id).status.terminal) == [Outcome.SUCCEEDED]
    else:
        assert deliver(services) == [Outcome.SUCCEEDED]
    done = services.service.get(job.id)
    assert (done.status, done.attempt, done.result) == (Status.SUCCEEDED, 1 + fails, "done")
