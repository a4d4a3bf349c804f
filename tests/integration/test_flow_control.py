"""Pause and resume, concurrency limits and rate limits on a real Azurite: a job that may not start
keeps its attempt and is not lost, a paused job costs nothing while it waits, and the limits hold
across workers that share nothing but storage."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared import api
from shared.api import ApiRequest
from shared.flow import control, routes
from shared.flow.limits import RateLimit
from shared.flow.settings import ALL
from shared.job import Job, JobKey, Priority, Status, to_ms, utcnow
from shared.messages import JobMessage
from shared.registry import Registry
from shared.worker import Outcome
from tests.blocking import unwrap
from tests.integration.conftest import call_api, deliver
from tests.intervals import most_at_once

release_gate = threading.Event()


def flow_registry() -> Registry:
    registry = Registry()
    registry.handler("echo")(lambda ctx: ctx.payload)
    registry.handler("other")(lambda ctx: ctx.payload)

    @registry.handler("pair", max_concurrency=2)
    async def pair(ctx: Any) -> Any:
        await asyncio.sleep(0.1)
        return ctx.payload

    registry.handler("metered", rate_limit="3/2s")(lambda ctx: ctx.payload)

    async def gated(ctx: Any) -> Any:  # runs until the test opens the gate
        while not release_gate.is_set():
            await asyncio.sleep(0.02)
        return ctx.payload

    registry.handler("held", max_concurrency=1)(gated)
    registry.handler("gated")(gated)  # no limit in the code: the API sets one
    return registry


@pytest.fixture
def services(services_factory):
    release_gate.clear()
    s = services_factory(job_registry=flow_registry())
    unwrap(s).flow.settings.cache_seconds = 0  # the tests change settings and look at once
    return s


def messages(services) -> list[Any]:
    return list(services.storage.queue.receive_messages(max_messages=32, visibility_timeout=30))


def visible(services) -> int:
    return len(services.storage.queue.peek_messages(max_messages=32))


# --- pause and resume ------------------------------------------------------------------------


def test_a_paused_type_parks_its_jobs_runs_others_and_resume_runs_them_all(services):
    services.flow.pause("echo")
    paused = [services.service.submit("echo", n).job.id for n in range(5)]
    other = services.service.submit("other", "x").job.id
    counter = services.storage.counter
    counter.reset()
    outcomes = deliver(services)
    assert sorted(outcomes) == sorted([Outcome.PAUSED] * 5 + [Outcome.SUCCEEDED])
    assert counter.snapshot()[("table", "POST")] == 5  # parking: one transaction per job
    assert services.service.get(other).status is Status.SUCCEEDED
    for job_id in paused:
        job = services.service.get(job_id)
        assert (job.status, job.attempt, job.parked) == (Status.QUEUED, 1, True)
    assert services.storage.queue.get_queue_properties().approximate_message_count == 0  # nothing goes round

    counter.reset()
    assert services.flow.resume("echo") == 5
    assert counter.snapshot()[("queue", "POST")] == 5  # one message each
    assert sorted(deliver(services)) == [Outcome.SUCCEEDED] * 5
    assert [services.service.get(i).result for i in paused] == list(range(5))


def test_a_parked_job_is_left_alone_by_the_reconciler_however_long_it_waits(services_factory):
    services = services_factory(job_registry=flow_registry(), JOBS_RECONCILE_GRACE_SECONDS="0")
    unwrap(services).flow.settings.cache_seconds = 0
    services.flow.pause("echo")
    job = services.service.submit("echo", 1).job
    assert deliver(services) == [Outcome.PAUSED]
    done = services.reconciler.run(now=utcnow() + timedelta(minutes=30))
    assert done["requeued"] == 0 and visible(services) == 0  # parked, not lost
    services.flow.settings.change("echo", paused=False, release_pending=True, resumed_at=utcnow())
    assert services.reconciler.run()["released"] == 1  # a resume the request could not finish
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert services.service.get(job.id).status is Status.SUCCEEDED


def test_pausing_everything_parks_every_type_and_a_type_paused_on_its_own_stays_paused(services):
    services.flow.pause("other")
    services.flow.pause(ALL)
    a = services.service.submit("echo", 1).job.id
    b = services.service.submit("other", 2).job.id
    assert deliver(services) == [Outcome.PAUSED, Outcome.PAUSED]
    assert services.flow.resume(ALL) == 1  # echo's job; other is still paused
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert services.service.get(b).status is Status.QUEUED
    assert services.flow.resume("other") == 1
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert {services.service.get(i).status for i in (a, b)} == {Status.SUCCEEDED}


def type_resource(services, job_type: str, body: dict | None = None) -> dict:
    """GET (or, with a body, PATCH) /api/types/{type}, through the API's own routing."""
    if body is None:
        request = ApiRequest("GET", {"type": job_type}, {}, {}, b"")
        response = call_api(services, routes.get_type, request)
    else:
        headers = {"content-type": "application/json"}
        request = ApiRequest("PATCH", {"type": job_type}, {}, headers, json.dumps(body).encode())
        response = call_api(services, routes.change_type, request)
    assert response.status == 200, response.body
    return response.body


def test_a_type_says_whether_its_own_pause_or_everythings_pauses_it(services):
    assert type_resource(services, "echo")["paused_by"] == []
    services.flow.pause(ALL)
    assert [type_resource(services, t)["paused_by"] for t in ("echo", "other")] == [["all"], ["all"]]
    assert type_resource(services, "other", {"paused": True})["paused_by"] == ["type", "all"]
    assert services.flow.resume(ALL) == 0
    assert [type_resource(services, t)["paused_by"] for t in ("echo", "other")] == [[], ["type"]]
    resumed = type_resource(services, "other", {"paused": False})
    assert (resumed["paused"], resumed["paused_by"]) == (False, [])


