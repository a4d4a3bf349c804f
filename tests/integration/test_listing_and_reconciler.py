"""Listing newest first across partitions, the reconciler's repairs, and storage cost per job."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

import pytest

from shared import store as store_module
from shared.job import Job, Status, utcnow
from shared.messages import JobMessage
from shared.store import BadContinuation
from shared.worker import Outcome
from tests.blocking import unwrap
from tests.integration.conftest import deliver, messages_in, run_until


def submit_many(services, n, job_type="echo"):
    ids = []
    for i in range(n):
        ids.append(services.service.submit(job_type, i).job.id)
        time.sleep(0.002)  # distinct due times in ms
    return ids


def test_listing_is_newest_first_across_partitions_and_pages_without_gaps(services):
    ids = submit_many(services, 23)
    seen, token, pages = [], None, 0
    while True:
        page = services.store.list(limit=5, continuation=token)
        seen += [j.id for j in page.jobs]
        pages += 1
        token = page.continuation
        if token is None:
            break
        assert pages < 20
    assert seen == list(reversed(ids))
    assert len({j[:2] for j in ids}) > 1  # the jobs really were spread over partitions


def test_listing_filters_by_status_and_type(services):
    echo = submit_many(services, 3)
    sleepers = [services.service.submit("sleep", {"seconds": 0}).job.id for _ in range(2)]
    services.service.cancel(echo[0])
    assert [j.id for j in services.store.list(status="cancelled").jobs] == [echo[0]]
    assert sorted(j.id for j in services.store.list(job_type="sleep").jobs) == sorted(sleepers)
    assert services.store.list(status="succeeded").jobs == []


def test_continuation_token_is_checked(services):
    submit_many(services, 3)
    token = services.store.list(limit=1).continuation
    with pytest.raises(BadContinuation, match="other filters"):
        services.store.list(status="queued", limit=1, continuation=token)
    with pytest.raises(BadContinuation):
        services.store.list(continuation="garbage!")


def test_listing_cost_is_one_query_per_partition(services):
    submit_many(services, 10)
    before = services.storage.counter.total("table")
    services.store.list(limit=50)
    assert services.storage.counter.total("table") - before == services.config.partitions


def test_reconciler_enqueues_a_job_whose_message_was_lost(services_factory):
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0.2")
    job = services.service.submit("echo", 1).job
    services.storage.queue.clear_messages()  # the API died between insert and enqueue
    time.sleep(0.3)
    assert services.reconciler.run()["requeued"] == 1
    assert [(m.id, m.attempt) for m in messages_in(services)] == [(job.id, 1)]
    assert deliver(services) == [Outcome.SUCCEEDED]


def test_reconciler_leaves_fresh_queued_jobs_alone(services):
    services.service.submit("echo", 1)
    assert services.reconciler.run()["requeued"] == 0
    assert len(messages_in(services)) == 1


def test_reconciler_does_not_duplicate_a_message_waiting_behind_a_backlog(services_factory):
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0.2")
    job = services.service.submit("echo", 1).job
    time.sleep(0.3)  # overdue, but its message is still in the queue (a backlog, not a loss)
    before = services.storage.counter.total("queue")
    done = services.reconciler.run()
    # Each queue's depth and its poison queue's (6 calls); a poison queue is read, and a queue's
    # head peeked (also the overview's oldest message), only when its depth is not 0: here the
    # normal queue's (1). Never a call per job.
    assert services.storage.counter.total("queue") - before == 7
    assert done["requeued"] == 0 and done["requeue_deferred"] == 1
    assert [(m.id, m.attempt) for m in messages_in(services)] == [(job.id, 1)]
    services.storage.queue.clear_messages()  # now it is lost: the next run puts it back
    assert services.reconciler.run()["requeued"] == 1
    assert deliver(services) == [Outcome.SUCCEEDED]


def test_a_job_left_for_later_stays_in_the_reconcilers_window(services_factory):
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0")
    job = services.service.submit("echo", 1).job
    assert services.reconciler.run()["requeue_deferred"] == 1  # its message is still queued
    # Two hours on, the job is older than the 1-hour window a run looks back over from the last
    # run; the deferral kept the window's start at the job, so it is still looked at.
    later = utcnow() + timedelta(hours=2)
    assert services.reconciler.run(now=later)["requeue_deferred"] == 1
    services.storage.queue.clear_messages()
    assert services.reconciler.run(now=later + timedelta(hours=1))["requeued"] == 1
    assert [(m.id, m.attempt) for m in messages_in(services)] == [(job.id, 1)]


def test_reconciler_gives_an_expired_lease_its_next_attempt(services_factory):
    services = services_factory(JOBS_LEASE_SECONDS="0.2", JOBS_HEARTBEAT_SECONDS="0.1")
    job = services.service.submit("echo", 1).job
    services.storage.queue.clear_messages()
    found = services.store.get(job.id)
    services.store.replace(found.job.claim(1, timedelta(seconds=0.2)), found.etag, was=Status.QUEUED)  # worker dies
    time.sleep(0.3)
    assert services.reconciler.run()["lease_expired"] == 1
    record = services.service.get(job.id)
    assert (record.status, record.attempt) == (Status.QUEUED, 2)
    assert run_until(services, lambda: services.service.get(job.id).status.terminal) == [Outcome.SUCCEEDED]


def test_reconciler_dead_letters_an_expired_lease_on_the_last_attempt(services_factory):
    services = services_factory(JOBS_LEASE_SECONDS="0.2", JOBS_HEARTBEAT_SECONDS="0.1")
    job = services.service.submit("echo", 1, max_attempts=1).job
    found = services.store.get(job.id)
    services.store.replace(found.job.claim(1, timedelta(seconds=0.2)), found.etag, was=Status.QUEUED)
    time.sleep(0.3)
    services.reconciler.run()
    assert services.service.get(job.id).status is Status.DEAD_LETTERED


def test_reconciler_dead_letters_jobs_whose_message_was_poisoned(services):
    job = services.service.submit("echo", 1).job
    services.storage.queue.clear_messages()
    services.storage.poison_queue.send_message(JobMessage(job.id, 1).encode())  # as the host does
    services.storage.poison_queue.send_message("garbage")  # set aside by the worker earlier
    done = services.reconciler.run()
    assert done["poison_dead_lettered"] == 1 and done["poison_set_aside"] == 1
    dead = services.service.get(job.id)
    assert dead.status is Status.DEAD_LETTERED and "poison" in dead.errors[-1]["error"]
    # The job's poison message is consumed; the malformed one stays for an operator.
    assert services.storage.poison_queue.get_queue_properties().approximate_message_count == 1
    services.service.redrive(job.id)
    assert deliver(services) == [Outcome.SUCCEEDED]


def test_reconciler_requeues_a_redriven_job_whose_message_was_lost(services_factory):
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0.2")
    job = services.service.submit("echo", 1).job
    services.service.cancel(job.id)
    services.storage.queue.clear_messages()
    services.service.redrive(job.id)
    services.storage.queue.clear_messages()  # the redrive's put was lost
    time.sleep(0.3)
    assert services.reconciler.run()["requeued"] == 1
    assert deliver(services) == [Outcome.SUCCEEDED]
    services.reconciler.run()
    assert len(services.service.watchlist.entries()) == 1  # a fresh entry may be a redrive's: kept a minute
    services.reconciler.run(now=utcnow() + timedelta(minutes=2))
    assert services.service.watchlist.entries() == []


def test_delay_beyond_seven_days_is_held_in_the_record_until_due(services_factory):
    services = services_factory(JOBS_RECONCILE_GRACE_SECONDS="0")
    job = services.service.submit("echo", 1, delay_seconds=8 * 24 * 3600).job
    assert messages_in(services) == []  # too far for a queue message
    assert services.reconciler.run()["requeued"] == 0
    later = job.due_at + timedelta(seconds=1)
    assert services.reconciler.run(now=later)["requeued"] == 1


def test_retention_deletes_old_finished_jobs_only(services):
    old = services.service.submit("echo", 1, idempotency_key="old").job
    deliver(services)
    keep = services.service.submit("echo", 2).job
    future = utcnow() + timedelta(days=8)
    assert services.reconciler.run(now=future)["deleted"] == 1
    assert services.store.get(old.id) is None
    assert services.store.get(keep.id) is not None  # queued: never deleted by retention
    # The idempotency record went with it: the key can be used again.
    assert services.service.submit("echo", 1, idempotency_key="old").created


def test_retention_keeps_a_job_redriven_after_it_read_it(services):
    """Retention deletes a job only at the version it read, and its payload blob only once the row
    is gone: a redrive landing between its read and its delete keeps the whole job."""
    payload = {"blob": "x" * 100_000}  # big enough for a blob
    job = services.service.submit("fail", payload, max_attempts=1).job
    other = services.service.submit("fail", payload, max_attempts=1).job
    assert deliver(services) == [Outcome.DEAD_LETTERED] * 2
    raw = unwrap(services)
    submit_deletes = raw.store._submit_deletes

    async def redrive_first(batch):
        if any(deletion.entity["RowKey"] == job.key.row_key for deletion in batch):
            await raw.service.redrive(job.id)  # lands after retention's read, before its delete
        return await submit_deletes(batch)

    raw.store._submit_deletes = redrive_first
    assert services.store.delete_finished_before(utcnow() + timedelta(days=1), max_jobs=100) == 1
    raw.store._submit_deletes = submit_deletes
    assert services.store.get(other.id) is None  # the job nobody touched went
    kept = services.service.get(job.id)
    assert kept.status is Status.QUEUED and kept.payload == payload  # the row and its blob both stayed
    assert deliver(services) == [Outcome.DEAD_LETTERED]  # its message finds it and runs attempt 2
    assert services.service.get(job.id).attempt == 2
    assert services.store.delete_finished_before(utcnow() + timedelta(days=1), max_jobs=100) == 1
    assert services.store.get(job.id) is None and services.store.list(status="dead_lettered").jobs == []


def test_an_idle_reconciler_run_costs_26_calls(services):
    """Stated in the README (the cost at rest). Empty queues are measured, not peeked or read;
    the table's reads are fixed per run and per partition (4 here), whatever the history."""
    services.reconciler.run()
    counter = services.storage.counter
    counter.reset()
    services.reconciler.run()
    assert dict(counter.snapshot()) == {
        ("queue", "GET"): 6,  # the depths of the three queues and their poison queues
        # flow settings, the run's state, the watch list, the recent window (4), running operations,
        # due schedules, jobs past retention (4), operations past retention, the stats' last hour (4)
        ("table", "GET"): 1 + 1 + 1 + 4 + 1 + 1 + 4 + 1 + 4,
        ("table", "PATCH"): 1,  # the run's state
        ("table", "POST"): 1,  # the stats, one transaction
    }


