"""Submit, run, retry, dead-letter, cancel, redrive: the service and worker on a real Azurite."""

from __future__ import annotations

import time
from typing import Any

import pytest

from shared.idempotency import RequestHash
from shared.job import Status
from shared.messages import JobMessage
from shared.properties import PROPERTY_CHARS, property_chars
from shared.registry import Registry
from shared.service import Conflict
from shared.store import ConcurrencyConflict
from shared.worker import Outcome
from tests.blocking import unwrap
from tests.integration.conftest import deliver, messages_in, record_reads, run_until


def status_of(services, job_id):
    return services.service.get(job_id)


def test_echo_job_succeeds_with_its_payload_as_result(services):
    job = services.service.submit("echo", {"hello": "world"}).job
    assert [(m.id, m.attempt) for m in messages_in(services)] == [(job.id, 1)]
    assert deliver(services) == [Outcome.SUCCEEDED]
    done = status_of(services, job.id)
    assert (done.status, done.result, done.attempt) == (Status.SUCCEEDED, {"hello": "world"}, 1)
    assert done.started_at and done.finished_at


def test_fail_twice_then_succeeds_on_third_attempt(services):
    job = services.service.submit("fail", {"times": 2}, max_attempts=5).job
    outcomes = run_until(services, lambda: status_of(services, job.id).status.terminal)
    assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.SUCCEEDED]
    done = status_of(services, job.id)
    assert (done.status, done.attempt, done.result) == (Status.SUCCEEDED, 3, {"succeeded_on_attempt": 3})
    assert [e["attempt"] for e in done.errors] == [1, 2]


def test_retry_message_is_hidden_for_the_backoff(services_factory):
    services = services_factory(JOBS_BACKOFF_BASE_SECONDS="3", JOBS_BACKOFF_MAX_SECONDS="3")
    job = services.service.submit("fail", {}).job
    assert deliver(services) == [Outcome.RETRY_SCHEDULED]
    assert deliver(services) == []  # hidden for 1.5-3 s
    record = status_of(services, job.id)
    assert record.status is Status.QUEUED and record.attempt == 2
    assert 1 <= (record.not_before - record.updated_at).total_seconds() <= 3


def test_fail_forever_dead_letters_after_max_attempts(services):
    job = services.service.submit("fail", None, max_attempts=3).job
    outcomes = run_until(services, lambda: status_of(services, job.id).status.terminal)
    assert outcomes[-1] is Outcome.DEAD_LETTERED and len(outcomes) == 3
    dead = status_of(services, job.id)
    assert (dead.status, dead.attempt, len(dead.errors)) == (Status.DEAD_LETTERED, 3, 3)
    assert messages_in(services) == []


def test_duplicate_message_does_not_run_an_attempt_twice(services):
    job = services.service.submit("echo", 1).job
    services.storage.queue.send_message(JobMessage(job.id, 1).encode())  # a second delivery
    assert sorted(deliver(services)) == sorted([Outcome.SUCCEEDED, Outcome.STALE])
    assert status_of(services, job.id).attempt == 1


def test_message_for_running_attempt_with_live_lease_is_dropped(services):
    job = services.service.submit("echo", 1).job
    found = services.store.get(job.id)
    from datetime import timedelta

    services.store.replace(found.job.claim(1, timedelta(seconds=60)), found.etag, was=Status.QUEUED)
    assert deliver(services) == [Outcome.DUPLICATE]
    assert status_of(services, job.id).status is Status.RUNNING


def test_lost_worker_counts_as_failed_attempt_when_its_message_returns(services_factory):
    services = services_factory(JOBS_LEASE_SECONDS="0.5", JOBS_HEARTBEAT_SECONDS="0.1")
    job = services.service.submit("echo", 1).job
    found = services.store.get(job.id)
    from datetime import timedelta

    services.store.replace(found.job.claim(1, timedelta(seconds=0.5)), found.etag, was=Status.QUEUED)  # then "crash"
    time.sleep(0.6)
    assert deliver(services) == [Outcome.RETRY_SCHEDULED]
    run_until(services, lambda: status_of(services, job.id).status.terminal)
    done = status_of(services, job.id)
    assert (done.status, done.attempt) == (Status.SUCCEEDED, 2)
    assert "lease expired" in done.errors[0]["error"]


@pytest.mark.parametrize("body", [b"not json", b'{"id": "nope", "attempt": 1}', b"[1,2]"])
def test_malformed_message_is_set_aside_in_the_poison_queue(services, body):
    services.storage.queue.send_message(body.decode())
    assert deliver(services) == [Outcome.SET_ASIDE]
    aside = [m.content for m in services.storage.poison_queue.peek_messages(max_messages=5)]
    assert aside == [body.decode()]


def test_message_naming_unknown_job_is_set_aside(services):
    job = services.service.submit("echo", 1).job
    services.store.table.delete_entity(job.key.partition_key, job.key.row_key)
    assert deliver(services) == [Outcome.SET_ASIDE]