def test_a_types_time_limit_is_spelled_alike_whether_set_or_defaulted(services):
    """JOBS_TIME_LIMIT_SECONDS is read as a float; 540.0 beside another type's 30 read as two kinds."""
    limit = type_resource(services, "echo")["time_limit_seconds"]
    assert (limit, type(limit)) == (int(services.config.time_limit_seconds), int)


def flow_call(services, route, query: dict | None = None, body: bytes = b""):
    request = ApiRequest("POST", {}, query or {}, {"content-type": "application/json"}, body)
    return call_api(services, route, request)


@pytest.mark.parametrize(
    ("query", "body", "code"),
    [({"type": "echo"}, b"", "unknown_parameter"), ({}, b'{"type": "echo"}', "invalid_body"),
     ({}, b"[]", "invalid_body"), ({}, b"not json", "invalid_body")],
)  # fmt: skip
def test_pausing_everything_refuses_a_query_or_a_body_meant_for_one_type_and_pauses_nothing(
    services, query, body, code
):
    for route in (routes.pause_all, routes.resume_all):
        r = flow_call(services, route, query, body)
        assert (r.status, r.body["code"]) == (400, code), r.body
        assert "every job type" in r.body["detail"]
    assert type_resource(services, "echo")["paused_by"] == []


def test_pausing_everything_takes_no_body_an_empty_object_or_the_function_key(services):
    for body in (b"", b"  ", b"{}"):
        assert flow_call(services, routes.pause_all, {"code": "a-key"}, body).body["paused_all"] is True
        assert flow_call(services, routes.resume_all, {}, body).body["paused_all"] is False


def test_a_job_cancelled_while_parked_is_not_released(services):
    services.flow.pause("echo")
    job = services.service.submit("echo", 1).job
    assert deliver(services) == [Outcome.PAUSED]
    services.service.cancel(job.id)
    assert services.flow.resume("echo") == 0
    assert visible(services) == 0
    assert services.service.get(job.id).status is Status.CANCELLED


def test_a_second_delivery_of_a_parked_jobs_message_changes_nothing(services):
    services.flow.pause("echo")
    job = services.service.submit("echo", 1).job
    body = messages(services)[0].content
    assert unwrap_process(services, body) is Outcome.PAUSED
    assert unwrap_process(services, body) is Outcome.DUPLICATE  # the record changed: parked already
    assert services.flow.resume("echo") == 1
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert services.service.get(job.id).attempt == 1


# --- concurrency limits ----------------------------------------------------------------------


def unwrap_process(services, body) -> Outcome:
    return services.worker.process(body)


def process_all(services, bodies: list[str]) -> list[Outcome]:
    """Handle the messages at once, on the worker's loop, as a host with a batch of them does."""
    raw = unwrap(services)

    async def run() -> list[Outcome]:
        return list(await asyncio.gather(*(raw.worker.process(b) for b in bodies)))

    return services._portal.run(run())


def test_slots_are_taken_up_to_the_limit_given_back_and_a_dead_holders_comes_back_after_its_lease(services):
    slots, now = services.flow.slots, utcnow()
    minute = timedelta(seconds=60)
    a = slots.take("pair", 2, "a:1", now + minute, now)
    b = slots.take("pair", 2, "b:1", now + minute, now)
    assert a and b and a.row != b.row
    assert slots.take("pair", 2, "c:1", now + minute, now) is None  # two hold a slot
    slots.give_back(a)
    c = slots.take("pair", 2, "c:1", now + minute, now)
    assert c is not None and c.row == a.row
    c = slots.renew(c, now + 2 * minute)  # c's attempt runs on and renews; b's host died
    later = now + minute + timedelta(seconds=1)
    assert slots.held("pair", now) == 2 and slots.held("pair", later) == 1  # b's lease ran out
    d = slots.take("pair", 2, "d:1", later + minute, later)
    assert d is not None and d.row == b.row  # b's slot came back
    assert slots.renew(b, later + minute) is None  # and b, were it alive, learns it lost it
    assert slots.take("pair", 2, "e:1", later + minute, later) is None


def test_an_attempt_that_renewed_its_slot_gives_it_back_when_it_ends_and_wakes_a_waiter(services_factory):
    """The slot's row changes with each renewal: the give-back must use the latest, or the row
    stays held until its lease runs out and nobody is woken (a 1 s job once waited 64 s)."""
    release_gate.clear()
    services = services_factory(job_registry=flow_registry(), JOBS_LEASE_SECONDS="30", JOBS_HEARTBEAT_SECONDS="0.3")
    second, m2, running = one_held_and_one_more(services)
    assert services.worker.process(replace(JobMessage.decode(m2.content), waits=4).encode()) is Outcome.WAITING
    services.storage.queue.delete_message(m2)
    time.sleep(1.2)  # several renewals of the lease and of the slot
    release_gate.set()
    assert running.result(10) is Outcome.SUCCEEDED
    assert services.flow.slots.held("held", utcnow()) == 0  # given back at once, not in 30 s
    [woken] = messages(services)  # and the waiter was woken, not left to its 4-12 s back-off
    assert services.worker.process(woken.content) is Outcome.SUCCEEDED
    assert services.service.get(second.id).status is Status.SUCCEEDED


