"""Listing oldest first (`order=oldest`): every job once, in due order, across pages and partitions,
at a cost per page that is bounded and pinned here (shared/oldest.py says how it works)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.job import Job, Status, utcnow
from shared.oldest import MAX_ROUNDS, order_key
from shared.store import BadContinuation
from tests.integration.test_status_index import dead_letter

NOW = utcnow()


def insert_due(services, dues, shard=None, job_type="echo", status=Status.SUCCEEDED) -> list[Job]:
    """Jobs due at the given times, straight into the table, 100 per entity-group transaction of
    one partition (shards round-robin unless `shard` is given)."""
    by_shard: dict[int, list[Job]] = {}
    partitions = services.config.partitions
    for i, due in enumerate(dues):
        s = shard if shard is not None else i % partitions
        job = replace(Job.new(job_type, i, 1, s, now=due), status=status, finished_at=due)
        by_shard.setdefault(s, []).append(job)
    jobs = []
    for group in by_shard.values():
        for start in range(0, len(group), 100):
            results, _ = services.store.insert_batch(group[start : start + 100])
            assert all(not isinstance(r, Exception) for r in results), results
            jobs += group[start : start + 100]
    return jobs


def expected_order(jobs: list[Job]) -> list[str]:
    return [j.id for j in sorted(jobs, key=lambda j: order_key(j.key.row_key, j.key.shard))]


def walk(services, limit: int = 50, max_pages: int = 200, **query) -> tuple[list[str], list[int], list[int]]:
    """Every page of an oldest-first listing: (ids, jobs per page, table calls per page)."""
    counter = services.storage.counter
    ids, sizes, costs, token = [], [], [], None
    for _ in range(max_pages):
        before = counter.total("table")
        page = services.store.list(limit=limit, continuation=token, order="oldest", **query)
        costs.append(counter.total("table") - before)
        sizes.append(len(page.jobs))
        ids += [j.id for j in page.jobs]
        token = page.continuation
        if token is None:
            return ids, sizes, costs
    raise AssertionError(f"no end after {max_pages} pages: {sizes}")


def test_oldest_first_lists_every_job_once_in_due_order_across_pages_and_partitions(services):
    rng = random.Random(7)
    dues = [NOW - timedelta(seconds=rng.uniform(0, 6 * 3600)) for _ in range(600)]
    burst = [NOW - timedelta(hours=2)] * 130  # one batch: 130 jobs due in the same millisecond, one partition
    jobs = insert_due(services, dues) + insert_due(services, burst, shard=2)
    ids, sizes, _ = walk(services, limit=50)
    assert ids == expected_order(jobs)
    assert len(set(ids)) == len(jobs) == 730
    assert len({i[:2] for i in ids}) == services.config.partitions
    assert sizes[:-1] == [50] * (len(sizes) - 1)  # no filter: every page but the last is full


def test_a_page_after_the_first_costs_one_query_per_partition_and_the_first_one_round_more(services):
    """The figures the README gives: 2,000 jobs over 6 hours in 4 partitions, pages of 50."""
    rng = random.Random(11)
    insert_due(services, [NOW - timedelta(seconds=rng.uniform(0, 6 * 3600)) for _ in range(2000)])
    partitions = services.config.partitions
    _, sizes, oldest_costs = walk(services, limit=50)
    assert len(sizes) == 40
    newest_costs = []
    token = None
    counter = services.storage.counter
    while True:
        before = counter.total("table")
        page = services.store.list(limit=50, continuation=token)
        newest_costs.append(counter.total("table") - before)
        token = page.continuation
        if token is None:
            break
    print(f"table queries per page of 50, 2,000 jobs, {partitions} partitions: newest first {newest_costs}, "
          f"oldest first {oldest_costs}")  # fmt: skip
    assert set(newest_costs) == {partitions}
    first, rest = oldest_costs[0], oldest_costs[1:]
    # The first page: the range probes (newest row, anything past the retention), one probe of
    # row keys over the whole range, then the page's rows read whole.
    assert first <= 4 * partitions
    # Later pages: one window read whole, sized from the page before; now and then it holds
    # more than a page and is narrowed with a probe of keys.
    assert max(rest) <= 3 * partitions
    assert sum(rest) / len(rest) <= 1.25 * partitions


def test_no_page_costs_more_than_its_rounds_even_on_bursts_and_gaps(services):
    """Bursts of thousands in a second, days of nothing, single jobs: each page stays within the
    range probes plus MAX_ROUNDS rounds of one query per partition, and the walk still ends."""
    bursts = [NOW - timedelta(days=3) + timedelta(milliseconds=i) for i in range(1500)]
    singles = [NOW - timedelta(days=d) for d in (6, 5, 2, 1)]
    tail = [NOW - timedelta(minutes=m) for m in range(40)]
    jobs = insert_due(services, bursts + singles + tail)
    partitions = services.config.partitions
    ids, sizes, costs = walk(services, limit=50)
    assert ids == expected_order(jobs)
    assert max(costs) <= (2 + MAX_ROUNDS + 1) * partitions, costs  # range probes, rounds, the rows read whole
    assert max(costs[1:]) <= (MAX_ROUNDS + 1) * partitions, costs
    assert 0 not in sizes[:-1]


def test_a_millisecond_holding_many_pages_is_read_in_order_a_page_at_a_time(services):
    same = [NOW - timedelta(minutes=5)] * 400  # run_at given to 400 jobs: one millisecond, one partition
    jobs = insert_due(services, same, shard=1) + insert_due(services, [NOW - timedelta(minutes=1)] * 3)
    ids, sizes, costs = walk(services, limit=50)
    assert ids == expected_order(jobs)
    assert sizes[:-1] == [50] * (len(sizes) - 1)
    assert max(costs[1:]) <= 3 * services.config.partitions, costs


def test_dead_letters_oldest_first_read_only_the_index(services, monkeypatch):
    insert_due(services, [NOW - timedelta(seconds=i) for i in range(3000)])
    doomed = dead_letter(services, 70)
    queries: list[str] = []
    from tests.blocking import unwrap

    table = unwrap(services.storage.table)
    original = table.query_entities

    def recording(query_filter, **kwargs):
        queries.append(query_filter)
        return original(query_filter, **kwargs)

    monkeypatch.setattr(table, "query_entities", recording)
    ids, sizes, costs = walk(services, status="dead_lettered", limit=50)
    assert ids == [j for j in sorted(doomed, key=lambda i: order_key(i[2:], int(i[:2])))]
    assert sizes == [50, 20]
    assert all("RowKey ge 's.dead_lettered." in q or "RowKey gt 's.dead_lettered." in q for q in queries), queries
    print(f"dead letters oldest first, table queries per page: {costs}")


def test_without_since_a_job_older_than_the_retention_is_still_first(services):
    recent = insert_due(services, [NOW - timedelta(hours=h) for h in range(10)])
    # Redriven after 40 days, say: its due time stays where it was, and retention keeps it.
    old = insert_due(services, [NOW - timedelta(days=40)], shard=3, status=Status.QUEUED)
    ids, _, _ = walk(services, limit=4)
    assert ids == expected_order(recent + old) and ids[0] == old[0].id


def test_since_until_type_and_status_filters(services):
    jobs = insert_due(services, [NOW - timedelta(minutes=m) for m in range(120)])
    sleepers = insert_due(services, [NOW - timedelta(minutes=m, seconds=30) for m in range(0, 120, 10)],
                          job_type="sleep")  # fmt: skip
    since, until = NOW - timedelta(minutes=90), NOW - timedelta(minutes=30)
    ids, _, _ = walk(services, limit=7, since=since, until=until)
    assert ids == expected_order([j for j in jobs + sleepers if since <= j.due_at < until])
    ids, sizes, _ = walk(services, limit=5, job_type="sleep")
    assert ids == expected_order(sleepers)
    queued = insert_due(services, [NOW - timedelta(minutes=m, seconds=10) for m in (3, 70)], status=Status.QUEUED)
    ids, _, _ = walk(services, limit=50, status="queued")
    assert ids == expected_order(queued)


def test_an_empty_table_and_an_empty_range_answer_one_empty_page(services):
    page = services.store.list(order="oldest")
    assert page.jobs == [] and page.continuation is None
    insert_due(services, [NOW - timedelta(minutes=1)])
    page = services.store.list(order="oldest", since=NOW, until=NOW + timedelta(minutes=1))
    assert page.jobs == [] and page.continuation is None


def test_the_continuation_is_checked(services):
    insert_due(services, [NOW - timedelta(minutes=m) for m in range(5)])
    oldest_token = services.store.list(limit=1, order="oldest").continuation
    newest_token = services.store.list(limit=1).continuation
    with pytest.raises(BadContinuation, match="other filters"):
        services.store.list(limit=1, order="oldest", status="queued", continuation=oldest_token)
    with pytest.raises(BadContinuation):
        services.store.list(limit=1, order="oldest", continuation=newest_token)
    with pytest.raises(BadContinuation):
        services.store.list(limit=1, continuation=oldest_token)
    with pytest.raises(BadContinuation):
        services.store.list(limit=1, order="oldest", continuation="garbage!")