def test_cancel_queued_job_then_its_message_is_dropped(services):
    job = services.service.submit("echo", 1).job
    assert services.service.cancel(job.id).status is Status.CANCELLED
    assert deliver(services) == [Outcome.STALE]
    assert status_of(services, job.id).status is Status.CANCELLED


def test_cancel_finished_job_is_a_conflict_with_the_reason(services):
    job = services.service.submit("echo", 1).job
    deliver(services)
    with pytest.raises(Conflict, match="succeeded"):
        services.service.cancel(job.id)


def test_running_job_cancelled_stops_at_checkpoint_and_stays_cancelled(services_factory):
    """A checkpoint costs no storage call: the lease renewal that the cancel makes fail tells it."""
    from shared.registry import Registry

    services = services_factory(JOBS_HEARTBEAT_SECONDS="0.2")
    reg = Registry()
    seen = []

    @reg.handler("steps")
    def steps(ctx):
        services.service.cancel(ctx.id)  # the cancel lands while it runs
        for _ in range(50):  # units of work, a checkpoint between each
            time.sleep(0.05)
            ctx.checkpoint()
        seen.append("after checkpoint")

    services.worker.registry = reg
    services.service.registry = reg
    job = services.service.submit("steps", None).job
    assert deliver(services) == [Outcome.CANCELLED]
    assert seen == [] and status_of(services, job.id).status is Status.CANCELLED


def test_result_of_a_cancelled_running_job_is_not_written(services):
    from shared.registry import Registry

    reg = Registry()

    @reg.handler("ignores_cancel")
    def ignores(ctx):
        services.service.cancel(ctx.id)
        return "done anyway"

    services.worker.registry = reg
    services.service.registry = reg
    job = services.service.submit("ignores_cancel", None).job
    assert deliver(services) == [Outcome.CANCELLED]
    final = status_of(services, job.id)
    assert final.status is Status.CANCELLED and final.result is None


def test_a_result_that_is_not_json_dead_letters_the_job_with_the_reason_not_retried(services):
    from shared.registry import Registry

    reg = Registry()
    deep: list = []
    for _ in range(100_000):  # nested past the interpreter's recursion limit
        deep = [deep]
    reg.handler("a_set")(lambda ctx: {1, 2})
    reg.handler("too_deep")(lambda ctx: deep)
    reg.handler("not_a_number")(lambda ctx: {"ratio": float("nan")})  # JSON has no NaN: no client could read it
    services.worker.registry = services.service.registry = reg
    jobs = [services.service.submit(job_type, None).job for job_type in ("a_set", "too_deep", "not_a_number")]
    assert deliver(services) == [Outcome.DEAD_LETTERED] * 3
    for job in jobs:
        final = status_of(services, job.id)
        assert final.attempt == 1 and "result that is not JSON" in final.errors[-1]["error"]


def test_redrive_dead_lettered_job_runs_a_new_attempt(services):
    job = services.service.submit("fail", {"times": 1}, max_attempts=1).job
    run_until(services, lambda: status_of(services, job.id).status.terminal)
    assert status_of(services, job.id).status is Status.DEAD_LETTERED
    again = services.service.redrive(job.id)
    assert (again.status, again.attempt) == (Status.QUEUED, 2)
    run_until(services, lambda: status_of(services, job.id).status.terminal)
    done = status_of(services, job.id)
    assert (done.status, done.attempt) == (Status.SUCCEEDED, 2)


def test_redrive_of_a_queued_job_is_a_conflict(services):
    job = services.service.submit("echo", 1).job
    with pytest.raises(Conflict, match="only dead-lettered or cancelled"):
        services.service.redrive(job.id)


def test_permanent_error_dead_letters_without_retry(services):
    job = services.service.submit("sleep", {"seconds": 9999}).job
    assert deliver(services) == [Outcome.DEAD_LETTERED]
    assert status_of(services, job.id).attempt == 1


def test_async_handler_runs(services):
    job = services.service.submit("sleep", {"seconds": 0.01}).job
    assert deliver(services) == [Outcome.SUCCEEDED]
    assert status_of(services, job.id).result == {"slept": 0.01}


def test_large_payload_goes_to_a_blob_and_comes_back(services):
    payload = {"blob": "x" * 200_000}
    job = services.service.submit("echo", payload).job
    entity = services.storage.table.get_entity(job.key.partition_key, job.key.row_key)
    assert "payload" not in entity and entity["payload_blob"] == f"{job.id}/payload.json"
    assert deliver(services) == [Outcome.SUCCEEDED]
    done = status_of(services, job.id)
    assert done.payload == payload and done.result == payload


