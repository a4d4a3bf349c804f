"""The schedules' HTTP contract through shared.api on a real Azurite: statuses, Location,
problems with their codes, and nothing written on bad input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from shared import api
from shared.api import ApiRequest
from shared.schedules import routes
from shared.schedules.store import DEFINITION, PARTITION
from tests.integration.conftest import call_api

BODY = {"cron": "30 2 * * *", "time_zone": "Europe/Berlin", "job": {"type": "echo", "payload": {"a": 1}}}


@pytest.fixture
def call(services):
    def call(route, body=None, raw: bytes | None = None, id=None, query=None, headers=None, method="POST"):
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = {"content-type": "application/json", **(headers or {})}
        request = ApiRequest(method, {"id": id} if id else {}, query or {}, hdrs, data)
        return call_api(services, route, request)

    return call


def stored(services):
    return list(services.storage.table.query_entities(f"PartitionKey eq '{PARTITION}'"))


def test_create_answers_201_with_location_and_the_schedule(call):
    r = call(routes.create_schedule, BODY)
    assert r.status == 201
    s = r.body
    assert r.headers["Location"] == f"/api/schedules/{s['id']}"
    assert {k: s[k] for k in ("cron", "time_zone", "overlap", "catch_up", "paused", "fired", "skipped")} == {
        "cron": "30 2 * * *", "time_zone": "Europe/Berlin", "overlap": "allow", "catch_up": "once",
        "paused": False, "fired": 0, "skipped": 0,
    }  # fmt: skip
    assert s["job"] == {"type": "echo", "payload": {"a": 1}, "max_attempts": None, "priority": None}
    assert (s["name"], s["last_fire"], s["last_skip"]) == (None, None, None)
    assert len(s["next_fires"]) == 5 and s["next_fires"][0]["at"] == s["next_fire_at"]
    for fire in s["next_fires"]:  # 02:30 in Berlin, given in UTC and in local time
        assert fire["local"][11:19] in ("02:30:00", "03:00:00") and fire["at"].endswith("Z")


def test_get_list_patch_and_delete(call):
    created = call(routes.create_schedule, {**BODY, "name": "nightly"}).body
    sid = created["id"]
    got = call(routes.get_schedule, id=sid, method="GET")
    assert (got.status, got.body["id"], got.body["name"]) == (200, sid, "nightly")
    listed = call(routes.list_schedules, method="GET")
    assert listed.status == 200 and [s["id"] for s in listed.body["schedules"]] == [sid]
    assert listed.body["continuation"] is None
    paused = call(routes.update_schedule, {"paused": True}, id=sid, method="PATCH")
    assert paused.status == 200 and paused.body["paused"] is True
    assert (paused.body["next_fire_at"], paused.body["next_fires"]) == (None, [])
    resumed = call(routes.update_schedule, {"paused": False, "job": {"priority": "high"}}, id=sid, method="PATCH")
    assert resumed.body["paused"] is False and len(resumed.body["next_fires"]) == 5
    assert resumed.body["job"] == {"type": "echo", "payload": {"a": 1}, "max_attempts": None, "priority": "high"}
    renamed = call(routes.update_schedule, {"name": None, "job": {"priority": None}}, id=sid, method="PATCH")
    assert (renamed.body["name"], renamed.body["job"]["priority"]) == (None, None)
    gone = call(routes.delete_schedule, id=sid, method="DELETE")
    assert (gone.status, gone.body) == (204, None)
    for route, method in ((routes.get_schedule, "GET"), (routes.delete_schedule, "DELETE")):
        r = call(route, id=sid, method=method)
        assert (r.status, r.content_type, r.body["code"]) == (404, api.PROBLEM_JSON, "schedule_not_found")
    r = call(routes.update_schedule, {"paused": True}, id=sid, method="PATCH")
    assert (r.status, r.body["code"]) == (404, "schedule_not_found")


def test_if_match_changes_a_schedule_only_at_the_revision_read_and_fires_are_not_changes(call, services):
    created = call(routes.create_schedule, {**BODY, "cron": "* * * * *"})
    sid = created.body["id"]
    assert (created.body["revision"], created.headers["ETag"]) == (1, '"1"')
    fire = datetime.fromisoformat(created.body["next_fire_at"])
    assert services.schedules.fire_due(now=fire + timedelta(seconds=1)) == {"schedules_fired": 1}
    got = call(routes.get_schedule, id=sid, method="GET")
    assert (got.body["fired"], got.body["revision"], got.headers["ETag"]) == (1, 1, '"1"')  # a fire is no change

    renamed = call(routes.update_schedule, {"name": "mine"}, id=sid, method="PATCH", headers={"if-match": '"1"'})
    assert (renamed.status, renamed.body["revision"], renamed.headers["ETag"]) == (200, 2, '"2"')
    # A second editor still holding revision 1 is refused, told the revision now, and changes nothing.
    late = call(routes.update_schedule, {"name": "theirs"}, id=sid, method="PATCH", headers={"if-match": '"1"'})
    assert (late.status, late.body["code"], late.body["revision"], late.headers["ETag"]) == (
        412, "revision_mismatch", 2, '"2"')  # fmt: skip
    assert call(routes.get_schedule, id=sid, method="GET").body["name"] == "mine"
    # A list or `*` match as HTTP says; a weak tag never does (If-Match compares strongly, RFC 9110
    # 13.1.1), nor a header naming none of ours.
    tried = (('W/"2"', 412), ('W/"2", "7", "2"', 200), ('"7", "3"', 200), ("*", 200), ('"99"', 412), ('"1"', 412))
    for n, (header, status) in enumerate(tried):
        r = call(routes.update_schedule, {"name": f"n{n}"}, id=sid, method="PATCH", headers={"if-match": header})
        assert r.status == status, (header, r.body)
    assert call(routes.get_schedule, id=sid, method="GET").body["revision"] == 5
    too_long = call(routes.update_schedule, {"paused": False}, id=sid, method="PATCH", headers={"if-match": "x" * 1001})
    assert (too_long.status, too_long.body["code"]) == (400, "invalid_if_match")
    # Not a list of entity tags: it names no revision, and the 412 says which one it is at without
    # claiming a change.
    for header in ("garbage", "5", '"', "W/5"):
        r = call(routes.update_schedule, {"paused": False}, id=sid, method="PATCH", headers={"if-match": header})
        assert (r.status, r.body["code"], r.body["revision"]) == (412, "revision_mismatch", 5), header
        assert "changed" not in r.body["detail"] and "does not name" in r.body["detail"]
    refused = call(routes.delete_schedule, id=sid, method="DELETE", headers={"if-match": '"4"'})
    assert (refused.status, refused.body["code"]) == (412, "revision_mismatch")
    assert call(routes.delete_schedule, id=sid, method="DELETE", headers={"if-match": '"5"'}).status == 204


def test_a_schedule_stored_with_a_step_now_refused_still_reads_changes_and_fires(call, services):
    """Steps wider than their field were taken before (`*/90` in seconds matches only second 0): a
    schedule that holds one keeps working as it did, and only a new cron must be in the grammar."""
    sid = call(routes.create_schedule, {**BODY, "cron": "0 * * * * *", "time_zone": "UTC"}).body["id"]
    row = {"PartitionKey": PARTITION, "RowKey": DEFINITION + sid, "cron": "*/90 * * * * *"}
    services.storage.table.update_entity(row)
    got = call(routes.get_schedule, id=sid, method="GET")
    assert (got.status, got.body["cron"]) == (200, "*/90 * * * * *"), got.body
    assert [s["id"] for s in call(routes.list_schedules, method="GET").body["schedules"]] == [sid]
    renamed = call(routes.update_schedule, {"name": "legacy"}, id=sid, method="PATCH")
    assert (renamed.status, renamed.body["cron"]) == (200, "*/90 * * * * *"), renamed.body
    fire = datetime.fromisoformat(renamed.body["next_fire_at"])
    assert fire.second == 0
    assert services.schedules.fire_due(now=fire + timedelta(seconds=1)) == {"schedules_fired": 1}
    refused = call(routes.update_schedule, {"cron": "*/90 * * * * *"}, id=sid, method="PATCH")
    assert (refused.status, refused.body["code"]) == (400, "invalid_cron")


def test_a_patch_that_changes_nothing_keeps_the_revision_and_writes_nothing(call, services):
    """Else a no-op (a resume of an active schedule, a form saved unchanged) would make every other
    writer's If-Match fail for nothing."""
    body = {**BODY, "name": "nightly", "job": {**BODY["job"], "priority": "high"}}
    created = call(routes.create_schedule, body).body
    sid = created["id"]
    counter = services.storage.counter
    same = ({}, {"paused": False}, {"name": "nightly"}, {"cron": BODY["cron"], "time_zone": BODY["time_zone"]},
            {"job": {"payload": {"a": 1}, "priority": "high", "max_attempts": None}}, {"overlap": "allow"})  # fmt: skip
    for patch in same:
        counter.reset()
        r = call(routes.update_schedule, patch, id=sid, method="PATCH", headers={"if-match": '"1"'})
        assert (r.status, r.body, r.headers["ETag"]) == (200, created, '"1"'), patch
        assert dict(counter.snapshot()) == {("table", "GET"): 1}, patch  # one read; no write
    paused = call(routes.update_schedule, {"paused": True}, id=sid, method="PATCH").body
    again = call(routes.update_schedule, {"paused": True}, id=sid, method="PATCH").body
    assert (paused["revision"], again["revision"], again["updated_at"]) == (2, 2, paused["updated_at"])
    assert call(routes.update_schedule, {"name": "other"}, id=sid, method="PATCH").body["revision"] == 3
    counter.reset()
    renamed = call(routes.update_schedule, {"name": "x"}, id=sid, method="PATCH", headers={"if-match": '"3"'})
    assert renamed.status == 200
    assert dict(counter.snapshot()) == {("table", "GET"): 1, ("table", "PUT"): 1}  # a change: read once, write once


