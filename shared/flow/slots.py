"""Concurrency slots: at most N attempts of a type run at once, across every instance.

A type limited to N has slot rows `slot.<type>.<i>` in the `flow` partition. Taking one is a query
of the type's slots (1 call) and a conditional write of a free one (1); giving it back is one
conditional write. A slot is leased like the attempt holding it (JOBS_LEASE_SECONDS, renewed with
the attempt's heartbeat), so the slot of a holder that crashed comes back when its lease runs out.

A job that finds every slot held sends its message again, hidden for a back-off, and leaves a
waiter row `slot.<type>.w.<job id>` naming that message (1 upsert). Whoever gives back a slot
while jobs wait wakes one: it reads a page of waiters (1), takes the row (a conditional delete, 1)
and makes its message visible at once (1). The back-off stays the way back for a job no one
wakes, or whose waker died. Waiter rows sort after the slot rows, so taking a slot tells whether
jobs wait at no extra cost. A holder looks for a waiter to wake if it saw one then, or if it held
its slot over a second (jobs that began to wait during a shorter run are back as soon by
themselves): short jobs of a type nobody waits for pay nothing for this.

Raising a type's limit through the API wakes as many waiters as the new slots free, and removing
it wakes every waiter (flow/control.py). A job that comes back by itself after the limit was
removed deletes its own row.

A holder is counted wherever its row is, so lowering N while jobs run never lets more than the
old N run, and new ones wait until fewer than the new N do.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError, HttpResponseError
from azure.data.tables import UpdateMode

from shared.flow.settings import PARTITION
from shared.job import JobKey, Priority, isoformat, parse_time, to_ms, utcnow
from shared.rows import delete_if_unchanged, write_if_unchanged
from shared.storage import Storage

log = logging.getLogger(__name__)

TAKE_RETRIES = 3  # another instance took the slot we picked: look again
WAITERS_READ = 50  # waiter rows a give-back reads to choose the one it wakes
# A holder that saw no waiter when it took its slot looks for one only after holding it this long:
# a job that began to wait during a shorter run comes back by itself as soon (its first back-off).
LOOK_AFTER_HOLDING = timedelta(seconds=1)
WAKE_TRIES = 3  # waiters whose message is gone (they came back or ended) before giving up
ORPHANS_CLEARED = 5  # rows of messages long gone, deleted by one wake at most
WAITING_COUNTED = 1000  # the types API counts waiters up to this (a page): more cost a call per page
# A waiter row this long past the time its message comes back by itself names a message that is
# gone: the job ran or waits under a newer row. Whoever reads it deletes it.
ORPHANED_AFTER = timedelta(seconds=30)
_RANK = {p: i for i, p in enumerate(Priority)}


@dataclass(frozen=True)
class Slot:
    job_type: str
    row: str
    holder: str
    etag: str
    contended: bool = False  # jobs waited when it was taken: wake one when giving it back
    taken: datetime | None = None


def _prefix(job_type: str) -> str:
    return f"slot.{job_type}."


def _waiters(job_type: str) -> str:
    return f"{_prefix(job_type)}w."


def waiter_row(job_type: str, job_id: str) -> str:
    return f"{_waiters(job_type)}{job_id}"


def _kind(job_type: str, row_key: str) -> str | None:
    """What a row in the type's key range is: one of its slots, one of its waiters, or (None) a row
    of another type whose name begins with this one's and a dot (`a.b`, `a.w` for `a`)."""
    rest = row_key[len(_prefix(job_type)) :]
    if rest.isdigit():
        return "slot"
    if rest.startswith("w.") and JobKey.parse(rest[2:]) is not None:
        return "waiter"
    return None


def _range(prefix: str) -> str:
    return f"PartitionKey eq '{PARTITION}' and RowKey ge '{prefix}' and RowKey lt '{prefix[:-1]}/'"


