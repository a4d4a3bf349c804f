"""Recurring schedules on a real Azurite: one job per fire whatever races or crashes, catch-up
after downtime, overlap, pause and resume, the index kept with the definition, and what a fire
costs in storage calls."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from shared.job import Priority, Status, isoformat, utcnow
from shared.schedules import store
from shared.schedules.firing import fire_key
from shared.schedules.schedule import CatchUp, JobTemplate, Overlap, SkipReason
from shared.schedules.store import DEFINITION, INDEX, KEY, PARTITION, index_row
from shared.worker import Outcome
from tests.blocking import service_view, unwrap
from tests.integration.conftest import deliver, make_services

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # schedules are created at this time, fired with explicit times
MINUTE = timedelta(minutes=1)


@pytest.fixture
def other_instance(services, azurite, unique_name, portal):
    """A second instance of the app on the same storage: its own clients and objects."""
    raw = make_services(azurite, unique_name)
    yield service_view(raw, portal)
    portal.run(raw.storage.close())


def create(services, cron="* * * * *", *, at=T0, job=None, **options):
    schedule, created = services.schedules.create(
        cron, options.pop("time_zone", "UTC"), job or JobTemplate("echo", {"n": 1}), now=at, **options
    )
    assert created
    return schedule


def race(portal, *calls):
    """Run coroutines at once on the portal's loop (as two instances' timers would)."""

    async def together():
        return await asyncio.gather(*calls)

    return portal.run(together())


def jobs(services):
    return services.store.list(limit=200).jobs


def rows(services):
    """Every row of the schedules' partition, by row key."""
    query = f"PartitionKey eq '{PARTITION}'"
    return {e["RowKey"]: e for e in services.storage.table.query_entities(query)}


def index_rows(services):
    return sorted(k for k in rows(services) if k.startswith(INDEX))


# --- firing --------------------------------------------------------------------------------------


def test_a_due_schedule_makes_its_job_and_moves_to_the_next_fire_time(services):
    template = JobTemplate("echo", {"hello": "cron"}, max_attempts=3, priority=Priority.HIGH)
    s = create(services, "*/5 * * * *", job=template)
    fire = T0 + 5 * MINUTE
    assert s.next_fire == fire
    assert services.schedules.fire_due(now=fire - timedelta(seconds=1)) == {}  # not due yet: nothing
    done = services.schedules.fire_due(now=fire + timedelta(seconds=2))
    assert done == {"schedules_fired": 1}
    [job] = jobs(services)
    assert (job.type, job.payload, job.max_attempts, job.priority) == ("echo", {"hello": "cron"}, 3, Priority.HIGH)
    after = services.schedules.get(s.id)
    assert (after.fired, after.skipped, after.last_fire, after.last_job_id) == (1, 0, fire, job.id)
    assert after.next_fire == fire + 5 * MINUTE
    assert index_rows(services) == [index_row(after.next_fire, s.id)]  # moved with the definition
    assert deliver(services, priority=Priority.HIGH) == [Outcome.SUCCEEDED]


def test_every_fire_time_due_in_a_pass_makes_its_own_job(services):
    create(services, "*/10 * * * * *")
    done = services.schedules.fire_due(now=T0 + timedelta(seconds=35))  # 10, 20 and 30 s: within the grace period
    assert done == {"schedules_fired": 3}
    assert len(jobs(services)) == 3


def test_two_firing_passes_racing_on_one_due_schedule_make_one_job(services, other_instance, portal):
    a, b = services, other_instance
    s = create(a, "*/5 * * * *")
    now = s.next_fire + timedelta(seconds=1)
    for _ in range(3):  # all at once, a few times over (each round is the next fire)
        results = race(portal, unwrap(a).schedules.fire_due(now), unwrap(b).schedules.fire_due(now))
        assert sum(r["schedules_fired"] for r in results) >= 1
        now += 5 * MINUTE
    assert len(jobs(a)) == 3
    after = a.schedules.get(s.id)
    assert after.fired == 3 and len(index_rows(a)) == 1


def test_two_reconcilers_racing_on_one_due_schedule_make_one_job(services, other_instance, portal):
    a, b = services, other_instance
    s = create(a, "*/5 * * * *", at=utcnow() - timedelta(minutes=5, seconds=30))
    now = s.next_fire + timedelta(seconds=1)
    results = race(portal, unwrap(a).reconciler.run(now), unwrap(b).reconciler.run(now))
    assert sum(r["schedules_fired"] for r in results) >= 1
    [job] = jobs(a)
    assert a.schedules.get(s.id).last_job_id == job.id


