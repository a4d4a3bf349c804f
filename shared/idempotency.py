"""Idempotency-Key rules shared by every POST that takes one (jobs, batches, schedules, bulk
operations): how a key is stored, and when a request replays the one that used it first.

A replay must send the same request. "Same" is judged on the body as the API reads it, not on its
bytes: key order, `30` or `30.0`, and a field sent as null or left out (null means "the default"
wherever a POST takes it) do not make a request different. A payload is compared as sent: the
handler would see `30.0` where it saw `30`, and a `null` member where there was none. Routes that
share their keys (a bulk retry and a bulk cancel) add what they ask to the fingerprint."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class IdempotencyMismatch(Exception):
    """The idempotency key was used before with a different request."""

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with a different request")


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:40]


# Marks a fingerprint taken by the rule above. A key recorded before holds the hash of the JSON
# exactly as sent, of the body alone: its replay is compared that way.
_READ = "r:"


@dataclass(frozen=True)
class RequestHash:
    """A request's fingerprint: `value` is what a new key records; `exact`, what a key recorded
    before it holds for the same request."""

    value: str
    exact: str

    @classmethod
    def of(cls, body: Any, action: str | None = None) -> RequestHash:
        """`action`: what the request asks, when routes that ask different things share their
        keys (a bulk retry's key replayed on the cancel route is another request)."""
        read = _as_read(body)
        return cls(_READ + _hash_json([action, read] if action else read), _hash_json(body))

    def check(self, record: Mapping[str, Any]) -> None:
        """Raise IdempotencyMismatch unless `record` (a key's row) was written for this request."""
        recorded = str(record.get("request_hash") or "")
        if recorded != (self.value if recorded.startswith(_READ) else self.exact):
            raise IdempotencyMismatch


def recorded(request_hash: RequestHash | None) -> str:
    """What a key's row stores (nothing for a key the server derives, which no client replays)."""
    return request_hash.value if request_hash else ""


def _hash_json(value: Any) -> str:
    return hash_key(json.dumps(value, sort_keys=True, separators=(",", ":")))


def _as_read(value: Any, name: str | None = None) -> Any:
    if name == "payload":
        return value
    if isinstance(value, dict):
        return {k: _as_read(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_as_read(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