class Slots:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def _rows(self, job_type: str, waiters_wanted: int = 1) -> tuple[dict[str, dict], list[dict]]:
        """The type's slot rows by key, and the waiter rows of the same pages: one query while they
        fit a page. No page is read once `waiters_wanted` waiter rows are."""
        slots: dict[str, dict] = {}
        waiters: list[dict] = []
        async for page in self.storage.table.query_entities(_range(_prefix(job_type))).by_page():
            async for row in page:
                kind = _kind(job_type, row["RowKey"])
                if kind == "waiter":
                    waiters.append(row)
                elif kind == "slot":
                    slots[row["RowKey"]] = row
            if len(waiters) >= waiters_wanted:
                break
        return slots, waiters

    async def held(self, job_type: str, now: datetime) -> int:
        """How many attempts of the type hold a slot now (one query)."""
        return (await self.occupancy(job_type, now))[0]

    async def occupancy(self, job_type: str, now: datetime) -> tuple[int, int]:
        """Attempts holding a slot now, and jobs waiting for one (counted up to WAITING_COUNTED):
        one query while both fit a page."""
        slots, waiters = await self._rows(job_type, WAITING_COUNTED)
        held = sum(1 for row in slots.values() if _live(row, now))
        return held, min(WAITING_COUNTED, sum(1 for row in waiters if not _orphaned(row, now)))

    async def take(
        self, job_type: str, limit: int, holder: str, until: datetime, now: datetime, job_id: str | None = None
    ) -> Slot | None:
        """A slot for `holder` until `until`, or None while `limit` attempts hold one. A job that
        waited and came back by itself (`job_id`) removes its waiter row once it has a slot."""
        for _ in range(TAKE_RETRIES):
            slots, waiters = await self._rows(job_type)
            live = sum(1 for row in slots.values() if _live(row, now))
            if live >= limit:
                return None
            free = [f"{_prefix(job_type)}{i:03d}" for i in range(limit)]
            free = [key for key in free if key not in slots or not _live(slots[key], now)]
            key = random.choice(free)  # spread instances over the free rows: fewer lost races
            entity = {"PartitionKey": PARTITION, "RowKey": key, "holder": holder, "lease_until": isoformat(until)}
            etag = await write_if_unchanged(
                self.storage.table, entity, slots[key].metadata["etag"] if key in slots else None
            )
            if etag is None:
                continue
            mine = waiter_row(job_type, job_id) if job_id else None
            others = [row for row in waiters if row["RowKey"] != mine]
            if len(others) < len(waiters):
                await self._forget(mine)
            return Slot(job_type, key, holder, etag, contended=bool(others), taken=now)
        return None

    async def renew(self, slot: Slot, until: datetime) -> Slot | None:
        """Extend the lease; None if the slot was taken over (its lease had run out)."""
        entity = {"PartitionKey": PARTITION, "RowKey": slot.row, "holder": slot.holder, "lease_until": isoformat(until)}
        etag = await write_if_unchanged(self.storage.table, entity, slot.etag)
        return replace(slot, etag=etag) if etag else None

    async def give_back(self, slot: Slot, now: datetime | None = None) -> bool:
        """Free the slot, unless someone else holds it now; then, if jobs may be waiting for it,
        wake one. Whether one was woken."""
        entity = {"PartitionKey": PARTITION, "RowKey": slot.row, "holder": "", "lease_until": ""}
        if await write_if_unchanged(self.storage.table, entity, slot.etag) is None:
            # Its lease ran out and another attempt took the row: that one gives it back.
            log.info("slot %s was taken over before %s gave it back", slot.row, slot.holder)
        now = now or utcnow()
        # Jobs that began to wait after it was taken are back within a first back-off anyway.
        looked_long = slot.taken is not None and now - slot.taken >= LOOK_AFTER_HOLDING
        if not (slot.contended or looked_long):
            return False
        try:
            return await self.wake_one(slot.job_type, now)
        except AzureError as exc:  # only a shortcut: the waiters come back after their back-off
            log.warning("could not wake a job waiting for a %s slot: %s", slot.job_type, exc)
            return False

    async def wait(
        self, job_type: str, job_id: str, priority: Priority, message_id: str, pop_receipt: str, back: datetime
    ) -> None:
        """Record that a job waits for a slot, with the hidden message that brings it `back`."""
        await self.storage.table.upsert_entity(
            {
                "PartitionKey": PARTITION,
                "RowKey": waiter_row(job_type, job_id),
                "priority": str(priority),
                "message_id": message_id,
                "pop_receipt": pop_receipt,
                "back": isoformat(back),
            },
            mode=UpdateMode.REPLACE,
        )

    async def wake_one(self, job_type: str, now: datetime) -> bool:
        """Make the message of one waiting job visible now: the highest priority, then the one
        that comes back last by itself. Rows of messages that are gone are deleted on the way."""
        return await self.wake(job_type, now, 1) == 1

    async def wake(self, job_type: str, now: datetime, count: int | None, seconds: float = 5.0) -> int:
        """Wake up to `count` waiting jobs, in wake order within a page of waiters, or (None) every
        one for about `seconds`, clearing every orphaned row on the way: how many were woken. A
        bounded count reads one page of waiters, as many as it needs."""
        every = count is None
        size = 1000 if count is None else max(WAITERS_READ, min(1000, 2 * count))
        deadline = time.monotonic() + seconds
        woken = tried = cleared = 0
        query = self.storage.table.query_entities(_range(_waiters(job_type)), results_per_page=size)
        async for page in query.by_page():
            waiting = []
            async for row in page:
                if _kind(job_type, row["RowKey"]) != "waiter":
                    continue  # another type's row: its name extends this one's
                if _orphaned(row, now):
                    if every or cleared < ORPHANS_CLEARED:
                        cleared += 1
                        await self._delete(row["RowKey"], None)
                elif (parse_time(row.get("back")) or now) > now + timedelta(seconds=1):  # not on its way back
                    waiting.append(row)
            for row in sorted(waiting, key=_wake_order):
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
        if not await self._delete(row["RowKey"], row.metadata["etag"]):
            return False  # it waits again, under a newer message: its own back-off is short
        try:
            priority = Priority(row.get("priority") or Priority.NORMAL)
            queue = self.storage.queues[priority]
            await queue.update_message(row["message_id"], row["pop_receipt"], visibility_timeout=0)
        except (ValueError, KeyError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (400, 404):
                return False
            raise
        return True

    async def forget(self, job_type: str, job_id: str) -> None:
        """Delete the waiter row of a job that no longer waits (its type's limit was removed)."""
        await self._forget(waiter_row(job_type, job_id))

    async def _forget(self, row: str) -> None:
        """Delete the row of a job that waited and now holds a slot; left for a later wake to
        clear if storage refuses now (the slot is held: this must not fail the attempt)."""
        try:
            await self._delete(row, None)
        except AzureError as exc:
            log.warning("could not delete waiter row %s: %s", row, exc)

    async def _delete(self, row: str, etag: str | None) -> bool:
        """Delete a waiter row (see delete_if_unchanged): the message update that follows a
        delete tells two wakers apart."""
        return await delete_if_unchanged(self.storage.table, PARTITION, row, etag)


def _live(row: dict, now: datetime) -> bool:
    until = parse_time(row.get("lease_until") or None)
    return bool(row.get("holder")) and until is not None and until > now


def _orphaned(row: dict, now: datetime) -> bool:
    back = parse_time(row.get("back"))
    return back is not None and back < now - ORPHANED_AFTER


def _wake_order(row: dict) -> tuple[int, int]:
    """Higher priorities first; then the job that would wait longest without a wake."""
    back = parse_time(row.get("back"))
    rank = _RANK.get(str(row.get("priority")), _RANK[Priority.NORMAL])
    return rank, -(to_ms(back) if back else 0)