def one_held_and_one_more(services) -> tuple[Any, Any, Any]:
    """Two jobs of the type limited to 1: the first running (until release_gate is set), the
    second's message not yet handled. Returns the second job, its message and the first's future."""
    first = services.service.submit("held", 1).job
    second = services.service.submit("held", 2).job
    [m1, m2] = sorted(messages(services), key=lambda m: json.loads(m.content)["id"] != first.id)
    running = asyncio.run_coroutine_threadsafe(unwrap(services).worker.process(m1.content), services._portal.loop)
    deadline = time.monotonic() + 10
    while services.service.get(first.id).status is not Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return second, m2, running


def test_a_job_over_its_concurrency_limit_waits_without_spending_an_attempt(services):
    second, m2, running = one_held_and_one_more(services)
    counter = services.storage.counter
    counter.reset()
    assert services.worker.process(m2.content) is Outcome.WAITING
    waiting = services.service.get(second.id)
    assert (waiting.status, waiting.attempt, waiting.errors) == (Status.QUEUED, 1, ())
    assert counter.snapshot()[("queue", "POST")] == 1  # its message, sent again
    assert services.storage.queue.peek_messages(max_messages=32) == []  # hidden for its back-off
    release_gate.set()
    assert running.result(10) is Outcome.SUCCEEDED
    deadline = time.monotonic() + 10
    while services.service.get(second.id).status is not Status.SUCCEEDED:
        assert time.monotonic() < deadline
        for m in messages(services):
            message = JobMessage.decode(m.content)
            assert message.waits >= 1
            services.worker.process(m.content)
            services.storage.queue.delete_message(m)
        time.sleep(0.1)
    assert services.service.get(second.id).attempt == 1


def waiter_rows(services, job_type: str) -> list[str]:
    prefix = f"slot.{job_type}.w."
    query = f"PartitionKey eq 'flow' and RowKey ge '{prefix}' and RowKey lt 'slot.{job_type}.w/'"
    return [row["RowKey"] for row in services.storage.table.query_entities(query)]


def test_a_slot_given_back_wakes_the_job_waiting_for_it_at_once_and_what_waking_costs(services):
    second, m2, running = one_held_and_one_more(services)
    long_wait = replace(JobMessage.decode(m2.content), waits=4)  # its back-off: 4 to 12 s
    unwrap(services).flow.settings.cache_seconds = 60  # an instance reads them once per 5 s: not counted
    services.flow.settings.read()
    counter = services.storage.counter
    counter.reset()
    assert services.worker.process(long_wait.encode()) is Outcome.WAITING
    services.storage.queue.delete_message(m2)  # as the host does once the function returns
    assert counter.snapshot() == {
        ("table", "GET"): 1,  # the type's slots: full
        ("queue", "POST"): 1,  # its message, sent again hidden
        ("table", "PUT"): 1,  # the waiter row naming that message
        ("queue", "DELETE"): 1,
    }
    assert waiter_rows(services, "held") == [f"slot.held.w.{second.id}"] and visible(services) == 0

    time.sleep(1)  # the first holder saw no waiter when it started: it looks for one after a second
    counter.reset()
    release_gate.set()
    assert running.result(10) is Outcome.SUCCEEDED
    woke = {k: v for k, v in counter.snapshot().items() if k != ("table", "PATCH")}  # the result
    assert visible(services) == 1  # woken: not 4 s or more later
    assert woke == {
        ("table", "PUT"): 1,  # the slot given back
        ("table", "GET"): 1,  # a page of waiters
        ("table", "DELETE"): 1,  # the waiter's row, taken
        ("queue", "PUT"): 1,  # its message made visible
    }
    assert waiter_rows(services, "held") == []

    [woken] = messages(services)
    assert JobMessage.decode(woken.content).waits == 5
    counter.reset()
    assert services.worker.process(woken.content) is Outcome.SUCCEEDED
    assert counter.snapshot()[("table", "GET")] == 1 and ("table", "DELETE") not in counter.snapshot()
    assert services.service.get(second.id).attempt == 1


def test_waiter_rows_wake_high_priority_first_and_do_not_outlive_their_messages(services):
    slots, now = services.flow.slots, utcnow()
    minute = timedelta(seconds=60)
    normal, high, gone = (JobKey.new(0, now).id for _ in range(3))
    queues = services.storage.queues
    sent = {p: queues[p].send_message(f"waiting {p}", visibility_timeout=60) for p in (Priority.NORMAL, Priority.HIGH)}
    slots.wait("pair", normal, Priority.NORMAL, sent[Priority.NORMAL].id, sent[Priority.NORMAL].pop_receipt,
               now + minute)  # fmt: skip
    slots.wait("pair", high, Priority.HIGH, sent[Priority.HIGH].id, sent[Priority.HIGH].pop_receipt,
               now + minute)  # fmt: skip
    slots.wait("pair", gone, Priority.NORMAL, "no-such-message", "no-receipt", now - minute)  # long past

    a = slots.take("pair", 2, "a:1", now + minute, now)
    assert a is not None and a.contended  # jobs wait: whoever gives a slot back wakes one
    slots.give_back(a)
    assert [m.content for m in queues[Priority.HIGH].peek_messages()] == ["waiting high"]
    assert queues[Priority.NORMAL].peek_messages() == []
    assert waiter_rows(services, "pair") == [f"slot.pair.w.{normal}"]  # the orphaned row went too

    b = slots.take("pair", 2, f"{normal}:1", now + minute, now, job_id=normal)  # came back by itself
    assert b is not None and waiter_rows(services, "pair") == []
    assert not b.contended  # nobody waits: its give-back reads nothing
    counter = services.storage.counter
    counter.reset()
    assert slots.give_back(b) is False
    assert counter.total() == 1


