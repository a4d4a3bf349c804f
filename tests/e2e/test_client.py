"""The Python client (jobs_client) against the real local host and Azurite.

Retries are shown through a small real HTTP proxy on 127.0.0.1 in front of the host: it forwards
every request, except the ones a test tells it to answer otherwise (a 503 after the host already
stored the job, a dropped connection, a 207 for half a batch), and records what the client sent.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from jobs_client import (
    AsyncJobsClient,
    BadRequest,
    BatchIncomplete,
    Conflict,
    Fire,
    Job,
    JobError,
    JobHold,
    JobRequest,
    JobsClient,
    NotFound,
    Operation,
    Page,
    PreconditionFailed,
    Schedule,
    ServiceUnavailable,
    ServiceUnreachable,
    UnprocessableContent,
    WaitTimeout,
)

pytestmark = pytest.mark.e2e

UNKNOWN_ID = "0" * 25  # well-formed (shard, inverted due time, suffix), but no such job

POLL = 0.1  # seconds between looks while waiting, so the tests stay quick


@pytest.fixture
def client(host) -> Iterator[JobsClient]:
    with JobsClient(host.base) as c:
        yield c


def all_jobs(host) -> list[dict]:
    jobs, token = [], None
    while True:
        page = requests.get(host.url("/api/jobs"), params={"limit": 200, "continuation": token}, timeout=10).json()
        jobs += page["jobs"]
        token = page["continuation"]
        if not token:
            return jobs


# --- a proxy that can misbehave ------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


DROP = object()  # close the connection without answering
Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Proxy:
    """Forwards to `upstream`; a planned fault for (method, path) answers one request instead."""

    upstream: str
    seen: list[Seen] = field(default_factory=list)
    faults: dict[tuple[str, str], list[Callable[[Seen, Callable[[Seen], Reply]], Reply | object]]] = field(
        default_factory=dict
    )
    base: str = ""

    def plan(self, method: str, path: str, *steps: Callable[[Seen, Callable[[Seen], Reply]], Reply | object]) -> None:
        self.faults.setdefault((method, path), []).extend(steps)

    def forward(self, request: Seen) -> Reply:
        if not self.upstream:
            return 502, {}, b""
        r = requests.request(
            request.method,
            self.upstream + request.path,
            data=request.body or None,
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
            timeout=30,
        )
        headers = {k: v for k, v in r.headers.items() if k.lower() in ("content-type", "location", "retry-after")}
        headers.update({k: v for k, v in r.headers.items() if k.lower() == "idempotent-replayed"})
        return r.status_code, headers, r.content


def problem(status: int, code: str, retry_after: str | None = "0") -> Reply:
    body = json.dumps({"type": "about:blank", "title": "x", "status": status, "detail": "try later", "code": code})
    headers = {"Content-Type": "application/problem+json"}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return status, headers, body.encode()


@pytest.fixture
def proxy_for() -> Iterator[Callable[[str], Proxy]]:
    servers: list[ThreadingHTTPServer] = []

    def start(upstream: str) -> Proxy:
        proxy = Proxy(upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                proxy.seen.append(request)
                steps = proxy.faults.get((self.command, self.path.split("?")[0]))
                reply = steps.pop(0)(request, proxy.forward) if steps else proxy.forward(request)
                if reply is DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, body = reply
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = handle_one

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        proxy.base = f"http://127.0.0.1:{server.server_address[1]}"
        return proxy

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- jobs ----------------------------------------------------------------------------------


def test_submit_then_wait_per_retry_after_returns_the_succeeded_job_as_typed_values(client):
    submitted = client.submit("echo", {"hello": "world"})
    assert isinstance(submitted, Job) and submitted.status == "queued" and not submitted.finished
    job = client.wait(submitted.id, timeout=20)  # no poll_interval: it sleeps as Retry-After says
    assert (job.id, job.status, job.result, job.attempt, job.finished) == (
        submitted.id,
        "succeeded",
        {"hello": "world"},
        1,
        True,
    )
    assert isinstance(job.created_at, datetime) and job.created_at.tzinfo is not None
    assert job.finished_at is not None and job.finished_at >= job.created_at
    assert job.raw["id"] == job.id  # the resource as received, unknown fields included


def test_wait_returns_a_dead_lettered_job_with_its_errors_or_times_out_with_the_last_state(client):
    job = client.wait(client.submit("fail", max_attempts=1).id, timeout=20, poll_interval=POLL)
    assert (job.status, job.succeeded, job.attempt) == ("dead_lettered", False, 1)
    assert len(job.errors) == 1 and isinstance(job.errors[0], JobError) and job.errors[0].attempt == 1
    assert job.last_error == job.errors[0].error
    queued = client.submit("echo", 1, delay_seconds=60)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(queued.id, timeout=0.5, poll_interval=POLL)
    assert time.monotonic() - started < 5
    assert caught.value.last.id == queued.id and caught.value.last.status == "queued"
    assert isinstance(caught.value, TimeoutError)


def test_same_idempotency_key_returns_the_same_job_and_another_body_is_rejected(client, host):
    first = client.submit("echo", {"n": 1}, idempotency_key="order-42")
    again = client.submit("echo", {"n": 1}, idempotency_key="order-42")
    assert again.id == first.id
    with pytest.raises(UnprocessableContent) as caught:
        client.submit("echo", {"n": 2}, idempotency_key="order-42")
    assert (caught.value.status, caught.value.code) == (422, "idempotency_key_reused")
    assert len(all_jobs(host)) == 1


def test_error_answers_raise_typed_exceptions_carrying_status_code_and_problem(client, host):
    with pytest.raises(NotFound) as not_found:
        client.get(UNKNOWN_ID)
    err = not_found.value
    assert (err.status, err.code, err.problem["status"]) == (404, "job_not_found", 404) and "no job" in err.detail
    with pytest.raises(BadRequest) as unknown_type:
        client.submit("no-such-type")
    assert unknown_type.value.code == "unknown_job_type" and "echo" in unknown_type.value.problem["known_types"]
    with pytest.raises(BadRequest) as invalid_batch:  # one invalid item: nothing of the batch is stored
        client.submit_many([{"type": "echo"}, {"type": "echo", "max_attempts": 0}])
    assert invalid_batch.value.code == "invalid_batch" and invalid_batch.value.problem["errors"][0]["index"] == 1
    assert all_jobs(host) == [] and invalid_batch.value.stored == ()
    # A later chunk refused: the error names the jobs the earlier chunks stored, which stay.
    with pytest.raises(BadRequest) as later_chunk:
        client.submit_many([{"type": "echo", "delay_seconds": 60}] * 2 + [{"type": "nope"}], chunk_size=2)
    assert sorted(j.id for j in later_chunk.value.stored) == sorted(j["id"] for j in all_jobs(host))
    assert len(later_chunk.value.stored) == 2


def test_cancel_a_queued_job_then_cancel_again_raises_conflict_then_retry_redrives_it(client):
    job = client.submit("echo", 1, delay_seconds=2)
    assert client.cancel(job.id).status == "cancelled"
    with pytest.raises(Conflict) as caught:
        client.cancel(job.id)
    assert (caught.value.status, caught.value.code) == (409, "invalid_state")
    redriven = client.retry(job.id, extra_attempts=2)
    assert (redriven.status, redriven.attempt, redriven.due_at) == ("queued", 1, job.due_at)  # as it was
    assert client.wait(job.id, timeout=20, poll_interval=POLL).status == "succeeded"


def test_get_says_what_holds_a_queued_job_back_as_a_job_hold(client):
    client.pause("echo")
    try:
        job = client.submit("echo", 1)
        deadline = time.monotonic() + 15  # every instance reads the pause within 5 s
        while (got := client.get(job.id)).held_by is None:
            assert time.monotonic() < deadline, got
            time.sleep(0.3)
        assert got.held_by == JobHold("pause", None) and got.status == "queued"
    finally:
        client.resume("echo")
    assert client.wait(job.id, timeout=20, poll_interval=POLL).held_by is None


def test_list_follows_continuation_tokens_newest_first(client):
    ids = [client.submit("echo", i, delay_seconds=60).id for i in range(5)]
    listed = client.list(page_size=2)
    assert [j.id for j in listed] == list(reversed(ids))
    page = client.list_page(limit=2)
    assert isinstance(page, Page) and len(page.jobs) == 2 and page.continuation
    rest = client.list_page(limit=200, continuation=page.continuation)
    assert [j.id for j in page.jobs + rest.jobs] == list(reversed(ids)) and rest.continuation is None


def test_list_oldest_first_follows_continuation_tokens_sync_and_async(client, host):
    ids = [client.submit("echo", i, delay_seconds=60 + i).id for i in range(5)]
    assert [j.id for j in client.list(page_size=2, order="oldest")] == ids
    page = client.list_page(limit=3, order="oldest")
    assert [j.id for j in page.jobs] == ids[:3] and page.continuation

    async def listed() -> list[str]:
        async with AsyncJobsClient(host.base) as jobs:
            return [j.id async for j in jobs.list(page_size=2, order="oldest")]

    assert asyncio.run(listed()) == ids
    with pytest.raises(ValueError, match="order"):
        client.list_page(order="sideways")


def test_list_filters_by_status_and_type(client):
    queued = client.submit("echo", 1, delay_seconds=60)
    failed = client.wait(client.submit("fail", max_attempts=1).id, timeout=20, poll_interval=POLL)
    assert [j.id for j in client.list(status="dead_lettered")] == [failed.id]
    assert [j.id for j in client.list(type="echo")] == [queued.id]
    assert list(client.list(status="succeeded")) == []


def test_list_since_and_until_bound_the_due_time(client):
    now = client.submit("echo", 1, delay_seconds=3600).created_at
    assert now is not None
    soon = client.submit("echo", 2, delay_seconds=60)
    later = client.submit("echo", 3, delay_seconds=7200)
    middle = now + timedelta(minutes=90)
    assert [j.id for j in client.list(since=middle)] == [later.id]
    assert [j.id for j in client.list(until=now + timedelta(minutes=30))] == [soon.id]
    # strings pass through as RFC 3339; naive datetimes are taken as UTC
    naive = middle.astimezone(UTC).replace(tzinfo=None)
    assert [j.id for j in client.list(since=naive)] == [later.id]
    assert [j.id for j in client.list(since=middle.isoformat())] == [later.id]


def test_submit_many_batches_in_input_order_and_a_rerun_with_the_same_key_stores_nothing(client, host):
    requests_ = [{"type": "echo", "payload": i, "delay_seconds": 60} for i in range(6)] + [JobRequest("echo", 6)]
    progress: list[int] = []
    jobs = client.submit_many(requests_, chunk_size=3, on_progress=progress.append, idempotency_key="import-7")
    assert [j.payload for j in jobs] == list(range(7)) and progress == [3, 6, 7]
    assert len({j.id for j in jobs}) == 7 and jobs[-1].status == "queued"
    again = client.submit_many(requests_, chunk_size=3, idempotency_key="import-7")
    assert [j.id for j in again] == [j.id for j in jobs]
    assert len(all_jobs(host)) == 7


def test_health_answers_ok_at_the_url_given_with_or_without_api_or_from_JOBS_URL(host, monkeypatch):
    ok = {"status": "ok", "checks": {"table": "ok", "queue": "ok"}}
    with JobsClient(host.base) as c, JobsClient(host.base + "/api/") as with_api:
        assert c.health() == ok and with_api.health() == ok
    monkeypatch.setenv("JOBS_URL", host.base)
    with JobsClient() as from_env:
        assert from_env.url == host.base and from_env.health() == ok


# --- bulk operations ----------------------------------------------------------------------


def dead_lettered(client: JobsClient, n: int, job_type: str = "fail") -> list[Job]:
    jobs = [client.submit(job_type, max_attempts=1) for _ in range(n)]
    return [client.wait(j.id, timeout=20, poll_interval=POLL) for j in jobs]


def test_retry_matching_redrives_the_dead_lettered_jobs_of_a_type_and_reports_counts(client):
    doomed = dead_lettered(client, 3)
    assert {j.status for j in doomed} == {"dead_lettered"}
    other = client.wait(client.submit("echo", 1).id, timeout=20, poll_interval=POLL)
    op = client.retry_matching(status="dead_lettered", type="fail", extra_attempts=1)
    assert isinstance(op, Operation) and op.action == "retry"
    seen: list[Operation] = []
    done = client.wait_operation(op.id, timeout=30, on_progress=seen.append, poll_interval=POLL)
    assert (done.status, done.matched, done.applied, done.failed) == ("succeeded", 3, 3, 0)
    assert seen and seen[-1] == done and done.finished and done.finished_at is not None
    assert client.get_operation(op.id).status == "succeeded"
    assert all(client.get(j.id).attempt == 2 for j in doomed)
    assert client.get(other.id).attempt == 1


def test_cancel_matching_by_ids_or_by_filter_cancels_only_those_and_one_key_starts_one_operation(client):
    picked = [client.submit("echo", i, delay_seconds=60) for i in range(2)]
    spared = client.submit("fail", delay_seconds=60)
    op = client.cancel_matching(ids=[j.id for j in picked])
    assert op.action == "cancel" and op.ids_count == 2
    done = client.wait_operation(op.id, timeout=30, poll_interval=POLL)
    assert (done.status, done.applied) == ("succeeded", 2)
    assert [client.get(j.id).status for j in picked] == ["cancelled", "cancelled"]
    assert client.get(spared.id).status == "queued"
    first = client.cancel_matching(status="queued", type="fail", idempotency_key="cancel-fail-1")
    again = client.cancel_matching(status="queued", type="fail", idempotency_key="cancel-fail-1")
    assert again.id == first.id
    assert client.wait_operation(first.id, timeout=30, poll_interval=POLL).applied == 1
    assert client.get(spared.id).status == "cancelled"


def test_operation_ids_and_filters_are_checked_before_anything_is_sent(proxy_for):
    proxy = proxy_for("")
    with JobsClient(proxy.base) as c:
        with pytest.raises(ValueError):
            c.cancel_matching(ids=["x"], status="queued")
        with pytest.raises(TypeError):
            c.retry_matching(ids="0123")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            c.submit_many([{"type": "echo"}], chunk_size=101)
    assert proxy.seen == []


# --- retries, through the proxy --------------------------------------------------------------


def test_each_submit_gets_a_fresh_key_that_a_retry_after_503_sends_again_so_one_job_is_made(host, proxy_for):
    proxy = proxy_for(host.base)

    def stored_then_503(request, forward):
        forward(request)  # the job is stored; the answer is lost, a 503 comes back instead
        return problem(503, "storage_unavailable")

    proxy.plan("POST", "/api/jobs", stored_then_503)
    with JobsClient(proxy.base) as c:
        job = c.submit("echo", {"once": True})
        other = c.submit("echo", {"once": True})
    keys = [s.headers["Idempotency-Key"] for s in proxy.seen if s.path == "/api/jobs"]
    assert len(keys) == 3 and keys[0] == keys[1] != keys[2]
    assert all(uuid.UUID(k).version == 4 for k in keys)
    assert {j["id"] for j in all_jobs(host)} == {job.id, other.id}


def test_submit_retried_after_a_dropped_connection_makes_one_job(host, proxy_for):
    proxy = proxy_for(host.base)

    def stored_then_drop(request, forward):
        forward(request)
        return DROP

    proxy.plan("POST", "/api/jobs", stored_then_drop)
    with JobsClient(proxy.base) as c:
        job = c.submit("echo", 1, idempotency_key="mine")
    assert [s.headers["Idempotency-Key"] for s in proxy.seen] == ["mine", "mine"]
    assert [j["id"] for j in all_jobs(host)] == [job.id]


def test_429_and_503_are_retried_after_retry_after_or_a_backoff_and_then_answered(proxy_for):
    proxy = proxy_for("")
    page = 200, {"Content-Type": "application/json"}, b'{"jobs": [], "continuation": null}'
    proxy.plan(
        "GET",
        "/api/jobs",
        lambda r, f: problem(429, "throttled", "1"),
        lambda r, f: problem(503, "storage_unavailable", None),
        lambda r, f: page,
    )
    started = time.monotonic()
    with JobsClient(proxy.base) as c:
        assert list(c.list()) == []
    assert len(proxy.seen) == 3 and time.monotonic() - started >= 1.0


def test_503_that_persists_raises_service_unavailable_after_the_retries(proxy_for):
    proxy = proxy_for("")
    proxy.plan("GET", "/api/jobs/1", *[lambda r, f: problem(503, "storage_unavailable")] * 10)
    with JobsClient(proxy.base, retries=3) as c, pytest.raises(ServiceUnavailable) as caught:
        c.get("1")
    assert caught.value.code == "storage_unavailable" and len(proxy.seen) == 4


def test_connection_refused_is_retried_with_backoff_then_raises_service_unreachable(caplog):
    started = time.monotonic()
    base = f"http://127.0.0.1:{closed_port()}"
    caplog.set_level(logging.INFO, logger="jobs_client")
    with JobsClient(base, retries=2) as c, pytest.raises(ServiceUnreachable) as caught:
        c.get("1")
    assert time.monotonic() - started >= 0.25 + 0.5  # two backoffs: at least half of 0.5 s, then of 1 s
    assert str(caught.value).startswith(f"GET {base}/api/jobs/1: ConnectError")  # names where it looked
    said = [r.getMessage() for r in caplog.records if r.name == "jobs_client"]
    assert [m.rsplit("(", 1)[1] for m in said] == ["retry 1 of 2)", "retry 2 of 2)"]  # each resend is logged


def test_cancel_is_not_resent_once_it_may_have_reached_the_service(host, proxy_for):
    proxy = proxy_for(host.base)
    job_id = host.submit({"type": "echo", "payload": 1, "delay_seconds": 60}).json()["id"]
    proxy.plan("POST", f"/api/jobs/{job_id}/cancel", lambda r, forward: (forward(r), DROP)[1])
    with JobsClient(proxy.base) as c, pytest.raises(ServiceUnreachable):
        c.cancel(job_id)  # resending would answer 409: the first one cancelled it
    assert len(proxy.seen) == 1
    assert requests.get(host.url(f"/api/jobs/{job_id}"), timeout=5).json()["status"] == "cancelled"


def test_batch_answered_207_resubmits_only_the_failed_jobs_under_a_derived_key(host, proxy_for):
    proxy = proxy_for(host.base)

    def half_stored(request, forward):
        """Storage failed between two groups: the first two jobs are stored, the rest are not."""
        body = request.json()
        status, _, stored = forward(
            Seen(request.method, request.path, request.headers, json.dumps({"jobs": body["jobs"][:2]}).encode())
        )
        assert status == 202
        results = [{"index": i, "status": 202, "job": j} for i, j in enumerate(json.loads(stored)["jobs"])]
        results += [{"index": i, "status": 503, "detail": "not submitted"} for i in range(2, len(body["jobs"]))]
        return 207, {"Content-Type": "application/json"}, json.dumps({"results": results}).encode()

    proxy.plan("POST", "/api/jobs/batch", half_stored)
    with JobsClient(proxy.base) as c:
        jobs = c.submit_many([{"type": "echo", "payload": i} for i in range(5)], idempotency_key="batch-7")
    assert [j.payload for j in jobs] == [0, 1, 2, 3, 4]
    sent = [s for s in proxy.seen if s.path == "/api/jobs/batch"]
    assert [len(s.json()["jobs"]) for s in sent] == [5, 3]
    assert [p["payload"] for p in sent[1].json()["jobs"]] == [2, 3, 4]
    first_key, second_key = (s.headers["Idempotency-Key"] for s in sent)
    assert second_key == f"{first_key}:retry1"
    assert sorted(j["payload"] for j in all_jobs(host)) == [0, 1, 2, 3, 4]


def test_batch_that_keeps_failing_raises_batch_incomplete_with_what_was_stored(proxy_for):
    proxy = proxy_for("")

    def never(request, forward):
        n = len(request.json()["jobs"])
        results = [{"index": i, "status": 503, "detail": "not submitted"} for i in range(n)]
        return 207, {"Content-Type": "application/json"}, json.dumps({"results": results}).encode()

    proxy.plan("POST", "/api/jobs/batch", *[never] * 5)
    with JobsClient(proxy.base, retries=1) as c, pytest.raises(BatchIncomplete) as caught:
        c.submit_many([{"type": "echo"}] * 3)
    assert caught.value.jobs == [None, None, None] and sorted(caught.value.failures) == [0, 1, 2]
    assert len(proxy.seen) == 2


def test_function_key_is_sent_as_x_functions_key(proxy_for, monkeypatch):
    proxy = proxy_for("")
    healthy = 200, {"Content-Type": "application/json"}, b'{"status": "ok", "checks": {}}'
    proxy.plan("GET", "/api/health", lambda r, f: healthy, lambda r, f: healthy)
    with JobsClient(proxy.base, key="secret-1") as c:
        c.health()
    monkeypatch.setenv("JOBS_KEY", "secret-2")
    with JobsClient(proxy.base) as c:
        c.health()
    assert [s.headers.get("x-functions-key") for s in proxy.seen] == ["secret-1", "secret-2"]


# --- the async client ---------------------------------------------------------------------


def test_async_client_has_the_same_methods_as_the_sync_client():
    def public(cls):
        return {n for n, _ in inspect.getmembers(cls, callable) if not n.startswith("_")}

    assert public(AsyncJobsClient) == public(JobsClient)
    for name in public(JobsClient):
        sync_params = list(inspect.signature(getattr(JobsClient, name)).parameters)
        assert list(inspect.signature(getattr(AsyncJobsClient, name)).parameters) == sync_params, name


def test_async_client_submits_waits_lists_and_raises_like_the_sync_one(host, proxy_for):
    proxy = proxy_for(host.base)
    proxy.plan("POST", "/api/jobs", lambda r, f: (f(r), problem(503, "storage_unavailable"))[1])

    async def scenario():
        async with AsyncJobsClient(proxy.base) as c:
            job = await c.submit("echo", {"a": 1})
            done = await c.wait(job.id, timeout=20, poll_interval=POLL)
            many = await c.submit_many([{"type": "echo", "payload": i, "delay_seconds": 60} for i in range(3)])
            listed = [j.id async for j in c.list(page_size=1)]
            with pytest.raises(NotFound):
                await c.get(UNKNOWN_ID)
            with pytest.raises(Conflict):
                await c.retry(job.id)
            return job, done, many, listed, await c.health()

    job, done, many, listed, health = asyncio.run(scenario())
    assert (done.status, done.result) == ("succeeded", {"a": 1})
    assert set(listed[:3]) == {j.id for j in many} and listed[3:] == [job.id]  # newest (by due time) first
    assert health["status"] == "ok"
    keys = [s.headers["Idempotency-Key"] for s in proxy.seen if s.path == "/api/jobs"]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert len(all_jobs(host)) == 4


def test_submit_with_run_at_and_priority_sends_both_and_a_high_job_runs(client):
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    job = client.submit("echo", 1, run_at=later, priority="low")
    assert (job.priority, job.due_at) == ("low", later)
    urgent = client.submit("echo", "now", priority="high")
    assert client.wait(urgent.id, timeout=20, poll_interval=POLL).result == "now"  # the host drains the high queue
    with pytest.raises(BadRequest) as caught:
        client.submit("echo", run_at=later, delay_seconds=5)
    assert caught.value.code == "invalid_field"


def test_types_pause_resume_and_limits_round_trip_through_the_api(client):
    names = {t.type for t in client.types().types}
    assert {"echo", "sleep", "fail"} <= names
    paused = client.pause("echo")
    assert (paused.paused, paused.paused_by) == (True, ("type",))
    resumed = client.resume("echo")
    assert (resumed.paused, resumed.paused_by, resumed.released) == (False, (), 0)
    limited = client.set_limits("sleep", max_concurrency=3, rate_limit="20/30s")
    assert (limited.max_concurrency, str(limited.rate_limit), limited.running, limited.waiting) == (3, "20/30s", 0, 0)
    assert limited.woken == 0  # nobody waited
    cleared = client.set_limits("sleep", max_concurrency=None, rate_limit=None)
    assert (cleared.max_concurrency, cleared.rate_limit, cleared.running, cleared.waiting) == (None, None, None, None)
    everything = client.pause()
    assert everything.paused_all and all(t.paused_by == ("all",) for t in everything.types)
    assert not client.resume().paused_all
    with pytest.raises(NotFound) as caught:
        client.get_type("nope")
    assert caught.value.code == "type_not_found"
    with pytest.raises(ValueError):
        client.set_limits("sleep", rate_limit="lots")


# --- schedules -----------------------------------------------------------------------------------


def test_schedules_round_trip_as_typed_values_and_a_retried_create_makes_one(client, host, proxy_for):
    s = client.create_schedule("echo", "30 2 * * *", {"a": 1}, time_zone="Europe/Berlin", overlap="skip",
                               catch_up="skip", name="nightly", max_attempts=2)  # fmt: skip
    assert isinstance(s, Schedule)
    assert (s.cron, s.time_zone, s.overlap, s.catch_up, s.name, s.paused) == (
        "30 2 * * *", "Europe/Berlin", "skip", "skip", "nightly", False)  # fmt: skip
    assert (s.job.type, s.job.payload, s.job.max_attempts, s.job.priority) == ("echo", {"a": 1}, 2, None)
    assert len(s.next_fires) == 5 and s.next_fires[0].at == s.next_fire_at
    assert all(f.local.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for f in s.next_fires)
    assert all(f.local == f.at for f in s.next_fires)  # the same moments, told in two ways
    assert s.recent_fires == ()  # it has not fired; once it has, each fire names its job:
    fired = Schedule.from_dict({**s.raw, "recent_fires": [{"at": "2026-11-25T01:30:00.000Z", "job_id": "j1"}]})
    assert fired.recent_fires == (Fire(datetime(2026, 11, 25, 1, 30, tzinfo=UTC), "j1"),)
    assert client.get_schedule(s.id).raw == s.raw
    assert [x.id for x in client.list_schedules(page_size=1)] == [s.id]
    paused = client.pause_schedule(s.id)
    assert (paused.paused, paused.next_fire_at, paused.next_fires) == (True, None, ())
    resumed = client.resume_schedule(s.id)
    assert resumed.paused is False and resumed.next_fire_at is not None
    changed = client.update_schedule(s.id, cron="0 3 * * *", priority="high", name=None)
    assert (changed.cron, changed.job.priority, changed.name, changed.job.payload) == ("0 3 * * *", "high", None,
                                                                                      {"a": 1})  # fmt: skip
    # Revisions: each change moves it on; a change based on an older one is refused, not applied.
    assert (s.revision, paused.revision, resumed.revision, changed.revision) == (1, 2, 3, 4)
    renamed = client.update_schedule(s.id, name="mine", if_revision=changed.revision)
    assert (renamed.name, renamed.revision) == ("mine", 5)
    with pytest.raises(PreconditionFailed) as caught:
        client.update_schedule(s.id, name="theirs", if_revision=changed.revision)
    assert (caught.value.status, caught.value.code, caught.value.problem["revision"]) == (412, "revision_mismatch", 5)
    with pytest.raises(PreconditionFailed):
        client.delete_schedule(s.id, if_revision=4)
    with pytest.raises(ValueError):
        client.update_schedule(s.id, name="x", if_revision=0)
    assert client.get_schedule(s.id).name == "mine"
    client.delete_schedule(s.id, if_revision=5)
    with pytest.raises(NotFound) as caught:
        client.get_schedule(s.id)
    assert caught.value.code == "schedule_not_found"
    with pytest.raises(NotFound):
        client.delete_schedule(s.id)
    with pytest.raises(BadRequest) as caught:
        client.create_schedule("echo", "every day")
    assert caught.value.code == "invalid_cron"
    with pytest.raises(UnprocessableContent) as caught:
        client.create_schedule("echo", "0 0 31 2 *")
    assert caught.value.code == "unsatisfiable_cron"
    # A create answered 503 after the host stored it is sent again with the same key: one schedule.
    proxy = proxy_for(host.base)

    def stored_then_503(request, forward):
        forward(request)
        return problem(503, "storage_unavailable")

    proxy.plan("POST", "/api/schedules", stored_then_503)
    with JobsClient(proxy.base) as through:
        made = through.create_schedule("echo", "0 9 * * *")
    keys = [x.headers["Idempotency-Key"] for x in proxy.seen if x.path == "/api/schedules"]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert [x.id for x in client.list_schedules()] == [made.id]


def test_async_client_manages_schedules_like_the_sync_one(host):
    async def scenario():
        async with AsyncJobsClient(host.base) as jobs:
            s = await jobs.create_schedule("echo", "*/10 * * * *", paused=True)
            listed = [x.id async for x in jobs.list_schedules()]
            resumed = await jobs.resume_schedule(s.id)
            await jobs.delete_schedule(s.id)
            return s, listed, resumed

    s, listed, resumed = asyncio.run(scenario())
    assert s.paused and listed == [s.id] and not resumed.paused and len(resumed.next_fires) == 5
