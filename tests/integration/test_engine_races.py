"""Races between a running attempt, the reconciler and the host's poison queue, each found in a
review of the engine: every test failed on the code before its fix."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import timedelta

from shared.job import Status, utcnow
from shared.registry import Registry
from shared.retry import RetryLater
from shared.service import Conflict
from shared.worker import CLAIM_FIELDS, LEASE_EXPIRED, Outcome
from tests.integration.conftest import deliver


def depth(services) -> int:
    return services.storage.queue.get_queue_properties().approximate_message_count


def wait_until_running(services, job_id: str) -> None:
    deadline = time.monotonic() + 10
    while services.service.get(job_id).status is not Status.RUNNING:
        assert time.monotonic() < deadline, "the attempt never started"
        time.sleep(0.05)


def test_a_lease_repair_decided_on_a_stale_read_loses_to_a_renewal_made_since(services_factory):
    """The reconciler read a lease that had run out; the attempt's worker then renewed it. The
    repair's write must lose: writing over the renewal would run two attempts at once."""
    registry = Registry()
    registry.handler("x")(lambda ctx: 1)
    services = services_factory(job_registry=registry)
    store = services.store
    job = services.service.submit("x", None).job
    found = store.get(job.id)
    expired = found.job.claim(1, timedelta(seconds=60), utcnow() - timedelta(seconds=61))
    claimed = store.write_own(found, expired, CLAIM_FIELDS)
    stale = store.get(job.id, load_blobs=False)
    assert stale.job.lease_expired()
    store.write_own(claimed, replace(claimed.job, lease_until=utcnow() + timedelta(seconds=60)), ("lease_until",))

    after = services.worker.fail_attempt(stale, LEASE_EXPIRED)

    now = store.get(job.id).job
    assert after is None and (now.status, now.attempt) == (Status.RUNNING, 1), (now.status, now.attempt)


def test_a_retry_asked_for_more_than_7_days_ahead_is_enqueued_once_due(services_factory):
    """A queue message can be hidden 7 days at most. A RetryLater further ahead has no message:
    the job goes on the watch list, and the reconciler enqueues it once it is due."""
    registry = Registry()

    @registry.handler("later")
    def later(ctx):
        if ctx.attempt == 1:
            raise RetryLater("upstream says: come back in 8 days", delay=8 * 86400)
        return "done"

    services = services_factory(job_registry=registry)
    job = services.service.submit("later", None).job
    assert deliver(services) == [Outcome.RETRY_SCHEDULED]
    queued = services.service.get(job.id)
    assert (queued.status, queued.attempt, depth(services)) == (Status.QUEUED, 2, 0)
    services.reconciler.run(now=utcnow() + timedelta(days=7))
    assert depth(services) == 0  # not due yet: nothing put early

    services.reconciler.run(now=utcnow() + timedelta(days=8, minutes=5))

    assert depth(services) == 1, f"job {job.id} is {services.service.get(job.id).status} with no message: lost"


def test_a_poisoned_copy_of_a_message_does_not_dead_letter_the_attempt_running_it(services_factory):
    """A copy of the message of an attempt that a worker is running (and renewing) failed until
    the host moved it to the poison queue: the attempt goes on and ends as it would have."""
    release = threading.Event()
    registry = Registry()

    @registry.handler("gated")
    async def gated(ctx):
        while not release.is_set():
            await asyncio.sleep(0.02)
        return "fine"

    services = services_factory(job_registry=registry)
    job = services.service.submit("gated", None).job
    body = services.storage.queue.peek_messages(max_messages=1)[0].content
    runner = threading.Thread(target=lambda: deliver(services))
    runner.start()
    try:
        wait_until_running(services, job.id)
        services.storage.poison_queue.send_message(body)
        services.reconciler.run()
        during = services.service.get(job.id).status
    finally:
        release.set()
        runner.join(10)
    assert during is Status.RUNNING
    assert services.service.get(job.id).status is Status.SUCCEEDED
    assert services.storage.poison_queue.peek_messages(max_messages=1) == []  # the copy is gone


def test_a_stale_attempts_late_large_result_neither_replaces_the_winners_nor_stays_behind(services_factory):
    """Attempt 1's lease ran out (its renewals failed), attempt 2 succeeded with a result large
    enough for a blob; then attempt 1 returns. Its write is refused, and its blob must not have
    replaced attempt 2's, nor be left with no record naming it."""
    release = threading.Event()
    registry = Registry()

    @registry.handler("big")
    async def big(ctx):
        if ctx.attempt == 1:
            while not release.is_set():
                await asyncio.sleep(0.02)
        return {"attempt": ctx.attempt, "pad": "x" * 40_000}

    services = services_factory(job_registry=registry)
    job = services.service.submit("big", None).job
    first: list[Outcome] = []
    runner = threading.Thread(target=lambda: first.extend(deliver(services)))
    runner.start()
    try:
        wait_until_running(services, job.id)
        assert services.reconciler.run(now=utcnow() + timedelta(minutes=2))["lease_expired"] == 1
        second: list[Outcome] = []
        deadline = time.monotonic() + 20
        while not second:  # attempt 2, once its backoff has passed
            assert time.monotonic() < deadline
            second = deliver(services)
            time.sleep(0.1)
        assert second == [Outcome.SUCCEEDED]
    finally:
        release.set()
        runner.join(10)
    assert first == [Outcome.STALE]
    shown = services.service.get(job.id)
    assert (shown.status, shown.attempt, shown.result["attempt"]) == (Status.SUCCEEDED, 2, 2)
    blobs = sorted(b.name for b in services.storage.container.list_blobs(name_starts_with=f"{job.id}/"))
    assert blobs == [f"{job.id}/result.2.json"]


def test_a_retry_after_a_cancel_waits_for_the_sync_handler_still_running(services_factory):
    """A cancel cannot stop a sync handler that does not call ctx.checkpoint(): while it runs, its
    heartbeat keeps the cancelled record's lease, so a retry is refused until it has returned and
    two attempts of one job never run at once."""
    spans: list[tuple[int, float, float]] = []
    registry = Registry()

    @registry.handler("slow")
    def slow(ctx):
        began = time.monotonic()
        time.sleep(3)
        spans.append((ctx.attempt, began, time.monotonic()))

    services = services_factory(job_registry=registry, JOBS_LEASE_SECONDS="1", JOBS_HEARTBEAT_SECONDS="0.2")
    job = services.service.submit("slow", None).job
    runner = threading.Thread(target=lambda: deliver(services))
    runner.start()
    try:
        wait_until_running(services, job.id)
        services.service.cancel(job.id)
        refused = 0
        deadline = time.monotonic() + 15
        while True:  # a user retrying as soon as the API lets them
            assert time.monotonic() < deadline, "the retry was refused for good"
            try:
                services.service.redrive(job.id)
                break
            except Conflict:
                refused += 1
                time.sleep(0.1)
        assert refused > 0
        assert deliver(services) == [Outcome.SUCCEEDED]
    finally:
        runner.join(10)
    (_, _, first_ended), (_, second_began, _) = sorted(spans)
    assert first_ended <= second_began, "attempt 2 started while attempt 1 still ran"