def test_raising_a_limit_wakes_as_many_waiters_as_it_frees_and_removing_it_wakes_every_one(services, monkeypatch):
    # Waiters not woken stay away for the whole test: with the real back-off (4-12 s after 4 waits)
    # one could come back by itself during the two changes' waits on a loaded machine, and a job
    # on its way back is not woken.
    monkeypatch.setattr(control, "backoff", lambda waits: 60.0)
    services.flow.settings.change("gated", max_concurrency=1)
    first = services.service.submit("gated", 0).job
    first_message = messages(services)[0]
    running = asyncio.run_coroutine_threadsafe(unwrap(services).worker.process(first_message.content),
                                               services._portal.loop)  # fmt: skip
    deadline = time.monotonic() + 10
    while services.service.get(first.id).status is not Status.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    ids = [services.service.submit("gated", n).job.id for n in range(1, 5)]
    for m in messages(services):
        assert services.worker.process(m.content) is Outcome.WAITING
        services.storage.queue.delete_message(m)
    assert (type_resource(services, "gated")["running"], type_resource(services, "gated")["waiting"]) == (1, 4)
    stale = services.flow.settings.read()  # what another instance still sees: a limit of 1

    raised = type_resource(services, "gated", {"max_concurrency": 3})
    assert (raised["running"], raised["waiting"], raised["woken"]) == (1, 2, 2)  # 2 free slots, 2 woken
    assert visible(services) == 2 and len(waiter_rows(services, "gated")) == 2
    assert type_resource(services, "gated", {"max_concurrency": 1})["woken"] == 0  # no slot free: nobody woken
    removed = type_resource(services, "gated", {"max_concurrency": None})
    assert (removed["max_concurrency"], removed["running"], removed["waiting"]) == (None, None, None)
    assert removed["woken"] == 2
    assert visible(services) == 4 and waiter_rows(services, "gated") == []

    # An instance whose view of the settings is 2 s old looks again before making a job wait.
    settings = unwrap(services).flow.settings
    settings.cache_seconds = 60
    settings._cached, settings._read_at = stale, time.monotonic() - 2
    woken = messages(services)
    assert len(woken) == 4
    started = [asyncio.run_coroutine_threadsafe(unwrap(services).worker.process(m.content), services._portal.loop)
               for m in woken]  # fmt: skip
    deadline = time.monotonic() + 10
    while sum(services.service.get(i).status is Status.RUNNING for i in ids) < 4:
        assert time.monotonic() < deadline, [services.service.get(i).status for i in ids]
        time.sleep(0.05)
    release_gate.set()
    assert [f.result(10) for f in [running, *started]] == [Outcome.SUCCEEDED] * 5
    assert {services.service.get(i).attempt for i in ids} == {1}


def test_a_job_back_after_its_limit_was_removed_deletes_its_waiter_row(services):
    job = services.service.submit("echo", 1).job
    services.flow.slots.wait("echo", job.id, Priority.NORMAL, "its-message", "receipt", utcnow() + timedelta(seconds=5))
    [m] = messages(services)
    assert services.worker.process(replace(JobMessage.decode(m.content), waits=2).encode()) is Outcome.SUCCEEDED
    assert waiter_rows(services, "echo") == []


def test_a_limit_of_2_holds_when_10_jobs_are_handled_at_once_and_all_run(services):
    ids = [services.service.submit("pair", n).job.id for n in range(10)]
    deadline = time.monotonic() + 60
    while not all(services.service.get(i).status is Status.SUCCEEDED for i in ids):
        assert time.monotonic() < deadline
        batch = messages(services)
        process_all(services, [m.content for m in batch])
        for m in batch:
            services.storage.queue.delete_message(m)
        time.sleep(0.2)
    jobs = [services.service.get(i) for i in ids]
    assert most_at_once((j.started_at, j.finished_at) for j in jobs) == 2  # the limit, and it was reached
    assert {j.attempt for j in jobs} == {1}  # waiting spent no attempt
    assert services.flow.slots.held("pair", utcnow()) == 0  # every slot given back


def test_a_limit_set_through_the_api_overrides_the_code_and_null_restores_it(services):
    settings = services.flow.settings
    assert settings.effective(settings.read(), "pair").max_concurrency == 2
    settings.change("pair", max_concurrency=5, rate_limit=RateLimit(10, 60))
    flow = settings.effective(settings.read(), "pair")
    assert (flow.max_concurrency, flow.rate_limit) == (5, RateLimit(10, 60))
    settings.change("pair", max_concurrency=None)
    assert settings.effective(settings.read(), "pair").max_concurrency == 2


@pytest.mark.parametrize(
    "body",
    [{"max_concurrency": "3"}, {"max_concurrency": True}, {"rate_limit": {"limit": "5", "period_seconds": 60}},
     {"rate_limit": {"limit": 5, "period_seconds": "60"}}, {"rate_limit": {"limit": True, "period_seconds": 60}}],
)  # fmt: skip
def test_a_limit_given_as_a_string_or_a_boolean_is_refused_and_changes_nothing(services, body):
    headers = {"content-type": "application/json"}
    request = ApiRequest("PATCH", {"type": "gated"}, {}, headers, json.dumps(body).encode())
    response = call_api(services, routes.change_type, request)
    assert response.status == 400 and "must be a JSON number" in json.dumps(response.body)
    assert type_resource(services, "gated")["max_concurrency"] is None


# --- rate limits -----------------------------------------------------------------------------


