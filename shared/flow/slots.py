"""Concurrency slots: at most N attempts of a type run at once, across every instance.

A type limited to N has slot rows `slot.<type>.<i>` in the `flow` partition. Taking one is a query
of the type's slots (1 call) and a conditional write of a free one (1); giving it back is one
conditional write. A slot is leased like the attempt holding it (JOBS_LEASE_SECONDS, renewed with
the attempt's heartbeat), so the slot of a holder that crashed comes back when its lease runs out.

A holder is counted wherever its row is, so lowering N while jobs run never lets more than the
old N run, and new ones wait until fewer than the new N do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from shared.flow.rows import write_if_unchanged
from shared.flow.settings import PARTITION
from shared.job import isoformat, parse_time
from shared.storage import Storage

TAKE_RETRIES = 3  # another instance took the slot we picked: look again


@dataclass(frozen=True)
class Slot:
    job_type: str
    row: str
    holder: str
    etag: str


def _prefix(job_type: str) -> str:
    return f"slot.{job_type}."


class Slots:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def _rows(self, job_type: str) -> list[dict]:
        prefix = _prefix(job_type)
        query = f"PartitionKey eq '{PARTITION}' and RowKey ge '{prefix}' and RowKey lt '{prefix[:-1]}/'"
        return [row async for row in self.storage.table.query_entities(query)]

    async def held(self, job_type: str, now: datetime) -> int:
        """How many attempts of the type hold a slot now (one query)."""
        return sum(1 for row in await self._rows(job_type) if _live(row, now))

    async def take(self, job_type: str, limit: int, holder: str, until: datetime, now: datetime) -> Slot | None:
        """A slot for `holder` until `until`, or None while `limit` attempts hold one."""
        for _ in range(TAKE_RETRIES):
            rows = {row["RowKey"]: row for row in await self._rows(job_type)}
            if sum(1 for row in rows.values() if _live(row, now)) >= limit:
                return None
            free = [f"{_prefix(job_type)}{i:03d}" for i in range(limit)]
            free = [key for key in free if key not in rows or not _live(rows[key], now)]
            key = random.choice(free)  # spread instances over the free rows: fewer lost races
            entity = {"PartitionKey": PARTITION, "RowKey": key, "holder": holder, "lease_until": isoformat(until)}
            etag = await write_if_unchanged(
                self.storage.table, entity, rows[key].metadata["etag"] if key in rows else None
            )
            if etag is not None:
                return Slot(job_type, key, holder, etag)
        return None

    async def renew(self, slot: Slot, until: datetime) -> Slot | None:
        """Extend the lease; None if the slot was taken over (its lease had run out)."""
        entity = {"PartitionKey": PARTITION, "RowKey": slot.row, "holder": slot.holder, "lease_until": isoformat(until)}
        etag = await write_if_unchanged(self.storage.table, entity, slot.etag)
        return Slot(slot.job_type, slot.row, slot.holder, etag) if etag else None

    async def give_back(self, slot: Slot) -> None:
        """Free the slot, unless someone else holds it now."""
        entity = {"PartitionKey": PARTITION, "RowKey": slot.row, "holder": "", "lease_until": ""}
        await write_if_unchanged(self.storage.table, entity, slot.etag)


def _live(row: dict, now: datetime) -> bool:
    until = parse_time(row.get("lease_until") or None)
    return bool(row.get("holder")) and until is not None and until > now