def test_listing_pages_by_continuation(call):
    ids = [call(routes.create_schedule, BODY).body["id"] for _ in range(5)]
    seen, token = [], None
    while True:
        page = call(
            routes.list_schedules, method="GET", query={"limit": "2", **({"continuation": token} if token else {})}
        )
        assert page.status == 200 and len(page.body["schedules"]) <= 2
        seen += [s["id"] for s in page.body["schedules"]]
        token = page.body["continuation"]
        if token is None:
            break
    assert seen == sorted(ids)  # oldest first
    for query, code in (({"continuation": "bogus"}, "invalid_continuation"), ({"limit": "0"}, "invalid_parameter"),
                        ({"status": "x"}, "unknown_parameter")):  # fmt: skip
        r = call(routes.list_schedules, method="GET", query=query)
        assert (r.status, r.body["code"]) == (400, code), query


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"cron": "* * * *"}, 400, "invalid_cron"),
        ({"cron": "*/0 * * * *"}, 400, "invalid_cron"),
        ({"cron": "@daily"}, 400, "invalid_cron"),
        ({"cron": "0 0 30 2 *"}, 422, "unsatisfiable_cron"),
        ({"cron": "5-2 * * * *"}, 422, "unsatisfiable_cron"),
        ({"time_zone": "Europe/Atlantis"}, 400, "unknown_time_zone"),
        ({"time_zone": "europe/berlin"}, 400, "unknown_time_zone"),
        ({"job": {"type": "nope"}}, 400, "unknown_job_type"),
        ({"job": {}}, 400, "invalid_field"),
        ({"job": {"type": "echo", "max_attempts": 0}}, 400, "invalid_field"),
        ({"job": {"type": "echo", "max_attempts": "3"}}, 400, "invalid_field"),
        ({"job": {"type": "echo", "priority": "urgent"}}, 400, "invalid_field"),
        ({"job": {"type": "echo", "payload": "x" * 40_000}}, 413, "payload_too_large"),
        ({"overlap": "sometimes"}, 400, "invalid_field"),
        ({"catch_up": "all"}, 400, "invalid_field"),
        ({"paused": "yes"}, 400, "invalid_field"),
        ({"name": None}, 400, "invalid_field"),
        ({"name": ""}, 400, "invalid_field"),
        ({"colour": "red"}, 400, "unknown_field"),
        ({"job": {"type": "echo", "delay_seconds": 5}}, 400, "unknown_field"),
        ({"cron": None}, 400, "invalid_field"),
    ],
)
def test_bad_schedules_are_refused_with_a_problem_and_nothing_is_written(call, services, change, status, code):
    r = call(routes.create_schedule, {**BODY, **change})
    assert (r.status, r.content_type, r.body["code"]) == (status, api.PROBLEM_JSON, code), r.body
    if code == "unknown_field":  # at any depth, named with its path
        assert r.body["fields"] == [{"colour": "colour", "job": "job.delay_seconds"}[next(iter(change))]]
    assert stored(services) == []


