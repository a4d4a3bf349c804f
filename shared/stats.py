"""Aggregates for the dashboard's overview, kept by the reconciler so that reading them never
scans the job history.

Each reconciler run (every 30 s) counts the jobs due in the last RECOUNT minutes by minute and
status (one query per partition, a range of row keys: its cost follows the recent window) and
writes one row per minute to the `stats` partition, with the queue depths it already measured and
the age of the queue's oldest visible message. A minute is counted again on every run while it is
recent, so retries and dead letters move its counts; after that it is kept as it was last
counted. The overview reads one range of that partition (24 h = 1,440 rows: two pages) and the
ten newest dead letters from their index: a refresh costs the same whatever the history holds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.job import Status, isoformat, parse_time, utcnow
from shared.storage import Storage
from shared.store import JobStore

PARTITION = "stats"
STATE_ROW = "state"  # sorts after every minute row ("m...")
RECOUNT = timedelta(minutes=15)
SERIES_BUCKET = timedelta(minutes=5)
STATUSES = tuple(str(s) for s in Status)


def minute_row(moment: datetime) -> str:
    return "m" + moment.strftime("%Y%m%d%H%M")


def minute_of(row: str) -> datetime:
    return datetime.strptime(row[1:], "%Y%m%d%H%M").replace(tzinfo=UTC)


class Stats:
    def __init__(self, storage: Storage, store: JobStore) -> None:
        self.storage = storage
        self.store = store

    async def refresh(self, now: datetime, depth: int, poison_depth: int, oldest_queued: datetime | None) -> None:
        """Count the recent minutes again and save them with the queue figures (the reconciler)."""
        start = (now - RECOUNT).replace(second=0, microsecond=0)
        counts: dict[str, Counter[str]] = {}
        minute = start
        while minute <= now:
            counts[minute_row(minute)] = Counter()  # a minute with no jobs is written as zeros
            minute += timedelta(minutes=1)
        for row in await self.store.due_rows(start, now, ["status", "due_at"]):
            due = parse_time(row.get("due_at"))
            if due is not None and start <= due <= now:
                counts[minute_row(due)][row["status"]] += 1
        entities: list[dict[str, Any]] = [
            {"PartitionKey": PARTITION, "RowKey": key, **{s: c[s] for s in STATUSES}} for key, c in counts.items()
        ]
        entities.append({
            "PartitionKey": PARTITION, "RowKey": STATE_ROW, "as_of": isoformat(now), "depth": depth,
            "poison_depth": poison_depth, "oldest_queued_at": isoformat(oldest_queued) or "",
        })  # fmt: skip
        for i in range(0, len(entities), 100):  # one entity-group transaction per 100 rows
            await self.storage.table.submit_transaction([("upsert", e) for e in entities[i : i + 100]])

    async def read(self, now: datetime | None = None) -> dict[str, Any]:
        """The overview: counts for the last hour and day, a series in 5-minute buckets, the
        queue figures of the reconciler's last run, and the ten newest dead letters."""
        now = now or utcnow()
        query = f"PartitionKey eq '{PARTITION}' and RowKey ge '{minute_row(now - timedelta(hours=24))}'"
        rows, dead = await asyncio.gather(
            self._rows(query), self.store.list(status=str(Status.DEAD_LETTERED), limit=10)
        )
        state = next((r for r in rows if r["RowKey"] == STATE_ROW), None)
        minutes = [(minute_of(r["RowKey"]), r) for r in rows if r["RowKey"].startswith("m")]
        last_hour, last_day = Counter[str](), Counter[str]()
        buckets: dict[datetime, Counter[str]] = {}
        first = _bucket(now - timedelta(hours=24))
        bucket = first
        while bucket <= now:
            buckets[bucket] = Counter()
            bucket += SERIES_BUCKET
        for at, row in minutes:
            counts = Counter({s: int(row.get(s, 0)) for s in STATUSES})
            last_day.update(counts)
            if at >= now - timedelta(hours=1):
                last_hour.update(counts)
            if _bucket(at) in buckets:
                buckets[_bucket(at)].update(counts)
        oldest = parse_time(state.get("oldest_queued_at")) if state else None
        # Its age when the reconciler looked, like the depth: aged on from then, a message taken
        # since would seem to wait on (up to 30 s) while none does.
        as_of = parse_time(state.get("as_of")) if state else None
        return {
            "as_of": state.get("as_of") if state else None,
            "last_hour": {s: last_hour[s] for s in STATUSES},
            "last_24h": {s: last_day[s] for s in STATUSES},
            "series": [{"at": isoformat(at), **{s: c[s] for s in STATUSES}} for at, c in buckets.items()],
            "queue": {
                "depth": int(state["depth"]) if state else None,
                "poison_depth": int(state["poison_depth"]) if state else None,
                "oldest_queued_age_seconds": round(max(0.0, ((as_of or now) - oldest).total_seconds()), 1)
                if oldest
                else None,
            },
            "recent_dead_letters": [job.to_resource() for job in dead.jobs],
        }

    async def _rows(self, query: str) -> list[dict[str, Any]]:
        return [row async for row in self.storage.table.query_entities(query)]


def _bucket(moment: datetime) -> datetime:
    minute = moment.replace(second=0, microsecond=0)
    return minute - timedelta(minutes=minute.minute % int(SERIES_BUCKET.total_seconds() // 60))
