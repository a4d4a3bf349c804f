"""Schedules in Azure Table Storage, indexed by their next fire time.

Every schedule lives in one partition of the jobs table, `sched`, as rows that change together:
- `d.<id>`: the definition (cron, zone, job template, policies, counts, next fire time);
- `n.<next fire, 13-digit ms>.<id>`: the index row, present exactly while the schedule is active;
- `k.<key hash>`: the Idempotency-Key of the request that created it, if it had one.
Sharing a partition lets every change be one entity-group transaction, conditional on the
definition's ETag: the definition and its index row move together or not at all, so the index
cannot go stale and nothing has to repair it. Firing reads the index from its start up to now:
only the schedules that are due, however many others there are.

One partition takes about 2,000 entity writes a second; a fire writes 2-3 rows of it, so this
holds a few hundred fires a second before the index needs spreading over partitions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableTransactionError, UpdateMode

from shared.idempotency import RequestHash, recorded
from shared.job import Priority, isoformat, parse_time, to_ms
from shared.properties import property_json
from shared.schedules.schedule import CatchUp, JobTemplate, Overlap, Schedule, SkipReason
from shared.storage import Storage
from shared.store import ConcurrencyConflict

PARTITION = "sched"
DEFINITION = "d."
INDEX = "n."
KEY = "k."
ID_PATTERN = r"^[0-9a-f]{20}$"
_ID = re.compile(ID_PATTERN)


class BadContinuation(ValueError):
    pass


def index_row(fire: datetime, schedule_id: str) -> str:
    return f"{INDEX}{to_ms(fire):013d}.{schedule_id}"


def is_id(value: str) -> bool:
    return bool(_ID.match(value))


class ScheduleStore:
    def __init__(self, storage: Storage) -> None:
        self.table = storage.table

    # --- one schedule --------------------------------------------------------------------------

    async def insert(
        self, schedule: Schedule, key_hash: str | None = None, request_hash: RequestHash | None = None
    ) -> tuple[Schedule, bool]:
        """Write a new schedule with its index row (and its key's row) in one transaction. With a
        key used before, nothing is written and the schedule it made comes back (created False),
        or IdempotencyMismatch when the request differs."""
        ops: list[tuple[str, dict[str, Any]]] = [("create", _to_entity(schedule))]
        if schedule.next_fire is not None:
            ops.append(("create", _index_entity(schedule)))
        if key_hash:
            ops.append(("create", {"PartitionKey": PARTITION, "RowKey": KEY + key_hash, "schedule": schedule.id,
                                   "request_hash": recorded(request_hash)}))  # fmt: skip
        try:
            results = await self.table.submit_transaction(ops)  # type: ignore[arg-type]
        except TableTransactionError as exc:
            if not key_hash or exc.error_code != "EntityAlreadyExists":
                raise
            return await self._replay(key_hash, request_hash), False
        return _with_etag(schedule, results[0]["etag"]), True

    async def _replay(self, key_hash: str, request_hash: RequestHash | None) -> Schedule:
        record = await self.table.get_entity(PARTITION, KEY + key_hash)
        if request_hash:
            request_hash.check(record)
        found = await self.get(record["schedule"])
        if found is None:  # cannot happen: the rows are written and deleted together
            raise ResourceNotFoundError("schedule of idempotency key is missing")
        return found

    async def get(self, schedule_id: str) -> Schedule | None:
        if not is_id(schedule_id):
            return None
        try:
            entity = await self.table.get_entity(PARTITION, DEFINITION + schedule_id)
        except ResourceNotFoundError:
            return None
        return _from_entity(entity)

    async def replace(self, new: Schedule, old: Schedule) -> Schedule:
        """Write `new` if the definition is still `old` (its ETag), moving the index row with it
        in the same transaction. ConcurrencyConflict if it changed or went."""
        condition = {"etag": old.etag, "match_condition": MatchConditions.IfNotModified}
        entity = _to_entity(new)
        index_ops: list[tuple[str, dict[str, Any]]] = []
        if old.next_fire != new.next_fire:
            if old.next_fire is not None:
                index_ops.append(("delete", {"PartitionKey": PARTITION, "RowKey": index_row(old.next_fire, old.id)}))
            if new.next_fire is not None:
                index_ops.append(("create", _index_entity(new)))
        try:
            if index_ops:
                ops = [("update", entity, {"mode": UpdateMode.REPLACE, **condition}), *index_ops]
                meta = (await self.table.submit_transaction(ops))[0]  # type: ignore[arg-type]
            else:
                meta = await self.table.update_entity(entity, mode=UpdateMode.REPLACE, **condition)
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyConflict(new.id) from exc
            raise
        except HttpResponseError as exc:
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyConflict(new.id) from exc
            raise
        return _with_etag(new, meta["etag"])

    async def delete(self, schedule: Schedule) -> None:
        """Delete the definition (if unchanged since it was read) with its index and key rows."""
        ops: list[tuple[str, dict[str, Any], dict[str, Any]] | tuple[str, dict[str, Any]]] = [
            ("delete", {"PartitionKey": PARTITION, "RowKey": DEFINITION + schedule.id},
             {"etag": schedule.etag, "match_condition": MatchConditions.IfNotModified}),
        ]  # fmt: skip
        if schedule.next_fire is not None:
            ops.append(("delete", {"PartitionKey": PARTITION, "RowKey": index_row(schedule.next_fire, schedule.id)}))
        if schedule.idempotency_key:
            ops.append(("delete", {"PartitionKey": PARTITION, "RowKey": KEY + schedule.idempotency_key}))
        try:
            await self.table.submit_transaction(ops)  # type: ignore[arg-type]
        except TableTransactionError as exc:
            if exc.status_code in (404, 409, 412):
                raise ConcurrencyConflict(schedule.id) from exc
            raise

    # --- ranges --------------------------------------------------------------------------------

    async def due(self, now: datetime, limit: int) -> list[tuple[datetime, str]]:
        """(fire time, id) of the schedules due by `now`, earliest first: the index rows from the
        start up to now, at most `limit` (one query page; the rest wait for the next pass)."""
        end = f"{INDEX}{to_ms(now) + 1:013d}"
        query = f"PartitionKey eq '{PARTITION}' and RowKey ge '{INDEX}' and RowKey lt '{end}'"
        pages = self.table.query_entities(query, select=["RowKey"], results_per_page=limit).by_page()
        try:
            rows = [row async for row in await pages.__anext__()]
        except StopAsyncIteration:
            rows = []
        out = []
        for row in rows[:limit]:
            _, ms, schedule_id = row["RowKey"].split(".")
            out.append((datetime.fromtimestamp(int(ms) / 1000, tz=UTC), schedule_id))
        return out

    async def page(self, limit: int, continuation: str | None) -> tuple[list[Schedule], str | None]:
        """Schedules by id (oldest first), `limit` per page: one query."""
        after = _decode(continuation)
        low = f"RowKey gt '{DEFINITION}{after}'" if after else f"RowKey ge '{DEFINITION}'"
        query = f"PartitionKey eq '{PARTITION}' and {low} and RowKey lt 'd/'"  # '/' follows '.'
        pages = self.table.query_entities(query, results_per_page=limit).by_page()
        try:
            rows = [row async for row in await pages.__anext__()]
        except StopAsyncIteration:
            rows = []
        schedules = [_from_entity(row) for row in rows[:limit]]
        more = bool(pages.continuation_token) or len(rows) > limit
        return schedules, (_encode(schedules[-1].id) if more and schedules else None)


# --- entity mapping ---------------------------------------------------------------------------------


def _index_entity(schedule: Schedule) -> dict[str, Any]:
    assert schedule.next_fire is not None
    return {"PartitionKey": PARTITION, "RowKey": index_row(schedule.next_fire, schedule.id)}


def _to_entity(s: Schedule) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": DEFINITION + s.id,
        "cron": s.cron,
        "time_zone": s.time_zone,
        "type": s.job.type,
        "payload": property_json(s.job.payload),  # as a job's: the limit on its UTF-8 bytes keeps it in
        "overlap": str(s.overlap),
        "catch_up": str(s.catch_up),
        "fired": s.fired,
        "skipped": s.skipped,
        "revision": s.revision,
    }
    optional = {
        "name": s.name,
        "max_attempts": s.job.max_attempts,
        "priority": str(s.job.priority) if s.job.priority else None,
        "next_fire": isoformat(s.next_fire),
        "created_at": isoformat(s.created_at),
        "updated_at": isoformat(s.updated_at),
        "recent": json.dumps([[to_ms(at), job_id] for at, job_id in s.recent], separators=(",", ":"))
        if s.recent
        else None,
        "last_skip": isoformat(s.last_skip),
        "last_skip_reason": str(s.last_skip_reason) if s.last_skip_reason else None,
        "idem": s.idempotency_key,
        "request_hash": s.request_hash,
    }
    entity.update({k: v for k, v in optional.items() if v is not None})
    return entity


def _from_entity(e: dict[str, Any]) -> Schedule:
    created = parse_time(e.get("created_at"))
    assert created is not None
    return Schedule(
        id=e["RowKey"][len(DEFINITION) :],
        cron=e["cron"],
        time_zone=e["time_zone"],
        job=JobTemplate(
            type=e["type"],
            payload=json.loads(e["payload"]),
            max_attempts=e.get("max_attempts"),
            priority=Priority(e["priority"]) if e.get("priority") else None,
        ),
        overlap=Overlap(e["overlap"]),
        catch_up=CatchUp(e["catch_up"]),
        next_fire=parse_time(e.get("next_fire")),
        created_at=created,
        updated_at=parse_time(e.get("updated_at")) or created,
        name=e.get("name"),
        recent=_recent(e),
        fired=int(e.get("fired") or 0),
        skipped=int(e.get("skipped") or 0),
        last_skip=parse_time(e.get("last_skip")),
        last_skip_reason=SkipReason(e["last_skip_reason"]) if e.get("last_skip_reason") else None,
        idempotency_key=e.get("idem"),
        request_hash=e.get("request_hash"),
        revision=int(e.get("revision") or 1),  # stored before revisions were kept: 1
        etag=e.metadata["etag"] if hasattr(e, "metadata") else "",
    )


def _with_etag(schedule: Schedule, etag: str) -> Schedule:
    return replace(schedule, etag=etag)


# --- continuation tokens: the last id of the page, opaque to clients --------------------------------


def _encode(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"s:{last_id}".encode()).decode().rstrip("=")


def _decode(token: str | None) -> str | None:
    if not token:
        return None
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if raw.startswith("s:") and is_id(raw[2:]):
            return raw[2:]
    raise BadContinuation("continuation token is not one this service issued")


def _recent(e: dict[str, Any]) -> tuple[tuple[datetime, str], ...]:
    """The recent fires as stored: [[fire time in ms, job id], ...]. A schedule written before they
    were kept has its last fire only (`last_fire`, `last_job`)."""
    try:
        pairs = json.loads(e["recent"]) if isinstance(e.get("recent"), str) else []
        recent = tuple((datetime.fromtimestamp(ms / 1000, UTC), str(job_id)) for ms, job_id in pairs)
    except (ValueError, TypeError, OverflowError):
        recent = ()
    last = parse_time(e.get("last_fire"))
    return recent or (((last, e["last_job"]),) if last and e.get("last_job") else ())