def test_problems_say_what_is_wrong(call):
    zone = call(routes.create_schedule, {**BODY, "time_zone": "europe/berlin"}).body
    assert zone["detail"] == "`time_zone`: unknown time zone 'europe/berlin'; did you mean Europe/Berlin?"
    # The cron problems name the field at fault, as invalid_field's do, and say what is wrong in it.
    cron = call(routes.create_schedule, {**BODY, "cron": "0 25 * * *"}).body
    said = "`cron`: not a cron expression: its hour field `25` is not valid: it takes `*`, 0-23, ranges `a-b`, "
    assert (cron["code"], cron["detail"]) == ("invalid_cron", said + "steps `*/n` (n from 1 to 23) and lists `a,b`")
    never = call(routes.create_schedule, {**BODY, "cron": "0 0 30 2 *"}).body
    assert (never["code"], never["detail"].startswith("`cron`: no time matches")) == ("unsatisfiable_cron", True)
    job_type = call(routes.create_schedule, {**BODY, "job": {"type": "nope"}}).body
    assert "echo" in job_type["known_types"]
    missing = call(routes.create_schedule, {"job": {"type": "echo"}}).body
    assert (missing["code"], "`cron`" in missing["detail"]) == ("invalid_field", True)
    for raw, code in ((b"{", "malformed_json"), (b"", "invalid_body"), (b"[1]", "invalid_body")):
        assert call(routes.create_schedule, raw=raw).body["code"] == code