def test_a_pass_that_read_the_schedule_before_another_fired_it_makes_no_second_job(services):
    """The race, step by step: A reads, B fires and advances, A submits (the same key: the same
    job) and its advance finds the schedule moved on."""
    s = create(services, "*/5 * * * *")
    now = s.next_fire + timedelta(seconds=1)
    stale = services.schedules.store.get(s.id)
    assert services.schedules.fire_due(now=now) == {"schedules_fired": 1}
    firing = unwrap(services).schedules.firing
    assert services._portal.run(firing._fire_once(stale, now, Counter())) is None
    [job] = jobs(services)
    after = services.schedules.get(s.id)
    assert (after.fired, after.last_job_id, after.next_fire) == (1, job.id, s.next_fire + 5 * MINUTE)


def test_a_crash_between_the_submit_and_the_advance_still_makes_one_job(services):
    s = create(services, "*/5 * * * *")
    fire = s.next_fire
    # The pass that crashed: it submitted the fire's job, and died before advancing the schedule.
    orphan = services.service.submit("echo", {"n": 1}, idempotency_key=fire_key(s.id, fire)).job
    assert services.schedules.get(s.id).next_fire == fire  # still due
    assert services.schedules.fire_due(now=fire + timedelta(seconds=5)) == {"schedules_fired": 1}
    assert [j.id for j in jobs(services)] == [orphan.id]
    after = services.schedules.get(s.id)
    assert (after.fired, after.last_job_id, after.next_fire) == (1, orphan.id, fire + 5 * MINUTE)


def test_a_crashed_fire_found_missed_later_is_recorded_not_skipped(services):
    """After the crash the app stayed down: the fire is now missed and its catch-up policy says
    skip, but its job exists: it is noted as fired (so overlap sees it), and none is added."""
    s = create(services, "*/5 * * * *", catch_up=CatchUp.SKIP)
    fire = s.next_fire
    orphan = services.service.submit("echo", {"n": 1}, idempotency_key=fire_key(s.id, fire)).job
    done = services.schedules.fire_due(now=fire + timedelta(hours=1))
    assert [j.id for j in jobs(services)] == [orphan.id]
    after = services.schedules.get(s.id)
    assert (after.fired, after.last_job_id, after.skipped) == (1, orphan.id, 12)  # the other 12 missed
    assert done == {"schedules_fired": 1, "schedules_skipped": 12}


def test_a_schedule_keeps_its_last_10_fires_newest_first_each_naming_the_job_it_made(services):
    s = create(services, "*/5 * * * *")
    fires = [T0 + 5 * MINUTE * n for n in range(1, 13)]
    for fire in fires:
        assert services.schedules.fire_due(now=fire + timedelta(seconds=1)) == {"schedules_fired": 1}
    after = services.schedules.get(s.id)
    made = {job.id: job for job in jobs(services)}
    assert len(made) == 12 and after.fired == 12
    assert [at for at, _ in after.recent] == fires[::-1][:10]  # the last 10, newest first
    assert all(job_id in made for _, job_id in after.recent)
    assert after.recent[0] == (after.last_fire, after.last_job_id)
    shown = after.to_resource()["recent_fires"]
    assert shown[0] == {"at": isoformat(fires[-1]), "job_id": after.last_job_id} and len(shown) == 10
    # A schedule stored before recent fires were kept had its last fire only: it still shows it.
    older = {k: v for k, v in store._to_entity(after).items() if k != "recent"}
    older |= {"last_fire": isoformat(fires[0]), "last_job": "j0"}
    assert store._from_entity(older).recent == ((fires[0], "j0"),)


# --- catch-up after downtime ---------------------------------------------------------------------


def test_catch_up_once_after_a_long_downtime_makes_one_job(services):
    s = create(services, "*/5 * * * *", catch_up=CatchUp.ONCE)
    now = T0 + timedelta(hours=3, minutes=2)  # 36 fire times missed (12:05 ... 15:00)
    assert services.schedules.fire_due(now=now) == {"schedules_fired": 1, "schedules_skipped": 35}
    [job] = jobs(services)
    after = services.schedules.get(s.id)
    assert (after.fired, after.skipped, after.last_job_id) == (1, 35, job.id)
    # The job is the first missed fire's; the last skip is the latest fire folded into it, not that one.
    assert after.last_fire == s.next_fire and after.recent[0] == (s.next_fire, job.id)
    assert (after.last_skip, after.last_skip_reason) == (T0 + timedelta(hours=3), SkipReason.MISSED)
    assert after.next_fire == T0 + timedelta(hours=3, minutes=5)  # on schedule again, from now
    assert services.schedules.fire_due(now=now) == {}


