"""When a request with a used Idempotency-Key counts as the same request (shared/idempotency.py)."""

import hashlib
import json

import pytest

from shared.idempotency import IdempotencyMismatch, RequestHash


def recorded_for(body):
    return {"request_hash": RequestHash.of(body).value}


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ({"type": "echo", "delay_seconds": 30}, {"delay_seconds": 30.0, "type": "echo"}),
        ({"type": "echo"}, {"type": "echo", "payload": None, "priority": None, "max_attempts": None}),
        ({"jobs": [{"type": "echo", "max_attempts": 3}]}, {"jobs": [{"type": "echo", "max_attempts": 3.0}]}),
        (
            {"cron": "* * * * *", "job": {"type": "echo"}},
            {"cron": "* * * * *", "job": {"type": "echo", "payload": None}},
        ),
    ],
)
def test_the_same_request_spelled_otherwise_matches(first, again):
    RequestHash.of(again).check(recorded_for(first))


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ({"type": "echo", "payload": {"n": 30}}, {"type": "echo", "payload": {"n": 30.0}}),  # the handler sees 30.0
        ({"type": "echo", "payload": {}}, {"type": "echo", "payload": {"a": None}}),
        ({"type": "echo", "payload": 1}, {"type": "echo", "payload": 2}),
        ({"type": "echo", "delay_seconds": 30}, {"type": "echo", "delay_seconds": 30.5}),
        ({"jobs": [{"type": "echo"}]}, {"jobs": [{"type": "echo"}, {"type": "echo"}]}),
    ],
)
def test_a_different_request_does_not_match(first, again):
    with pytest.raises(IdempotencyMismatch, match="used with a different request"):
        RequestHash.of(again).check(recorded_for(first))


def test_a_key_recorded_before_the_rule_still_matches_the_same_json():
    """Keys stored by the previous version hold the hash of the JSON exactly as sent."""
    body = {"type": "echo", "delay_seconds": 30.0, "payload": None}
    old = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:40]
    RequestHash.of(body).check({"request_hash": old})
    with pytest.raises(IdempotencyMismatch):
        RequestHash.of({"type": "echo", "delay_seconds": 31}).check({"request_hash": old})


def test_a_request_to_another_action_does_not_match_though_its_body_does():
    recorded = {"request_hash": RequestHash.of({"filter": {}}, "retry").value}
    RequestHash.of({"filter": {}}, "retry").check(recorded)
    with pytest.raises(IdempotencyMismatch):
        RequestHash.of({"filter": {}}, "cancel").check(recorded)


def test_a_key_recorded_before_is_compared_exactly_and_a_new_one_as_read():
    """Only a new key's record is taken by the looser rule; an old one holds the exact JSON's hash."""
    body = {"type": "echo", "delay_seconds": 30}
    old = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:40]
    with pytest.raises(IdempotencyMismatch):  # the same as read, but not the JSON that old key saw
        RequestHash.of({**body, "delay_seconds": 30.0}).check({"request_hash": old})
    RequestHash.of({**body, "delay_seconds": 30.0}).check({"request_hash": RequestHash.of(body).value})
