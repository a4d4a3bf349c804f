"""The overview's aggregates: kept by the reconciler from the recent window, read in a bounded
number of calls whatever the history holds."""

from __future__ import annotations

from datetime import timedelta

from shared.job import utcnow
from tests.integration.conftest import call_api, deliver
from tests.integration.test_status_index import insert_history


def test_the_reconciler_counts_recent_jobs_by_status_and_the_overview_reads_them(services):
    for _ in range(3):
        services.service.submit("echo", 1)
    services.service.submit("fail", None, max_attempts=1)
    services.service.submit("echo", 1, delay_seconds=3600)  # due later: not counted yet
    while deliver(services):
        pass
    services.reconciler.run()
    overview = services.stats.read()
    assert overview["last_hour"] == {"queued": 0, "running": 0, "succeeded": 3, "dead_lettered": 1, "cancelled": 0}
    assert overview["last_24h"] == overview["last_hour"]
    assert sum(p["succeeded"] for p in overview["series"]) == 3 and len(overview["series"]) in (288, 289)
    assert overview["queue"]["depth"] == 1  # the delayed job's hidden message
    assert [j["type"] for j in overview["recent_dead_letters"]] == ["fail"]
    assert overview["as_of"] is not None


def test_a_recent_minute_is_counted_again_so_outcomes_move(services):
    job = services.service.submit("echo", 1).job
    services.reconciler.run()
    assert services.stats.read()["last_hour"]["queued"] == 1
    deliver(services)
    services.reconciler.run()
    counts = services.stats.read()["last_hour"]
    assert (counts["queued"], counts["succeeded"]) == (0, 1)
    assert services.service.get(job.id).status == "succeeded"


def test_reading_the_overview_costs_the_same_whatever_the_history(services):
    services.reconciler.run()
    counter = services.storage.counter

    def cost() -> int:
        counter.reset()
        services.stats.read()
        return counter.total()

    small = cost()
    insert_history(services, 4000)  # finished jobs of the last hour
    services.reconciler.run()
    assert cost() == small <= 2 + services.config.partitions  # the stats range (1 page here) + the dead-letter index


def test_the_api_serves_the_overview(services):
    services.reconciler.run()
    from shared import api
    from shared.api import ApiRequest

    r = call_api(services, api.stats, ApiRequest("GET"))
    assert r.status == 200 and set(r.body) >= {"last_hour", "last_24h", "series", "queue", "recent_dead_letters"}


def test_an_old_minute_is_kept_as_last_counted(services):
    """Past RECOUNT a minute is not counted again: its row stays, so 24 hours cost no scan."""
    from shared.stats import RECOUNT

    services.service.submit("echo", 1)
    services.reconciler.run()
    later = utcnow() + RECOUNT + timedelta(minutes=2)
    deliver(services)  # the job succeeds, but its minute is no longer recounted at `later`
    services.reconciler.run(now=later)
    assert services.stats.read(now=later)["last_hour"]["queued"] == 1


def test_the_oldest_messages_age_is_as_of_the_reconcilers_look_not_aged_on_after_it(services):
    """A message taken after the reconciler looked must not seem to wait on: the age is the one
    it had at `as_of`, however late the overview is read."""
    now = utcnow()
    services.stats.refresh(now, 1, 0, now - timedelta(seconds=12))
    later = services.stats.read(now + timedelta(seconds=25))
    assert later["queue"]["oldest_queued_age_seconds"] == 12.0
    services.stats.refresh(now, 0, 0, None)
    assert services.stats.read(now + timedelta(seconds=25))["queue"]["oldest_queued_age_seconds"] is None