def test_reconciler_cost_does_not_grow_with_history(services):
    def cost_of_run():
        before = services.storage.counter.total()
        services.reconciler.run()
        return services.storage.counter.total() - before

    submit_many(services, 5)
    while deliver(services):
        pass
    small = cost_of_run()
    submit_many(services, 60)
    while deliver(services):
        pass
    assert cost_of_run() == small  # 60 more finished jobs in history, same number of calls


def test_one_successful_job_costs_six_transactions(services):
    """Pinned, and stated in the README. The message carries a snapshot of the job with the
    record's ETag, so the worker claims without reading: insert, put, receive (shared by a batch),
    conditional claim, conditional result, delete. Flow control (pauses, limits) reads its
    settings once per instance per 5 s, not per job: warmed here, counted in the next test."""
    services.flow.settings.current()
    counter = services.storage.counter
    counter.reset()
    job = services.service.submit("echo", {"n": 1}).job
    queue = services.storage.queue
    [message] = list(queue.receive_messages(max_messages=1, visibility_timeout=30))
    assert services.worker.process(message.content) is Outcome.SUCCEEDED
    queue.delete_message(message)
    assert dict(counter.snapshot()) == {
        ("table", "POST"): 1,  # insert
        ("table", "PATCH"): 2,  # claim and result: merges, conditional on the ETag
        ("queue", "POST"): 1,  # put
        ("queue", "GET"): 1,  # receive (up to 32 messages per call)
        ("queue", "DELETE"): 1,  # the host deletes the message
    }
    assert services.service.get(job.id).status is Status.SUCCEEDED


