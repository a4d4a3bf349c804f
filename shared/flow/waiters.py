"""Waiter rows: the hidden message of a job that waits, named so that a change can bring it back early.

A job that must wait sends its message again, hidden until it may ask again (a back-off for a
concurrency slot; its reserved start for a rate limit), and may leave a row in the `flow`
partition, `<kind>.<type>.w.<job id>`, with that message's id and pop receipt. Whoever frees room
for it (a slot given back, a limit raised or removed) takes the row with a conditional delete and
makes the message visible at once. The hidden message stays the way back for a job no one wakes,
or whose waker died. A row long past the time its message comes back by itself names a message
that is gone (the job ran, or waits under a newer row): whoever reads it deletes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import UpdateMode

from shared.flow.settings import PARTITION
from shared.job import JobKey, Priority, isoformat, parse_time, to_ms
from shared.rows import delete_if_unchanged
from shared.storage import Storage

log = logging.getLogger(__name__)

WAKE_TRIES = 3  # waiters whose message is gone (they came back or ended) before giving up
ORPHANS_CLEARED = 5  # rows of messages long gone, deleted by one bounded wake at most
ORPHANED_AFTER = timedelta(seconds=30)
_RANK = {p: i for i, p in enumerate(Priority)}


def key_range(prefix: str) -> str:
    """A query for the `flow` rows whose keys begin with `prefix` (which ends with a dot)."""
    return f"PartitionKey eq '{PARTITION}' and RowKey ge '{prefix}' and RowKey lt '{prefix[:-1]}/'"


class Waiters:
    """The waiter rows of one kind (`slot`, `rate`)."""

    def __init__(self, storage: Storage, kind: str) -> None:
        self.storage = storage
        self.kind = kind

    def prefix(self, job_type: str) -> str:
        return f"{self.kind}.{job_type}.w."

    def row(self, job_type: str, job_id: str) -> str:
        return f"{self.prefix(job_type)}{job_id}"

    def owns(self, job_type: str, row_key: str) -> bool:
        """Whether a row in the type's key range is one of its waiters, not a row of a type whose
        name begins with this one's (`a.w.<id>`... for `a`)."""
        prefix = self.prefix(job_type)
        return row_key.startswith(prefix) and JobKey.parse(row_key[len(prefix) :]) is not None

    async def add(
        self, job_type: str, job_id: str, priority: Priority, message_id: str, pop_receipt: str, back: datetime,
        **extra: Any,
    ) -> None:  # fmt: skip
        """Record that a job waits, with the hidden message that brings it `back`."""
        await self.storage.table.upsert_entity(
            {
                "PartitionKey": PARTITION,
                "RowKey": self.row(job_type, job_id),
                "priority": str(priority),
                "message_id": message_id,
                "pop_receipt": pop_receipt,
                "back": isoformat(back),
                **extra,
            },
            mode=UpdateMode.REPLACE,
        )

    async def any_waiting(self, job_type: str) -> bool:
        """Whether any job of the type has a waiter row (one call, reading a few rows: another type's
        rows sort among them only if its name is this one's with `.w.` and a job id after it)."""
        query = self.storage.table.query_entities(key_range(self.prefix(job_type)), results_per_page=10)
        async for page in query.by_page():
            return any([self.owns(job_type, row["RowKey"]) async for row in page])
        return False

    async def wake(
        self, job_type: str, now: datetime, count: int | None, seconds: float = 5.0, page: int = 1000,
        order: Callable[[dict], Any] | None = None, chosen: Callable[[dict], bool] | None = None,
    ) -> int:  # fmt: skip
        """Wake up to `count` waiting jobs (`chosen` ones, in `order` within a page of `page`
        rows), or (None) every one for about `seconds`, clearing orphaned rows on the way: how
        many were woken. A bounded count reads one page."""
        every = count is None
        deadline = time.monotonic() + seconds
        woken = tried = cleared = 0
        query = self.storage.table.query_entities(key_range(self.prefix(job_type)), results_per_page=page)
        async for rows in query.by_page():
            waiting = []
            async for row in rows:
                if not self.owns(job_type, row["RowKey"]):
                    continue
                if orphaned(row, now):
                    if every or cleared < ORPHANS_CLEARED:
                        cleared += 1
                        await self.delete(row["RowKey"], None)
                elif _still_hidden(row, now) and (chosen is None or chosen(row)):
                    waiting.append(row)
            for row in sorted(waiting, key=order or by_priority_then_latest):
                if count is not None and (woken >= count or tried >= count + WAKE_TRIES - 1):
                    return woken
                if time.monotonic() > deadline:
                    return woken
                tried += 1
                woken += await self._wake(row)
            if not every:
                break
        return woken

    async def _wake(self, row: dict) -> bool:
        """Take a waiter's row and make its message visible; False if another waker took it, or
        the message is gone (it was received meanwhile, or the job ended)."""
        if not await self.delete(row["RowKey"], row.metadata["etag"]):
            return False  # it waits again, under a newer message
        try:
            queue = self.storage.queues[Priority(row.get("priority") or Priority.NORMAL)]
            await queue.update_message(row["message_id"], row["pop_receipt"], visibility_timeout=0)
        except (ValueError, KeyError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (400, 404):
                return False
            raise
        return True

    async def forget(self, job_type: str, job_id: str) -> None:
        """Delete the row of a job that no longer waits; left for a later wake to clear if
        storage refuses now (this must not fail the attempt)."""
        try:
            await self.delete(self.row(job_type, job_id), None)
        except AzureError as exc:
            log.warning("could not delete waiter row %s: %s", self.row(job_type, job_id), exc)

    async def delete(self, row: str, etag: str | None) -> bool:
        """Delete a waiter row (see delete_if_unchanged): the message update that follows a
        delete tells two wakers apart."""
        return await delete_if_unchanged(self.storage.table, PARTITION, row, etag)


def orphaned(row: dict, now: datetime) -> bool:
    back = parse_time(row.get("back"))
    return back is not None and back < now - ORPHANED_AFTER


def _still_hidden(row: dict, now: datetime) -> bool:
    """Its message is not on its way back by itself (within a second)."""
    return (parse_time(row.get("back")) or now) > now + timedelta(seconds=1)


def _rank(row: dict) -> int:
    return _RANK.get(str(row.get("priority")), _RANK[Priority.NORMAL])


def _back_ms(row: dict) -> int:
    back = parse_time(row.get("back"))
    return to_ms(back) if back else 0


def by_priority_then_latest(row: dict) -> tuple[int, int]:
    """Higher priorities first; then the job that would wait longest without a wake."""
    return _rank(row), -_back_ms(row)


def by_priority_then_earliest(row: dict) -> tuple[int, int]:
    """Higher priorities first; then the job that was to start first (first come, first served)."""
    return _rank(row), _back_ms(row)