def test_reservations_keep_any_window_to_the_limit_and_come_in_order(services):
    rate, now = RateLimit(3, 10), utcnow()
    starts = [services.flow.rate.reserve("metered", rate, now) for _ in range(9)]
    assert starts == sorted(starts)
    assert starts[:3] == [starts[0]] * 3 and starts[0] == now
    for i in range(3, 9):
        assert starts[i] - starts[i - 3] >= timedelta(seconds=10)  # any 3 in a row span a period
    assert starts[8] - now < timedelta(seconds=21)  # and no more than that


def test_a_raised_rate_limit_applies_to_the_next_job_at_once(services):
    """The start log is kept per limit: places given under a slower one do not hold new jobs back."""
    rate, now = services.flow.rate, utcnow()
    slow = [rate.reserve("metered", RateLimit(1, 300), now) for _ in range(3)]
    assert [round((t - now).total_seconds()) for t in slow] == [0, 300, 600]
    assert rate.reserve("metered", RateLimit(100, 1), now) == now  # not after 600 s
    assert rate.reserve("metered", RateLimit(100, 1), now) == now  # and the log goes on from there


def test_a_lowered_rate_limit_counts_the_starts_that_happened_but_not_the_places_ahead(services):
    rate, now = services.flow.rate, utcnow()
    assert [rate.reserve("metered", RateLimit(2, 20), now) for _ in range(2)] == [now, now]
    # 1 a minute now: what started counts, so the next waits a minute, not a fresh log's nothing.
    assert rate.reserve("metered", RateLimit(1, 60), now) == now + timedelta(seconds=60)
    # A place ahead under the old limit does not count (its job asks again when it comes, or is
    # woken if it was far): only what started does.
    later = now + timedelta(minutes=5)
    assert rate.reserve("metered", RateLimit(5, 60), later) == later


def test_a_rate_limited_job_waits_once_until_its_reserved_start_and_the_rate_holds(services):
    ids = [services.service.submit("metered", n).job.id for n in range(7)]
    counter = services.storage.counter
    counter.reset()
    before = utcnow()
    outcomes = [services.worker.process(m.content) for m in messages(services)]
    assert sorted(outcomes) == sorted([Outcome.SUCCEEDED] * 3 + [Outcome.WAITING] * 4)
    waiting = [i for i in ids if services.service.get(i).status is Status.QUEUED]
    assert len(waiting) == 4 and all(services.service.get(i).attempt == 1 for i in waiting)
    assert counter.snapshot()[("queue", "POST")] == 4  # each sent again once, with its reserved start
    reserved: dict[str, Any] = {}
    deadline = time.monotonic() + 15
    while not all(services.service.get(i).status is Status.SUCCEEDED for i in ids):
        assert time.monotonic() < deadline
        for m in messages(services):
            message = JobMessage.decode(m.content)
            reserved[message.id] = message.reserved
            assert services.worker.process(m.content) is Outcome.SUCCEEDED  # no second wait
            services.storage.queue.delete_message(m)
        time.sleep(0.1)
    assert set(reserved) == set(waiting)
    for job_id, at in reserved.items():
        assert services.service.get(job_id).started_at >= at  # never before its reserved start
    # The starts handed out (now for the first 3, reserved for the others): any 3 in a row span 2 s.
    starts = sorted([before] * 3 + list(reserved.values()))
    for i in range(3, len(starts)):
        assert starts[i] - starts[i - 3] >= timedelta(seconds=2)


def rate_rows(services, job_type: str) -> dict[str, str]:
    """The rate waiter rows of a type: job id -> the limit its start was given under."""
    prefix = f"rate.{job_type}.w."
    query = f"PartitionKey eq 'flow' and RowKey ge '{prefix}' and RowKey lt 'rate.{job_type}.w/'"
    return {row["RowKey"][len(prefix) :]: row["rate"] for row in services.storage.table.query_entities(query)}


def wait_in_line(services, job_type: str, count: int) -> list[str]:
    """Submit `count` jobs and deliver each once: the first starts, the others wait for their place."""
    ids = [services.service.submit(job_type, n).job.id for n in range(count)]
    outcomes = deliver(services)
    assert sorted(outcomes) == sorted([Outcome.SUCCEEDED] + [Outcome.WAITING] * (count - 1)), outcomes
    return ids


def test_a_changed_rate_limit_wakes_the_jobs_holding_far_starts_under_the_old_one(services):
    """Raising a slow limit speeds up the backlog already waiting, not only the jobs after it."""
    assert type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 300}})["woken"] == 0
    counter = services.storage.counter
    counter.reset()
    ids = wait_in_line(services, "other", 4)
    assert counter.snapshot()[("table", "PUT")] == 3 + 3  # each waiter: the start log, and its row
    assert sorted(rate_rows(services, "other")) == sorted(ids[1:])  # starts 300, 600 and 900 s ahead
    assert {under.split("@")[0] for under in rate_rows(services, "other").values()} == {"1/300s"}
    assert visible(services) == 0

    raised = type_resource(services, "other", {"rate_limit": {"limit": 100, "period_seconds": 60}})
    assert raised["woken"] == 3 and visible(services) == 3 and rate_rows(services, "other") == {}
    assert sorted(deliver(services)) == [Outcome.SUCCEEDED] * 3  # each took a new start: now
    assert {services.service.get(i).status for i in ids} == {Status.SUCCEEDED}
    assert {services.service.get(i).attempt for i in ids} == {1}
    assert rate_rows(services, "other") == {}


