"""The status index: dead-lettered and cancelled jobs have a copy beside their record, written and
removed in the same entity-group transaction, so listing those states reads the copies only."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import timedelta

from shared.job import Job, Status, utcnow
from shared.store import INDEX_PREFIX
from shared.worker import Outcome
from tests.blocking import unwrap
from tests.integration.conftest import deliver, run_until


def insert_history(services, count: int, status: Status = Status.SUCCEEDED) -> None:
    """`count` finished jobs straight into the table, 100 per entity-group transaction, the
    partitions written side by side (so the client builds one while Azurite stores another)."""
    now = utcnow()
    store = unwrap(services).store
    share = count // services.config.partitions

    async def fill(shard: int) -> None:
        for start in range(0, share, 100):
            jobs = [
                replace(Job.new("echo", i, 1, shard, now=now - timedelta(seconds=i)), status=status, finished_at=now)
                for i in range(start, min(start + 100, share))
            ]
            results, _ = await store.insert_batch(jobs)
            assert all(not isinstance(r, Exception) for r in results)

    async def fill_all() -> None:
        await asyncio.gather(*(fill(shard) for shard in range(services.config.partitions)))

    services._portal.run(fill_all())


def dead_letter(services, count: int) -> list[str]:
    """Jobs moved to dead_lettered the way the worker does it (a conditional replace)."""
    ids = []
    for i in range(count):
        job = Job.new("fail", {"n": i}, 1, shard=i % services.config.partitions)
        stored = services.store.insert(job)
        services.store.replace(stored.job.dead_letter("boom"), stored.etag, was=Status.QUEUED)
        ids.append(job.id)
    return ids


def index_rows(services) -> list[str]:
    rows = services.storage.table.query_entities(f"RowKey ge '{INDEX_PREFIX}'", select=["RowKey"])
    return sorted(r["RowKey"] for r in rows)


def test_a_page_of_dead_letters_among_100000_succeeded_jobs_costs_one_query_per_partition(services, monkeypatch):
    started = time.monotonic()
    insert_history(services, 100_000)
    doomed = dead_letter(services, 60)
    print(f"history of 100,000 written in {time.monotonic() - started:.1f} s")

    queries: list[str] = []
    table = unwrap(services.storage.table)  # the async client itself
    original = table.query_entities

    def recording(query_filter, **kwargs):  # a spy on our own calls: storage still answers
        queries.append(query_filter)
        return original(query_filter, **kwargs)

    monkeypatch.setattr(table, "query_entities", recording)
    counter = services.storage.counter
    counter.reset()
    first = services.store.list(status="dead_lettered", limit=50)
    assert len(first.jobs) == 50 and {j.status for j in first.jobs} == {Status.DEAD_LETTERED}
    assert counter.total("table") == services.config.partitions  # bounded by the page, not the history
    # Every query is a range of index rows: the service never reads a succeeded job's row.
    assert all(f"RowKey ge '{INDEX_PREFIX}dead_lettered." in q for q in queries), queries
    rest = services.store.list(status="dead_lettered", limit=50, continuation=first.continuation)
    assert rest.continuation is None
    assert sorted(j.id for j in first.jobs + rest.jobs) == sorted(doomed)
    assert [j.id for j in first.jobs + rest.jobs] == sorted(doomed, key=lambda i: i[2:])  # newest first


def test_the_index_copy_follows_the_job_through_dead_letter_redrive_cancel_and_retention(services):
    job = services.service.submit("fail", None, max_attempts=1).job
    assert deliver(services) == [Outcome.DEAD_LETTERED]
    listed = services.store.list(status="dead_lettered").jobs
    assert [j.id for j in listed] == [job.id] and listed[0].errors  # the copy holds the whole record
    assert len(index_rows(services)) == 1

    services.service.redrive(job.id)  # leaves dead_lettered: the copy goes in the same transaction
    assert services.store.list(status="dead_lettered").jobs == [] and index_rows(services) == []
    run_until(services, lambda: services.service.get(job.id).status is Status.DEAD_LETTERED)
    assert [j.attempt for j in services.store.list(status="dead_lettered").jobs] == [2]  # the fresh copy

    queued = services.service.submit("echo", 1, delay_seconds=60).job
    services.service.cancel(queued.id)
    assert [j.id for j in services.store.list(status="cancelled").jobs] == [queued.id]
    assert len(index_rows(services)) == 2

    deleted = services.store.delete_finished_before(utcnow() + timedelta(days=1), max_jobs=100)
    assert deleted == 2 and index_rows(services) == []


def test_listing_other_states_is_unchanged_and_skips_index_rows(services):
    ids = dead_letter(services, 3)
    done = services.service.submit("echo", 1).job
    deliver(services)
    everything = services.store.list(limit=50).jobs
    assert sorted(j.id for j in everything) == sorted([*ids, done.id])  # each job once, no copies
    assert [j.id for j in services.store.list(status="succeeded").jobs] == [done.id]


def test_since_and_until_bound_the_due_time(services):
    now = utcnow()
    jobs = [Job.new("echo", i, 1, shard=0, now=now - timedelta(minutes=10 * i)) for i in range(5)]
    services.store.insert_batch(jobs)
    page = services.store.list(since=now - timedelta(minutes=25), until=now - timedelta(minutes=5))
    assert [j.id for j in page.jobs] == [jobs[1].id, jobs[2].id]  # due 10 and 20 minutes ago
    assert services.store.list(since=now, until=now - timedelta(minutes=1)).jobs == []  # an empty range
    assert len(services.store.list(until=now + timedelta(seconds=1)).jobs) == 5