def test_large_payload_job_costs_a_read_more(services):
    counter = services.storage.counter
    services.service.submit("echo", {"blob": "x" * 20_000})  # too big to ride in the message
    services.flow.settings.current()  # read once per instance per 5 s, not per job
    counter.reset()
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert counter.snapshot()[("table", "GET")] == 1


def test_redelivered_snapshot_message_is_not_run_twice(services):
    services.service.submit("echo", 1)
    queue = services.storage.queue
    [message] = list(queue.receive_messages(max_messages=1, visibility_timeout=30))
    assert services.worker.process(message.content) is Outcome.SUCCEEDED
    assert services.worker.process(message.content) is Outcome.STALE  # same body delivered again


def test_snapshot_of_a_cancelled_job_falls_back_to_the_record(services):
    job = services.service.submit("echo", 1).job
    services.service.cancel(job.id)  # changes the ETag the message was written with
    assert deliver(services) == [Outcome.STALE]


def test_job_new_spreads_over_partitions(services):
    shards = {Job.new("echo", None, 1, shard=s).key.partition_key for s in range(4)}
    assert len(shards) == 4


def test_a_plain_job_pays_nothing_for_flow_control_but_a_shared_read_of_its_settings(services):
    """20 plain jobs in one batch of messages: the flow settings are read once for all of them
    (every instance reads them at most every 5 s, to learn of pauses), and nothing else is added."""
    ids = [services.service.submit("echo", n).job.id for n in range(20)]
    counter = services.storage.counter
    counter.reset()
    assert deliver(services) == [Outcome.SUCCEEDED] * 20
    assert {s.status for s in map(services.service.get, ids)} == {Status.SUCCEEDED}
    reads = counter.snapshot()
    assert reads[("table", "GET")] == 1 + 20  # the settings query, then the 20 reads by get() above
    assert reads[("table", "PATCH")] == 40  # claim and result per job, nothing more