def test_a_woken_job_given_a_new_start_ahead_runs_then_not_at_its_old_due_time(services):
    """A long wait moves the job's due time to its start (so the reconciler leaves it): woken, and
    given a new start a little ahead, it must run then, not be sent back to the old start."""
    assert type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 300}})["woken"] == 0
    ids = wait_in_line(services, "other", 4)
    assert min(services.store.get(i).job.not_before for i in ids[1:]) > utcnow() + timedelta(seconds=200)  # moved
    assert type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 1}})["woken"] == 3
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + 20
    while {services.service.get(i).status for i in ids} != {Status.SUCCEEDED}:
        assert time.monotonic() < deadline, outcomes
        outcomes += deliver(services)
        time.sleep(0.2)
    assert Outcome.NOT_DUE not in outcomes and outcomes.count(Outcome.SUCCEEDED) == 3


def test_a_stale_instance_does_not_reset_the_start_log_of_a_newer_limit(services):
    """An instance may read the settings up to 5 s late: finding the log kept under a limit set
    after the one it knows, it reads them again instead of starting the log afresh (a burst)."""
    type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 300}})
    stale = services.flow.settings.read()
    type_resource(services, "other", {"rate_limit": {"limit": 2, "period_seconds": 60}})
    for n in range(3):
        services.service.submit("other", n)
    assert sorted(deliver(services)) == sorted([Outcome.SUCCEEDED] * 2 + [Outcome.WAITING])  # a minute: 2 starts
    settings = unwrap(services).flow.settings
    settings.cache_seconds = 60
    settings._cached, settings._read_at = stale, time.monotonic() - 2  # 1/300s, read 2 s ago
    late = services.service.submit("other", 9).job
    counter = services.storage.counter
    counter.reset()
    [message] = [m for m in messages(services) if JobMessage.decode(m.content).id == late.id]
    assert services.worker.process(message.content) is Outcome.WAITING  # not started on a log made afresh
    assert counter.snapshot()[("table", "GET")] == 1 + 1 + 1  # the log, the settings again, the log
    assert services.flow.settings.effective(settings._cached, "other").rate_limit == RateLimit(2, 60)
    log = services.storage.table.get_entity("flow", "rate.other")
    assert log["rate"].startswith("2/60s@") and len(log["starts"].split(",")) == 2


def test_removing_a_rate_limit_wakes_its_waiters_and_a_near_start_leaves_no_row(services):
    assert type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 20}})["woken"] == 0
    ids = wait_in_line(services, "other", 3)  # starts 20 and 40 s ahead: only the second is noted
    assert len(rate_rows(services, "other")) == 1
    removed = type_resource(services, "other", {"rate_limit": None})
    assert (removed["rate_limit"], removed["woken"]) == (None, 1)
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert [services.service.get(i).status for i in ids].count(Status.SUCCEEDED) == 2  # the near one waits on


def test_the_reconciler_wakes_starts_noted_under_the_old_limit_after_the_change_then_stops_looking(services):
    """An instance that had not yet read a change may still give a start under the old limit: the
    reconciler wakes it, and stops looking once none is left, RELEASE_TAIL after the change."""
    assert type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 300}})["woken"] == 0
    stale = services.flow.settings.read()
    type_resource(services, "other", {"rate_limit": {"limit": 5, "period_seconds": 1}})
    settings = unwrap(services).flow.settings
    settings.cache_seconds = 60
    settings._cached, settings._read_at = stale, time.monotonic()  # read just now: not read again
    ids = wait_in_line(services, "other", 2)
    assert [under.split("@")[0] for under in rate_rows(services, "other").values()] == ["1/300s"]

    done = services.reconciler.run()
    assert done["rate_woken"] == 1 and visible(services) == 1 and rate_rows(services, "other") == {}
    settings.cache_seconds = 0
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert {services.service.get(i).status for i in ids} == {Status.SUCCEEDED}
    services.reconciler.run()  # nothing left, but an instance may still note a start under the old limit
    assert services.flow.settings.read().overrides["other"].rate_wake_pending
    services.flow.settings.change("other", rate_changed_at=utcnow() - 2 * control.RELEASE_TAIL)
    services.reconciler.run()  # nothing left, and the tail is over: done
    assert not services.flow.settings.read().overrides["other"].rate_wake_pending


def held_by(services, job_id: str) -> tuple[dict | None, int, dict]:
    """GET /api/jobs/{id}: its `held_by`, its Retry-After, and the table calls it made."""
    counter = services.storage.counter
    counter.reset()
    response = call_api(services, api.get_job, ApiRequest("GET", {"id": job_id}))
    assert response.status == 200, response.body
    calls = {k: v for k, v in counter.snapshot().items() if k[0] == "table"}
    return response.body.get("held_by"), int(response.headers.get("Retry-After", 0)), calls


def test_a_queued_jobs_get_says_which_limit_holds_it_back_and_until_when(services):
    """A job waiting for its rate-limit start or a concurrency slot stays `queued` with nothing
    written to its record: its GET reads the reason from its waiter row, and a polling client is
    told to come back in a minute, not every second."""
    type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 300}})
    ids = wait_in_line(services, "other", 3)
    unwrap(services).flow.settings.cache_seconds = 60
    services.flow.settings.read()  # an instance's cached settings: not counted
    hold, retry_after, calls = held_by(services, ids[2])
    assert hold is not None and hold["reason"] == "rate_limit"
    until = datetime.fromisoformat(hold["until"]) - utcnow()
    assert timedelta(seconds=590) < until <= timedelta(seconds=600), until  # its place: 2 x 300 s ahead
    assert retry_after == 60  # a change of the limit may start it sooner: look again within a minute
    assert calls == {("table", "GET"): 2}  # the record, and a point read of its rate waiter row
    assert held_by(services, ids[0])[0] is None  # it ran

    second, m2, running = one_held_and_one_more(services)
    assert services.worker.process(m2.content) is Outcome.WAITING
    hold, retry_after, _ = held_by(services, second.id)
    assert hold is not None and hold["reason"] == "concurrency_limit" and retry_after <= 2
    release_gate.set()
    assert running.result(10) is Outcome.SUCCEEDED


