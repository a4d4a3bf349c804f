"""The state machine and the retry policy, without storage."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from shared.job import MAX_ERRORS_KEPT, InvalidTransition, Job, JobKey, Status
from shared.properties import PROPERTY_CHARS, property_chars, property_json
from shared.retry import RetryPolicy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_seconds=2, max_seconds=60)


def new_job(**kw) -> Job:
    return Job.new("echo", {"x": 1}, kw.pop("max_attempts", 3), shard=kw.pop("shard", 1), now=NOW, **kw)


def running(job: Job) -> Job:
    return job.claim(job.attempt, timedelta(seconds=30), now=NOW)


def test_new_job_is_queued_on_attempt_one_due_after_its_delay():
    job = new_job(delay=timedelta(seconds=90))
    assert (job.status, job.attempt) == (Status.QUEUED, 1)
    assert job.due_at == job.not_before == NOW + timedelta(seconds=90)


def test_id_holds_the_partition_and_row_keys_and_sorts_newest_first():
    older, newer = JobKey.new(2, NOW), JobKey.new(2, NOW + timedelta(seconds=1))
    assert JobKey.parse(older.id) == older
    assert older.partition_key == "p02"
    assert newer.row_key < older.row_key


@pytest.mark.parametrize("bad", ["", "x" * 25, "01" + "9" * 13 + "XYZ0000000", "../etc/passwd"])
def test_malformed_ids_do_not_parse(bad):
    assert JobKey.parse(bad) is None


def test_claim_needs_the_attempt_the_message_names():
    job = new_job()
    with pytest.raises(InvalidTransition, match="attempt 2"):
        job.claim(2, timedelta(seconds=30))
    claimed = running(job)
    assert claimed.status is Status.RUNNING and claimed.lease_until == NOW + timedelta(seconds=30)
    with pytest.raises(InvalidTransition, match="running, not queued"):
        claimed.claim(1, timedelta(seconds=30))


def test_failure_schedules_next_attempt_after_backoff():
    failed = running(new_job()).fail("boom", POLICY, now=NOW)
    assert (failed.status, failed.attempt) == (Status.QUEUED, 2)
    assert NOW + timedelta(seconds=1) <= failed.not_before <= NOW + timedelta(seconds=2)
    assert failed.errors[-1]["error"] == "boom" and failed.errors[-1]["attempt"] == 1


def test_failure_on_last_attempt_dead_letters_with_error_history():
    job = new_job(max_attempts=2)
    job = running(job).fail("first", POLICY, now=NOW)
    job = running(job).fail("second", POLICY, now=NOW)
    assert job.status is Status.DEAD_LETTERED
    assert [e["error"] for e in job.errors] == ["first", "second"]


def test_non_retryable_failure_dead_letters_at_once():
    job = running(new_job()).fail("bad input", POLICY, retryable=False, now=NOW)
    assert job.status is Status.DEAD_LETTERED and job.attempt == 1


def test_error_history_is_bounded_in_count_and_in_what_a_table_property_holds():
    job = new_job(max_attempts=100)
    for _ in range(MAX_ERRORS_KEPT + 5):
        job = running(job).fail("short", POLICY, now=NOW)
    assert len(job.errors) == MAX_ERRORS_KEPT
    for _ in range(MAX_ERRORS_KEPT + 5):
        job = running(job).fail("x" * 10_000, POLICY, now=NOW)
    assert len(job.errors[-1]["error"]) <= 2000
    assert property_chars(property_json(list(job.errors))) <= PROPERTY_CHARS  # 14 of 2,000 characters
    assert [e["attempt"] for e in job.errors] == list(range(job.attempt - len(job.errors), job.attempt))


@pytest.mark.parametrize("make", [new_job, lambda: running(new_job())])
def test_queued_or_running_job_can_be_cancelled(make):
    assert make().cancel(now=NOW).status is Status.CANCELLED


def test_terminal_states_are_written_once():
    done = running(new_job()).succeed({"ok": True}, now=NOW)
    for change in (
        lambda j: j.cancel(),
        lambda j: j.succeed(None),
        lambda j: j.fail("x", POLICY),
        lambda j: j.dead_letter("x"),
        lambda j: j.claim(1, timedelta(seconds=1)),
    ):
        with pytest.raises(InvalidTransition):
            change(done)


def test_redrive_is_a_new_attempt_with_more_to_spend():
    dead = running(new_job(max_attempts=1)).fail("boom", POLICY, now=NOW)
    again = dead.redrive(extra_attempts=2, now=NOW)
    assert (again.status, again.attempt, again.max_attempts) == (Status.QUEUED, 2, 3)
    with pytest.raises(InvalidTransition, match="only dead-lettered or cancelled"):
        new_job().redrive()


def test_a_job_cancelled_while_running_is_retried_only_once_its_attempt_cannot_still_run():
    """The running attempt learns of the cancel at its next renewal or checkpoint, and its lease
    says how long it may go on: a retry before then would run two attempts at once."""
    cancelled = running(new_job()).cancel(now=NOW + timedelta(seconds=5))
    assert cancelled.lease_until == NOW + timedelta(seconds=30)
    with pytest.raises(InvalidTransition, match="may go on until .* retry after that"):
        cancelled.redrive(now=NOW + timedelta(seconds=29))
    assert cancelled.redrive(now=NOW + timedelta(seconds=31)).status is Status.QUEUED
    assert new_job().cancel(now=NOW).redrive(now=NOW).status is Status.QUEUED  # never ran: at once


def test_a_job_cancelled_before_its_attempt_started_is_put_back_as_it_was():
    """Its attempt was not spent: a retry keeps the attempt, its attempts left and its start time
    (it once came back as 'attempt 2 of 2', due at once, for a delayed job submitted with 5)."""
    delayed = new_job(max_attempts=5, delay=timedelta(seconds=300)).cancel(now=NOW)
    back = delayed.redrive(now=NOW + timedelta(seconds=10))
    assert (back.status, back.attempt, back.max_attempts) == (Status.QUEUED, 1, 5)
    assert back.not_before == delayed.due_at == NOW + timedelta(seconds=300)  # still ahead: kept
    assert delayed.redrive(extra_attempts=8, now=NOW).max_attempts == 8  # extra attempts: at least that many
    late = delayed.redrive(now=NOW + timedelta(seconds=400))
    assert late.not_before == NOW + timedelta(seconds=400)  # its time passed while cancelled: at once
    retried = running(new_job(max_attempts=5)).fail("boom", POLICY, now=NOW).cancel(now=NOW)  # waiting for attempt 2
    again = retried.redrive(now=NOW)
    assert (again.attempt, again.max_attempts, again.not_before, len(again.errors)) == (2, 5, NOW, 1)


def test_backoff_doubles_with_jitter_and_is_capped():
    rand = random.Random(7)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (6, 60), (30, 60)]:
        delays = [POLICY.backoff(attempt, rand) for _ in range(200)]
        assert min(delays) >= ceiling / 2 and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not constant


def test_idempotency_token_is_stable_per_attempt():
    job = new_job()
    assert job.idempotency_token == f"{job.id}:1"
    assert running(job).fail("x", POLICY).idempotency_token == f"{job.id}:2"


def test_the_resource_names_the_jobs_trace_id_from_its_traceparent():
    from shared.job import Job

    traced = Job.new("echo", 1, 1, 0, trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    assert traced.to_resource()["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert Job.new("echo", 1, 1, 0).to_resource()["trace_id"] is None
