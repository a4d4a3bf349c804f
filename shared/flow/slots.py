"""Concurrency slots: at most N attempts of a type run at once, across every instance.

A type limited to N has slot rows `slot.<type>.<i>` in the `flow` partition. Taking one is a query
of the type's slots (1 call) and a conditional write of a free one (1); giving it back is one
conditional write. A slot is leased like the attempt holding it (JOBS_LEASE_SECONDS, renewed with
the attempt's heartbeat), so the slot of a holder that crashed comes back when its lease runs out.

A job that finds every slot held sends its message again, hidden for a back-off, and leaves a
waiter row `slot.<type>.w.<job id>` naming that message (1 upsert; waiters.py). Whoever gives back a slot
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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError

from shared.flow.settings import PARTITION
from shared.flow.waiters import Waiters, key_range, orphaned
from shared.job import Priority, isoformat, parse_time, utcnow
from shared.rows import write_if_unchanged
from shared.storage import Storage

log = logging.getLogger(__name__)

TAKE_RETRIES = 3  # another instance took the slot we picked: look again
WAITERS_READ = 50  # waiter rows a give-back reads to choose the one it wakes
# A holder that saw no waiter when it took its slot looks for one only after holding it this long:
# a job that began to wait during a shorter run comes back by itself as soon (its first back-off).
LOOK_AFTER_HOLDING = timedelta(seconds=1)
WAITING_COUNTED = 1000  # the types API counts waiters up to this (a page): more cost a call per page


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


class Slots:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.waiters = Waiters(storage, "slot")  # rows slot.<type>.w.<job id>: they sort after the slots

    def _kind(self, job_type: str, row_key: str) -> str | None:
        """What a row in the type's key range is: one of its slots, one of its waiters, or (None) a
        row of another type whose name begins with this one's and a dot (`a.b`, `a.w` for `a`)."""
        if row_key[len(_prefix(job_type)) :].isdigit():
            return "slot"
        return "waiter" if self.waiters.owns(job_type, row_key) else None

    async def _rows(self, job_type: str, waiters_wanted: int = 1) -> tuple[dict[str, dict], list[dict]]:
        """The type's slot rows by key, and the waiter rows of the same pages: one query while they
        fit a page. No page is read once `waiters_wanted` waiter rows are."""
        slots: dict[str, dict] = {}
        waiters: list[dict] = []
        async for page in self.storage.table.query_entities(key_range(_prefix(job_type))).by_page():
            async for row in page:
                kind = self._kind(job_type, row["RowKey"])
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
        return held, min(WAITING_COUNTED, sum(1 for row in waiters if not orphaned(row, now)))

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
            mine = self.waiters.row(job_type, job_id) if job_id else None
            others = [row for row in waiters if row["RowKey"] != mine]
            if job_id and len(others) < len(waiters):
                await self.waiters.forget(job_type, job_id)
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
        await self.waiters.add(job_type, job_id, priority, message_id, pop_receipt, back)

    async def wake_one(self, job_type: str, now: datetime) -> bool:
        """Make the message of one waiting job visible now: the highest priority, then the one
        that comes back last by itself. Rows of messages that are gone are deleted on the way."""
        return await self.wake(job_type, now, 1) == 1

    async def wake(self, job_type: str, now: datetime, count: int | None, seconds: float = 5.0) -> int:
        """Wake up to `count` waiting jobs, or (None) every one for about `seconds` (waiters.py):
        how many were woken. A bounded count reads one page of waiters, as many as it needs."""
        page = 1000 if count is None else max(WAITERS_READ, min(1000, 2 * count))
        return await self.waiters.wake(job_type, now, count, seconds, page)

    async def forget(self, job_type: str, job_id: str) -> None:
        """Delete the waiter row of a job that no longer waits (its type's limit was removed)."""
        await self.waiters.forget(job_type, job_id)


def _live(row: dict, now: datetime) -> bool:
    until = parse_time(row.get("lease_until") or None)
    return bool(row.get("holder")) and until is not None and until > now