class _OpaqueContinuation:
    """A query's pages as Azure Table Storage words their continuation: `NextRowKey` is opaque
    (the REST reference calls it a hash of the next row key; the service writes "1!<n>!<base64>"),
    where Azurite sends the row key in base64. The rows themselves are Azurite's."""

    def __init__(self, paged):
        self._paged = paged

    def __aiter__(self):
        return self._paged.__aiter__()

    def by_page(self, *args, **kwargs):
        outer = self

        class Pages:
            def __init__(self):
                self._pages = outer._paged.by_page(*args, **kwargs)

            def __aiter__(self):
                return self

            async def __anext__(self):
                return await self._pages.__anext__()

            @property
            def continuation_token(self):
                token = self._pages.continuation_token
                return token and {**token, "RowKey": f"1!{len(token['RowKey'])}!{token['RowKey']}"}

        return Pages()


def test_listing_never_reads_the_continuation_of_a_query(services, monkeypatch):
    ids = submit_many(services, 40)
    table = unwrap(services.storage.table)
    original = table.query_entities
    monkeypatch.setattr(table, "query_entities", lambda *a, **kw: _OpaqueContinuation(original(*a, **kw)))
    for order, expected in (("newest", list(reversed(ids))), ("oldest", ids)):
        seen, token = [], None
        for _ in range(30):
            page = services.store.list(limit=3, continuation=token, order=order)
            seen += [j.id for j in page.jobs]
            token = page.continuation
            if token is None:
                break
        assert seen == expected, order


def test_retention_deletes_as_many_jobs_as_it_may_across_batches(services, monkeypatch):
    """A run's cap counts each job once, however many transactions its partition needs."""
    monkeypatch.setattr(store_module, "BATCH_LIMIT", 2)
    old = utcnow() - timedelta(days=10)
    for n in range(5):
        job = Job.new("echo", n, 3, shard=0, now=old)
        services.store.insert(replace(job, status=Status.SUCCEEDED, finished_at=old))
    assert services.store.delete_finished_before(utcnow(), max_jobs=4) == 4
    assert services.store.delete_finished_before(utcnow(), max_jobs=4) == 1