def test_a_paused_jobs_get_says_so_before_and_after_it_is_parked_and_a_plain_job_pays_nothing(services):
    plain = services.service.submit("other", 1).job
    unwrap(services).flow.settings.cache_seconds = 60
    services.flow.settings.read()
    assert held_by(services, plain.id) == (None, 1, {("table", "GET"): 1})  # the record only
    services.flow.pause("echo")
    services.flow.settings.read()
    job = services.service.submit("echo", 1).job
    assert held_by(services, job.id)[0] == {"reason": "pause", "until": None}  # its message not yet received
    assert Outcome.PAUSED in deliver(services)
    assert held_by(services, job.id)[:2] == ({"reason": "pause", "until": None}, 10)  # parked: from its record
    # (a polling client looks again every 10 s, not every second, while the type is paused)
    later = services.service.submit("echo", 2, delay_seconds=120).job
    assert held_by(services, later.id)[0] is None  # not due: its due time says why it waits


def noted_message(services, job_type: str, start_in: timedelta) -> tuple[Job, JobMessage]:
    """A job's message as a far rate wait leaves it (hidden, noted), with its waiter row."""
    job = services.service.submit(job_type, 1).job
    [m] = [m for m in messages(services) if JobMessage.decode(m.content).id == job.id]
    services.storage.queue.delete_message(m)
    start = utcnow() + start_in
    waiting = replace(JobMessage.decode(m.content), reserved_ms=to_ms(start), noted=job_type)
    sent = services.storage.queue.send_message(waiting.encode(), visibility_timeout=60)
    services.flow.rate.note(job_type, job.id, Priority.NORMAL, sent, start, "3/2s")
    return job, waiting


def test_a_noted_start_taken_cancelled_or_sent_back_for_a_thread_deletes_its_row(services, monkeypatch):
    taken, m1 = noted_message(services, "metered", timedelta(0))
    cancelled, m2 = noted_message(services, "metered", timedelta(0))
    sent_back, m3 = noted_message(services, "metered", timedelta(0))
    services.service.cancel(cancelled.id)
    assert len(rate_rows(services, "metered")) == 3
    assert services.worker.process(m1.encode()) is Outcome.SUCCEEDED
    assert services.worker.process(m2.encode()) is Outcome.STALE

    async def no_thread(within: float) -> None:
        return None

    monkeypatch.setattr(unwrap(services).worker.threads, "take", no_thread)
    assert services.worker.process(m3.encode()) is Outcome.WAITING  # sent back: no rate change ends that
    assert rate_rows(services, "metered") == {}


def test_a_job_that_waits_longer_than_the_grace_moves_its_due_time_so_the_reconciler_leaves_it(services_factory):
    release_gate.clear()
    services = services_factory(job_registry=flow_registry(), JOBS_RECONCILE_GRACE_SECONDS="5")
    second, m2, running = one_held_and_one_more(services)
    before = services.service.get(second.id).not_before
    long_wait = replace(JobMessage.decode(m2.content), waits=4)  # its back-off: 4 to 12 s
    assert services.worker.process(long_wait.encode()) is Outcome.WAITING
    moved = services.service.get(second.id).not_before
    assert moved > before  # its wait reaches past the grace: the due time moves with it
    done = services.reconciler.run(now=moved + timedelta(seconds=1))
    assert done["requeued"] == 0
    release_gate.set()
    assert running.result(10) is Outcome.SUCCEEDED
    # Woken before the end of its back-off (by the give-back, or here), it is due all the same: it
    # runs, and is not sent back until its moved due time.
    services.flow.slots.wake("held", utcnow(), None)
    [woken] = messages(services)
    assert services.service.get(second.id).not_before > utcnow()
    assert services.worker.process(woken.content) is Outcome.SUCCEEDED


def test_a_job_parked_again_while_its_release_runs_keeps_its_index_row(services):
    """A worker that has not yet seen a resume parks the released job again before the release
    pass drops the index rows it read: the new row must stay, or the job would stay parked."""
    services.flow.pause("echo")
    job = services.service.submit("echo", 1).job
    assert deliver(services) == [Outcome.PAUSED]
    parking = unwrap(services).flow.parking
    shard = job.key.shard
    rows = services._portal.run(parking._page(shard, "echo"))  # what a release pass read
    found = services.store.get(job.id)
    assert services.flow.parking.park(found.job, found.etag)  # parked again meanwhile
    services._portal.run(parking._drop_entries(shard, rows))
    assert len(services._portal.run(parking._page(shard, "echo"))) == 1  # the new row stayed
    assert services.flow.resume("echo") == 1
    assert deliver(services) == [Outcome.SUCCEEDED]


def test_types_whose_names_extend_each_other_share_no_slots_or_waiters(services):
    """`a.w`'s rows sort inside `a`'s key range (type names may hold dots): `a` must not count
    them as its own, and must not wake or clear them."""
    slots, now = services.flow.slots, utcnow()
    minute = timedelta(seconds=60)
    other = slots.take("pair.w", 1, "x:1", now + minute, now)  # its slot row: slot.pair.w.000
    sent = services.storage.queue.send_message("waiting pair.w", visibility_timeout=60)
    waiter = JobKey.new(0, now).id
    slots.wait("pair.w", waiter, Priority.NORMAL, sent.id, sent.pop_receipt, now - 2 * minute)  # looks orphaned
    assert other is not None
    assert slots.occupancy("pair", now) == (0, 0)
    assert slots.take("pair", 1, "y:1", now + minute, now) is not None  # "pair" has its own slot free
    assert slots.wake("pair", now, None) == 0
    assert slots.occupancy("pair.w", now) == (1, 0)  # its slot still held (its waiter is orphaned)
    assert waiter_rows(services, "pair.w") == [f"slot.pair.w.w.{waiter}"]  # not cleared by "pair"