def test_catch_up_skip_after_a_long_downtime_makes_no_job(services):
    s = create(services, "*/5 * * * *", catch_up=CatchUp.SKIP)
    now = T0 + timedelta(hours=3, minutes=2)
    assert services.schedules.fire_due(now=now) == {"schedules_skipped": 36}
    assert jobs(services) == []
    after = services.schedules.get(s.id)
    assert (after.fired, after.skipped, after.last_skip_reason) == (0, 36, SkipReason.MISSED)
    assert after.last_skip == T0 + timedelta(hours=3)  # the latest of them (15:00), not the first
    assert after.next_fire == T0 + timedelta(hours=3, minutes=5)
    assert services.schedules.fire_due(now=after.next_fire) == {"schedules_fired": 1}


def test_a_fire_within_the_grace_period_is_not_missed(services):
    s = create(services, "*/5 * * * *", catch_up=CatchUp.SKIP)
    grace = services.config.scheduler_grace_seconds
    assert services.schedules.fire_due(now=s.next_fire + timedelta(seconds=grace)) == {"schedules_fired": 1}


# --- overlap -------------------------------------------------------------------------------------


def test_overlap_skip_skips_while_the_previous_job_runs_and_fires_once_it_finished(services):
    s = create(services, "*/5 * * * *", overlap=Overlap.SKIP)
    first = s.next_fire
    assert services.schedules.fire_due(now=first) == {"schedules_fired": 1}
    [job] = jobs(services)
    assert job.status is Status.QUEUED  # not run yet: not finished
    assert services.schedules.fire_due(now=first + 5 * MINUTE) == {"schedules_skipped": 1}
    after = services.schedules.get(s.id)
    assert (after.fired, after.skipped, after.last_skip_reason) == (1, 1, SkipReason.OVERLAP)
    assert after.last_job_id == job.id
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert services.schedules.fire_due(now=first + 10 * MINUTE) == {"schedules_fired": 1}
    assert len(jobs(services)) == 2


def test_overlap_allow_fires_whatever_the_previous_job_is_doing(services):
    s = create(services, "*/5 * * * *", overlap=Overlap.ALLOW)
    services.schedules.fire_due(now=s.next_fire)
    services.schedules.fire_due(now=s.next_fire + 5 * MINUTE)
    assert len(jobs(services)) == 2


# --- pause, resume, change, delete ---------------------------------------------------------------


def test_a_paused_schedule_does_not_fire_and_resumes_from_now(services):
    s = create(services, "*/5 * * * *")
    paused = services.schedules.update(s.id, {"paused": True}, {}, now=T0 + MINUTE)
    assert paused.paused and paused.next_fire is None
    assert index_rows(services) == []  # out of the index: a pass never sees it
    assert services.schedules.fire_due(now=T0 + timedelta(hours=2)) == {}
    assert jobs(services) == []
    resumed = services.schedules.update(s.id, {"paused": False}, {}, now=T0 + timedelta(hours=2, minutes=1))
    assert resumed.next_fire == T0 + timedelta(hours=2, minutes=5)  # missed fires are not made up
    assert index_rows(services) == [index_row(resumed.next_fire, s.id)]
    assert services.schedules.fire_due(now=resumed.next_fire) == {"schedules_fired": 1}
    assert services.schedules.get(s.id).skipped == 0


def test_a_schedule_created_paused_fires_nothing(services):
    s = create(services, "* * * * *", paused=True)
    assert s.paused and index_rows(services) == []
    assert services.schedules.fire_due(now=T0 + timedelta(days=1)) == {}


def test_a_new_cron_or_zone_moves_the_index_row_and_other_changes_leave_it(services):
    s = create(services, "0 9 * * *")
    assert s.next_fire == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    moved = services.schedules.update(s.id, {"time_zone": "Europe/Berlin"}, {}, now=T0)
    assert moved.next_fire == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)  # 09:00 CEST
    kept = services.schedules.update(s.id, {"overlap": Overlap.SKIP, "name": "morning"}, {"payload": [1]}, now=T0)
    assert kept.next_fire == moved.next_fire and kept.job.payload == [1] and kept.name == "morning"
    assert index_rows(services) == [index_row(moved.next_fire, s.id)]


