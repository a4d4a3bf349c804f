"""Flow settings per job type: paused, max concurrency, rate limit.

A type's limits come from its handler (`@handler("x", max_concurrency=2, rate_limit="10/m")`) and
may be overridden at run time through the API; pausing is run time only. Overrides live in the
jobs table, partition `flow`, one row per type (`type.<name>`, and `type.*` for every type).

Every instance must learn of a pause, so the worker reads that partition (one query) at most
once per CACHE_SECONDS while it has messages to handle, whatever the number of jobs: a plain job
costs no call of its own for flow control.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.flow.limits import RateLimit
from shared.job import isoformat, parse_time, to_ms
from shared.registry import Registry
from shared.rows import write_if_unchanged
from shared.storage import Storage

PARTITION = "flow"
ALL = "*"  # the row that pauses every type
CACHE_SECONDS = 5.0  # how stale an instance's view of pauses and limits may be
UPDATE_RETRIES = 5


@dataclass(frozen=True)
class TypeFlow:
    """What applies to a type now: its code defaults with the run-time overrides on top."""

    paused: bool = False  # this type, or everything
    max_concurrency: int | None = None
    rate_limit: RateLimit | None = None
    rate_version: int = 0  # when the rate limit was last set through the API (ms), to tell the newer of two

    @property
    def limited(self) -> bool:
        return self.max_concurrency is not None or self.rate_limit is not None


@dataclass(frozen=True)
class Override:
    """A row of the `flow` partition: what was set through the API (None: not set), whether jobs
    parked while the type was paused are still to be released, when its rate limit was last set,
    and whether jobs holding a start under the one before may still be waiting (flow/rate.py)."""

    paused: bool = False
    max_concurrency: int | None = None
    rate_limit: RateLimit | None = None
    release_pending: bool = False
    resumed_at: datetime | None = None
    rate_changed_at: datetime | None = None
    rate_wake_pending: bool = False

    @classmethod
    def from_entity(cls, entity: dict[str, Any]) -> Override:
        rate = None
        if entity.get("rate_limit"):
            rate = RateLimit(int(entity["rate_limit"]), float(entity["rate_period"]))
        concurrency = entity.get("max_concurrency")
        return cls(
            bool(entity.get("paused")), int(concurrency) if concurrency else None, rate,
            bool(entity.get("release_pending")), parse_time(entity.get("resumed_at") or None),
            parse_time(entity.get("rate_changed_at") or None), bool(entity.get("rate_wake_pending")),
        )  # fmt: skip

    def to_entity(self, job_type: str) -> dict[str, Any]:
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": row_key(job_type), "paused": self.paused,
                                  "release_pending": self.release_pending}  # fmt: skip
        if self.max_concurrency is not None:
            entity["max_concurrency"] = self.max_concurrency
        if self.rate_limit is not None:
            entity["rate_limit"] = self.rate_limit.limit
            entity["rate_period"] = self.rate_limit.period_seconds
        if self.resumed_at is not None:
            entity["resumed_at"] = isoformat(self.resumed_at)
        if self.rate_changed_at is not None:
            entity["rate_changed_at"] = isoformat(self.rate_changed_at)
        if self.rate_wake_pending:
            entity["rate_wake_pending"] = True
        return entity


@dataclass(frozen=True)
class FlowState:
    """Every override, as read at one moment."""

    overrides: dict[str, Override]

    @property
    def all_paused(self) -> bool:
        return self.overrides.get(ALL, Override()).paused

    def paused(self, job_type: str) -> bool:
        return self.all_paused or self.overrides.get(job_type, Override()).paused

    def paused_by(self, job_type: str) -> list[str]:
        """What pauses the type: its own pause (`type`), the global one (`all`), both, or neither."""
        own = self.overrides.get(job_type, Override()).paused
        return [name for name, on in (("type", own), ("all", self.all_paused)) if on]


def row_key(job_type: str) -> str:
    return f"type.{job_type}"


class FlowSettings:
    def __init__(self, storage: Storage, registry: Registry, cache_seconds: float = CACHE_SECONDS) -> None:
        self.storage = storage
        self.registry = registry
        self.cache_seconds = cache_seconds
        self._cached: FlowState | None = None
        self._read_at = 0.0
        self._reading: asyncio.Task[FlowState] | None = None

    async def read(self) -> FlowState:
        """The overrides as stored now: one query. Their age counts from when it was sent."""
        asked = time.monotonic()
        rows = self.storage.table.query_entities(
            f"PartitionKey eq '{PARTITION}' and RowKey ge 'type.' and RowKey lt 'type/'"
        )
        state = FlowState({row["RowKey"][len("type.") :]: Override.from_entity(row) async for row in rows})
        self._cached, self._read_at = state, asked
        return state

    @property
    def age(self) -> float:
        """Seconds since the settings were last read."""
        return time.monotonic() - self._read_at

    async def current(self, max_age: float | None = None) -> FlowState:
        """The overrides as this instance last read them, read again when older than `max_age`
        (default: `cache_seconds`). Concurrent callers share one read."""
        max_age = self.cache_seconds if max_age is None else min(max_age, self.cache_seconds)
        if self._cached is not None and time.monotonic() - self._read_at < max_age:
            return self._cached
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self.read())
        return await asyncio.shield(self._reading)

    def effective(self, state: FlowState, job_type: str) -> TypeFlow:
        spec = self.registry.get(job_type)
        override = state.overrides.get(job_type, Override())
        return TypeFlow(
            paused=state.paused(job_type),
            max_concurrency=override.max_concurrency or (spec.max_concurrency if spec else None),
            rate_limit=override.rate_limit or (spec.rate_limit if spec else None),
            rate_version=to_ms(override.rate_changed_at) if override.rate_changed_at else 0,
        )

    async def for_type(self, job_type: str) -> TypeFlow:
        return self.effective(await self.current(), job_type)

    async def change(self, job_type: str, unless: Callable[[Override], bool] | None = None, **changes: Any) -> Override:
        """Set some of a type's overrides (`paused`, `max_concurrency`, `rate_limit`; None removes
        a limit's override) with a conditional write, so two changes at once both apply. With
        `unless`, nothing is written if it holds for the row as read."""
        table = self.storage.table
        for _ in range(UPDATE_RETRIES):
            try:
                entity = await table.get_entity(PARTITION, row_key(job_type))
                current, etag = Override.from_entity(entity), entity.metadata["etag"]
            except ResourceNotFoundError:
                current, etag = Override(), None
            if unless is not None and unless(current):
                return current
            new = replace(current, **changes)
            if await write_if_unchanged(table, new.to_entity(job_type), etag) is None:
                continue  # changed meanwhile: apply ours to what is there now
            self._cached = None  # this instance sees its own change at once
            return new
        raise RuntimeError(f"the flow settings of {job_type!r} are changing too fast; try again")