@pytest.mark.parametrize("text", ["é", "😀", "x"], ids=["two-byte", "astral", "ascii"])
def test_an_error_too_long_to_keep_twenty_of_still_ends_the_attempt_and_the_newest_are_kept(services_factory, text):
    """A table property holds 32K UTF-16 characters: 20 errors of 2,000 characters (or 3 of them
    in a script whose escapes took 6 characters each) once made the failure impossible to write,
    and the job stayed running with its attempt never ended."""
    registry = Registry()

    @registry.handler("loud", max_attempts=22)
    def loud(ctx: Any) -> Any:
        raise RuntimeError(f"attempt {ctx.attempt}: " + text * 3000)

    services = services_factory(job_registry=registry, JOBS_BACKOFF_BASE_SECONDS="0", JOBS_BACKOFF_MAX_SECONDS="0")
    job = services.service.submit("loud", None).job
    outcomes = run_until(services, lambda: status_of(services, job.id).status.terminal, timeout=60)
    assert outcomes == [Outcome.RETRY_SCHEDULED] * 21 + [Outcome.DEAD_LETTERED]
    dead = status_of(services, job.id)
    assert dead.errors[-1]["error"].startswith("RuntimeError: attempt 22: ")  # the newest kept, the oldest dropped
    attempts = [e["attempt"] for e in dead.errors]
    assert attempts == list(range(attempts[0], 23)) and len(attempts) < 20
    stored = services.storage.table.get_entity(job.key.partition_key, job.key.row_key)["errors"]
    assert property_chars(stored) <= PROPERTY_CHARS


@pytest.mark.parametrize(
    ("payload", "inline"),
    [("é" * 25_000, True), ("😀" * 14_000, True), ("😀" * 16_000, False), ("\ud800" * 31_000, False)],
    ids=["two-byte-inline", "astral-inline", "astral-blob", "lone-surrogate-blob"],
)
def test_a_payload_stays_in_the_record_while_the_table_can_hold_it(services, payload, inline):
    """Counted as the table counts (UTF-16), not as escapes: 25,000 `é` fit a property (the
    `\\u00e9` escapes, 150,000 characters, went to a blob: one call more to write, one to read)."""
    job = services.service.submit("echo", payload).job
    entity = services.storage.table.get_entity(job.key.partition_key, job.key.row_key)
    assert ("payload_blob" not in entity) is inline
    assert deliver(services) == [Outcome.SUCCEEDED]
    done = status_of(services, job.id)
    assert done.payload == payload and done.result == payload


def test_idempotency_key_returns_the_same_job(services):
    first = services.service.submit("echo", 1, idempotency_key="order-42", request_hash=RequestHash.of("h1"))
    again = services.service.submit("echo", 1, idempotency_key="order-42", request_hash=RequestHash.of("h1"))
    assert first.created and not again.created and again.job.id == first.job.id
    assert len(messages_in(services)) == 1


def test_idempotency_key_with_other_body_is_refused(services):
    from shared.idempotency import IdempotencyMismatch

    services.service.submit("echo", 1, idempotency_key="k", request_hash=RequestHash.of("h1"))
    with pytest.raises(IdempotencyMismatch):
        services.service.submit("echo", 2, idempotency_key="k", request_hash=RequestHash.of("h2"))


def test_job_without_handler_is_dead_lettered(services):
    job = services.service.submit("echo", 1).job
    services.worker.registry = type(services.registry)()  # the type was removed from the app
    assert deliver(services) == [Outcome.DEAD_LETTERED]
    assert "no handler" in status_of(services, job.id).errors[-1]["error"]


def answer_lost(services, method, writes=1):
    """The first `writes` calls of the store's `method` are applied, but their answer is lost:
    the SDK's resend then meets the first try's change and fails its ETag condition."""
    store = unwrap(services).store
    real = getattr(store, method)
    left = [writes]

    async def applied_then_refused(*args, **kwargs):
        written = await real(*args, **kwargs)
        if left[0] > 0:
            left[0] -= 1
            raise ConcurrencyConflict
        return written

    setattr(store, method, applied_then_refused)


@pytest.mark.parametrize("method", ["update", "replace"])
def test_a_write_whose_answer_was_lost_stands(services, method):
    """A claim (or a result write) refused only because its own first try landed is ours: the
    attempt runs and ends as it should, where it used to be dropped as a duplicate (the attempt
    then spent when its lease ran out) or its outcome reported as a lost race."""
    job = services.service.submit("echo", {"n": 1}).job
    answer_lost(services, "update", writes=2)  # the claim and the result write
    assert deliver(services) == [Outcome.SUCCEEDED]
    done = status_of(services, job.id)
    assert (done.status, done.attempt, done.result) == (Status.SUCCEEDED, 1, {"n": 1})

    failing = services.service.submit("fail", {"times": 1}, max_attempts=3).job
    answer_lost(services, method)  # the claim, or the write that schedules attempt 2
    assert deliver(services) == [Outcome.RETRY_SCHEDULED]
    # Attempt 2's message was put (hidden for the backoff): it runs without the reconciler's help.
    assert run_until(services, lambda: status_of(services, failing.id).status.terminal) == [Outcome.SUCCEEDED]


def test_a_claim_refused_by_another_change_costs_one_read(services):
    """A second delivery of a message whose job has moved on: the refused claim reads the record
    once (is the write ours after all?) and the fallback goes on from that read."""
    job = services.service.submit("echo", 1).job
    message = services.storage.queue.peek_messages()[0]
    assert deliver(services) == [Outcome.SUCCEEDED]
    with record_reads(services) as reads:
        assert services._portal.run(unwrap(services).worker.process(message.content)) is Outcome.STALE
    assert reads == [job.id]