def test_bad_patches_are_refused_and_change_nothing(call, services):
    sid = call(routes.create_schedule, BODY).body["id"]
    before = stored(services)
    for patch, code in (({"cron": "61 * * * *"}, "invalid_cron"), ({"time_zone": "Nowhere"}, "unknown_time_zone"),
                        ({"job": {"type": "nope"}}, "unknown_job_type"), ({"paused": None}, "invalid_field"),
                        ({"job": {"type": None}}, "invalid_field"), ({"id": "x"}, "unknown_field")):  # fmt: skip
        r = call(routes.update_schedule, patch, id=sid, method="PATCH")
        assert (r.status, r.body["code"]) == (400, code), patch
    assert stored(services) == before


def test_a_payloads_size_is_its_json_in_utf8_bytes_as_sent_and_it_is_stored_as_given(call, services):
    """`é` is 2 bytes, not the 6 of its `\\u00e9` escape: 12,000 of them (24,002 bytes) fit the limit of
    30,000, 15,000 (30,002) do not."""
    payload = {"text": "é" * 12_000, "astral": "😀", "lone": "\ud800"}
    created = call(routes.create_schedule, {**BODY, "job": {"type": "echo", "payload": payload}})
    assert created.status == 201, created.body
    assert call(routes.get_schedule, id=created.body["id"], method="GET").body["job"]["payload"] == payload
    too_large = call(routes.create_schedule, {**BODY, "job": {"type": "echo", "payload": "é" * 15_000}}).body
    assert (too_large["code"], too_large["detail"]) == (
        "payload_too_large", "a schedule's payload is 30002 bytes of JSON (UTF-8); the limit is 30000")  # fmt: skip
    patched = call(routes.update_schedule, {"job": {"payload": "é" * 14_999}}, id=created.body["id"], method="PATCH")
    assert patched.status == 200 and patched.body["job"]["payload"] == "é" * 14_999


def test_an_idempotency_key_returns_the_same_schedule(call, services):
    first = call(routes.create_schedule, BODY, headers={"idempotency-key": "nightly-1"})
    again = call(routes.create_schedule, BODY, headers={"idempotency-key": "nightly-1"})
    assert (again.status, again.body["id"], again.headers.get("Idempotent-Replayed")) == (201, first.body["id"], "true")
    assert "Idempotent-Replayed" not in first.headers
    other = call(routes.create_schedule, {**BODY, "cron": "0 3 * * *"}, headers={"idempotency-key": "nightly-1"})
    assert (other.status, other.body["code"]) == (422, "idempotency_key_reused")
    assert len([e for e in stored(services) if e["RowKey"].startswith("d.")]) == 1


def test_paths_of_schedules_answer_405_for_other_methods(call, services):
    request = ApiRequest("PUT", {"path": "schedules/0123456789abcdef0123"}, {}, {}, b"")
    r = call_api(services, api.fallback, request)
    assert (r.status, r.headers["Allow"]) == (405, "DELETE, GET, PATCH")


def test_what_the_dashboards_schedule_views_cost_per_refresh(call, services):
    """The Schedules view asks for a page of 200 (one query, whatever the partition holds); a
    schedule's page reads it (one point read)."""
    ids = [call(routes.create_schedule, {**BODY, "name": f"s{n}"}).body["id"] for n in range(3)]
    counter = services.storage.counter
    counter.reset()
    listed = call(routes.list_schedules, query={"limit": "200"}, method="GET")
    assert [s["id"] for s in listed.body["schedules"]] == ids
    assert dict(counter.snapshot()) == {("table", "GET"): 1}
    counter.reset()
    assert call(routes.get_schedule, id=ids[1], method="GET").status == 200
    assert dict(counter.snapshot()) == {("table", "GET"): 1}