def test_deleting_a_schedule_removes_its_rows_and_its_fires(services):
    s, _ = services.schedules.create("* * * * *", "UTC", JobTemplate("echo"), idempotency_key="k1", now=T0)
    assert sorted(rows(services)) == sorted([DEFINITION + s.id, index_row(s.next_fire, s.id), KEY + s.idempotency_key])
    services.schedules.delete(s.id)
    assert rows(services) == {}
    assert services.schedules.fire_due(now=T0 + timedelta(hours=1)) == {}


def test_the_index_holds_one_row_per_active_schedule_at_its_next_fire_time(services):
    schedules = [create(services, cron) for cron in ("* * * * *", "*/2 * * * *", "0 * * * *", "0 0 * * *")]
    services.schedules.update(schedules[1].id, {"paused": True}, {}, now=T0)
    services.schedules.fire_due(now=T0 + timedelta(minutes=1, seconds=30))
    services.schedules.update(schedules[2].id, {"cron": "30 * * * *"}, {}, now=T0 + timedelta(minutes=2))
    services.schedules.delete(schedules[3].id)
    active = [services.schedules.get(x.id) for x in schedules[:3]]
    assert index_rows(services) == sorted(index_row(x.next_fire, x.id) for x in active if not x.paused)


# --- cost ----------------------------------------------------------------------------------------


def test_a_fire_costs_four_storage_calls_plus_the_passes_query(services):
    """Pinned, and stated in the README: the due range (one query per pass), then per fire a read
    of the definition, the job with its key record (one transaction), the put, and the advance
    (one transaction with the index row)."""
    s = create(services, "*/5 * * * *")
    counter = services.storage.counter
    counter.reset()
    assert services.schedules.fire_due(now=s.next_fire) == {"schedules_fired": 1}
    assert dict(counter.snapshot()) == {
        ("table", "GET"): 2,  # the due index range; the definition
        ("table", "POST"): 2,  # job + idempotency record; definition + index row (entity-group transactions)
        ("queue", "POST"): 1,  # the job's message
    }
    counter.reset()
    assert services.schedules.fire_due(now=s.next_fire) == {}  # nothing due: the query alone
    assert dict(counter.snapshot()) == {("table", "GET"): 1}


def test_overlap_skip_adds_a_read_of_the_previous_job(services):
    s = create(services, "*/5 * * * *", overlap=Overlap.SKIP)
    services.schedules.fire_due(now=s.next_fire)
    counter = services.storage.counter
    counter.reset()
    assert services.schedules.fire_due(now=s.next_fire + 5 * MINUTE) == {"schedules_skipped": 1}
    # query, definition, previous job, the key's record (none: no job was made for it), advance
    assert dict(counter.snapshot()) == {("table", "GET"): 4, ("table", "POST"): 1}


def test_a_firing_pass_costs_the_same_among_200_schedules_as_alone(services):
    def cost_of_pass(now):
        before = services.storage.counter.total()
        assert services.schedules.fire_due(now=now) == {"schedules_fired": 1}
        return services.storage.counter.total() - before

    first = create(services, "*/5 * * * *")
    alone = cost_of_pass(first.next_fire)
    for _ in range(199):  # not due for a year
        create(services, "0 0 1 1 *")
    services.schedules.update(first.id, {"paused": True}, {}, now=T0)
    again = create(services, "*/5 * * * *")
    assert cost_of_pass(again.next_fire) == alone == 5


def test_the_reconciler_fires_what_is_due(services):
    s = create(services, "* * * * *", at=utcnow() - timedelta(minutes=1, seconds=30))
    done = services.reconciler.run(s.next_fire + timedelta(seconds=1))
    assert done["schedules_fired"] == 1 and len(jobs(services)) == 1


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_a_daily_schedule_across_both_changes_fires_once_a_day(services, zone):
    """`30 2 * * *` through the last days of March and of October: one job a day, none twice."""
    for start in (datetime(2026, 3, 27, tzinfo=UTC), datetime(2026, 10, 23, tzinfo=UTC)):
        s = create(services, "30 2 * * *", at=start, time_zone=zone)
        now = start
        for _ in range(4 * 24):  # a pass every hour for four days
            now += timedelta(hours=1)
            services.schedules.fire_due(now=now)
        after = services.schedules.get(s.id)
        assert (after.fired, after.skipped) == (4, 0), (zone, start)
        services.schedules.delete(s.id)
    days = [j.created_at for j in jobs(services)]
    assert len(days) == 8