def test_resuming_a_type_releases_none_of_a_type_whose_name_extends_its_own(services):
    services.flow.pause("echo")
    services.flow.pause("echo.b")
    jobs = {}
    for job_type in ("echo", "echo.b"):
        written = services.store.insert(Job.new(job_type, 1, 3, shard=0))
        assert services.flow.parking.park(written.job, written.etag)
        jobs[job_type] = written.job.id
    assert services.flow.resume("echo") == 1
    assert services.store.get(jobs["echo"]).job.parked is False
    assert services.store.get(jobs["echo.b"]).job.parked is True  # still paused: left parked


def calls_for_one(services, job_type: str) -> dict:
    services.service.submit(job_type, 1)
    unwrap(services).flow.settings.cache_seconds = 60
    services.flow.settings.read()  # the settings an instance reads once per 5 s: not counted
    counter = services.storage.counter
    counter.reset()
    [message] = messages(services)
    assert services.worker.process(message.content) is Outcome.SUCCEEDED
    return {k: v for k, v in counter.snapshot().items() if k[0] == "table"}


def test_a_rate_limited_job_that_may_start_costs_two_table_calls_more(services):
    assert calls_for_one(services, "metered") == {
        ("table", "GET"): 1,  # the start log (the first time: not found)
        ("table", "POST"): 1,  # the log, created (later: a conditional PUT)
        ("table", "PATCH"): 2,  # claim and result, as for any job
    }
    assert calls_for_one(services, "metered") == {("table", "GET"): 1, ("table", "PUT"): 1, ("table", "PATCH"): 2}


def test_a_concurrency_limited_job_costs_three_table_calls_more(services):
    calls_for_one(services, "pair")  # creates the slot rows it uses
    calls = calls_for_one(services, "pair")
    assert calls[("table", "GET")] == 1  # the type's slots
    assert calls[("table", "PATCH")] == 2  # claim and result
    assert calls.get(("table", "PUT"), 0) + calls.get(("table", "POST"), 0) == 2  # take a slot, give it back


def test_types_cost_one_query_plus_one_per_concurrency_limited_type_and_a_change_two_calls_more(services):
    """What the dashboard's Types view pays per refresh (GET /api/types), and a queued job's page
    (GET /api/types/{type})."""

    def table_calls(route, method: str = "GET", body: bytes = b"", **params) -> dict:
        counter = services.storage.counter
        counter.reset()
        headers = {"content-type": "application/json"} if body else {}
        response = call_api(services, route, ApiRequest(method, params, {}, headers, body))
        assert response.status == 200, response.body
        return {k: v for k, v in counter.snapshot().items() if k[0] == "table"}

    # pair and held have a limit in the code; echo, other and metered have none.
    assert table_calls(routes.list_types) == {("table", "GET"): 1 + 2}
    services.flow.settings.change("echo", max_concurrency=3)
    assert table_calls(routes.list_types) == {("table", "GET"): 1 + 3}
    assert table_calls(routes.get_type, type="echo") == {("table", "GET"): 2}
    assert table_calls(routes.get_type, type="other") == {("table", "GET"): 1}
    # Pausing (or setting a limit): the type's settings row read and written, then the answer as above.
    pause = table_calls(routes.change_type, "PATCH", b'{"paused": true}', type="other")
    assert pause == {("table", "GET"): 1 + 1, ("table", "POST"): 1}  # the row did not exist yet
    limit = table_calls(routes.change_type, "PATCH", b'{"max_concurrency": 2}', type="other")
    assert limit == {("table", "GET"): 1 + 1 + 1, ("table", "PUT"): 1}  # and its slots


def test_a_job_back_before_its_far_start_under_the_same_limit_keeps_its_place(services):
    """A queue message is hidden 7 days at most, so one whose start is further ahead comes back
    before it. Under the same limit it is sent back for the same start: asking again would put it
    at the end of the line, and a backlog longer than 7 days would never start."""
    type_resource(services, "other", {"rate_limit": {"limit": 1, "period_seconds": 86400}})
    ids = wait_in_line(services, "other", 3)  # starts now, in a day and in two days
    log = services.storage.table.get_entity("flow", "rate.other")["starts"]
    row = services.storage.table.get_entity("flow", f"rate.other.w.{ids[2]}")
    queue = services.storage.queue
    queue.update_message(row["message_id"], row["pop_receipt"], visibility_timeout=0)  # as if 7 days had passed
    [back] = messages(services)
    reserved = JobMessage.decode(back.content).reserved
    assert reserved is not None and reserved > utcnow() + timedelta(hours=47)

    assert services.worker.process(back.content) is Outcome.WAITING
    queue.delete_message(back)

    assert services.storage.table.get_entity("flow", "rate.other")["starts"] == log  # no new place taken
    again = services.storage.table.get_entity("flow", f"rate.other.w.{ids[2]}")
    assert again["message_id"] != row["message_id"] and again["back"] == row["back"]
    queue.update_message(again["message_id"], again["pop_receipt"], visibility_timeout=0)
    [resent] = messages(services)
    assert JobMessage.decode(resent.content).reserved == reserved
