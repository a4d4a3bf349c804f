"""Listing oldest first, over row keys that run newest first.

A job's row key is its inverted due time (13 digits of ms) and a random suffix, so a partition
hands its rows out newest first and nothing else: Table Storage has no descending scan. To list
oldest first without reading the history, a page looks at windows of due time going forward from
its position, one query per partition each; a window's rows come back newest first, so a window
is of use only once it is read completely (no continuation). Most windows read row keys alone
(`$select=RowKey`, up to 1,000 a query): cheap to read in bulk, so one query usually covers many
pages' worth, or a long gap. Per partition:

- a probe that comes back complete is known: its keys join the page, and the next probe starts
  where it ended, up to 16 times wider;
- a probe that holds more than 1,000 keys came back with its newest part only: the next one is
  narrowed to at most half, and stops short of the millisecond of the last key seen (the
  `ceiling`), until a probe reaches it; a probe one millisecond wide is read in order, since
  rows of one millisecond come in suffix order, which is the order this listing uses for them;
- rows before every partition's known frontier are known completely, and only those are
  emitted, in order (due time, then suffix, then partition); rows known by key alone are then
  read whole, one query per partition that has any on the page (an exact range of row keys).

A later page starts with one window read whole (not keys alone), sized from what the page before
learnt past its end to hold about three quarters of a page: in a steady listing that window is
the whole page, one query per partition. A page stops when `limit` rows are known, or every
partition reached the end, or after MAX_ROUNDS rounds (each at most one query per partition, and
only to partitions that can still change the page); then it answers what it knows completely,
maybe fewer than `limit` rows, and the continuation resumes from there. The token carries the
position (the last row emitted, or how far everything is known), the end, and each partition's
window width.

The first page also finds the range: the newest row of each partition (when `until` is not
given) and, without `since`, whether any row is older than JOBS_RETENTION_DAYS. Retention
deletes finished jobs older than that, but a redriven job keeps its due time and a job still
queued or running is never deleted, so older rows may remain: if there are, bounds eight times
farther back are probed (at most five more rounds, back to 1970). Each of those probes reads one
row key per partition.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.job import MS_CEILING, utcnow

if TYPE_CHECKING:
    from shared.store import JobStore

Key = tuple[int, str, int]  # an order key: (-inverted ms, suffix, partition)
MAX_ROUNDS = 8  # rounds of windows per page, after the first page's range probes
KEYS_PER_PROBE = 1000  # the most a query returns
MAX_GROWTH = 16  # a probe over empty time grows this much per round
BACK_OFF = 8  # without `since`: how much farther back each probe for older rows looks
MAX_BACK_OFFS = 5
_INF = 100  # a partition number after every partition: "the whole position, every partition"
_END = "~"  # a suffix after every suffix: "the whole millisecond"
_DIGITS = 13


@dataclass
class _Shard:
    """What one page knows of one partition past its position: rows read whole up to `front`,
    then row keys alone up to `known` (order keys, inclusive)."""

    number: int
    width: int  # ms: the next window's width
    front: Key
    known: Key
    rows: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)  # past `front`, in order
    done: bool = False  # nothing more of it up to the end
    ceiling: int | None = None  # a millisecond (inverted) where more than a probe's worth begins


def order_key(row: str, shard: int) -> Key:
    """Oldest first: the due time ascending (the inverted ms descending), then the suffix, then
    the partition."""
    return (-int(row[:_DIGITS]), row[_DIGITS:], shard)


def _ms_key(inverted: int) -> str:
    return f"{inverted:0{_DIGITS}d}"


def _start_of(key: Key) -> Key:
    """The same position, with a whole millisecond written as the start of the next one."""
    return (key[0] + 1, "", -1) if key[1] == _END else key


async def list_oldest(
    store: JobStore,
    prefix: str,
    extra: str,
    limit: int,
    token: dict[str, Any] | None,
    low: str | None,
    high: str | None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page of entities, oldest first, and the state to resume from (None: the end).
    `low`/`high` are the row-key bounds of `until`/`since` (see store.row_range)."""
    partitions = store.partitions
    if token is None:
        start, end = await _range(store, prefix, low, high)
        if start is None or end is None or start < end:
            return [], None
        position: Key = (-start, "", -1)  # before every row of the start's millisecond
        widths = [start - end + 1] * partitions  # the first probe looks at the whole range
    else:
        position, end = (-token["p"][0], token["p"][1], token["p"][2]), token["e"]
        widths = [int(w) for w in token["w"]][:partitions]
        widths += [widths[-1] if widths else 1] * (partitions - len(widths))
    shards = [_Shard(s, max(1, widths[s]), position, position) for s in range(partitions)]
    walk = _Walk(store, prefix, extra, limit, end)

    rounds = 0
    while True:
        live = [s for s in shards if not s.done]
        known = sorted([(k, None) for s in shards for k in s.keys] + [(k, e) for s in shards for k, e in s.rows],
                       key=lambda r: r[0])  # fmt: skip
        bound = min((s.known for s in live), default=None)
        ready = [r for r in known if bound is None or r[0] <= bound]
        if len(ready) >= limit or not live or rounds >= MAX_ROUNDS:
            break
        # Only partitions known less far than the limit-th known row can change the page.
        target = known[limit - 1][0] if len(known) >= limit else None
        asked = [s for s in live if target is None or s.known < target]
        # A later page first reads a window whole, sized from the page before: usually all of it.
        whole = token is not None and rounds == 0
        await asyncio.gather(*(walk.window(s) if whole else walk.probe(s) for s in asked))
        rounds += 1

    emitted = ready[:limit]
    # Rows known by key alone are read whole now: one query per partition that has any here.
    last: dict[int, Key] = {k[2]: k for k, e in emitted if e is None}
    if last:
        await asyncio.gather(*(walk.fetch(shards[n], k) for n, k in last.items()))
        read = {k: e for s in shards for k, e in s.rows}
        cut = next((i for i, (k, _) in enumerate(emitted) if k not in read), len(emitted))
        emitted = [(k, read[k]) for k, _ in emitted[:cut]]
        complete = cut == len(ready[:limit])
    else:
        complete = True
    entities = [e for _, e in emitted]
    if not live and len(ready) <= limit and complete:
        return entities, None
    after = bound  # when everything known up to it was emitted
    if not complete or len(ready) > limit or bound is None:
        after = emitted[-1][0] if emitted else position
    return entities, {"p": [-after[0], after[1], after[2]], "e": end, "w": _next_widths(shards, after, limit)}


@dataclass
class _Walk:
    store: JobStore
    prefix: str
    extra: str
    limit: int
    end: int  # the newest millisecond (inverted) of the listing

    def _condition(self, shard: int, start: Key, lowest: int, last: Key | None = None) -> str:
        """The rows of a partition after `start` in order, through the millisecond `lowest`
        (inverted), and not after `last` if given."""
        start = _start_of(start)
        inverted, suffix, after_shard = -start[0], start[1], start[2]
        p = self.prefix
        top = _ms_key(inverted + 1) if inverted < MS_CEILING else "a"
        condition = f"RowKey ge '{p}{_ms_key(lowest)}' and RowKey lt '{p}{top}'"
        if suffix:  # part of the first millisecond is behind the start
            op = "ge" if shard > after_shard else "gt"
            ms = p + _ms_key(inverted)
            condition += f" and (RowKey lt '{ms}' or RowKey {op} '{ms}{suffix}')"
        if last is not None and last[1] != _END:  # part of the last millisecond is past `last`
            ms = -last[0]
            condition += f" and (RowKey le '{p}{_ms_key(ms)}{last[1]}' or RowKey ge '{p}{_ms_key(ms + 1)}')"
        return condition

    def _span(self, shard: _Shard) -> tuple[int, int] | None:
        """The next window of a partition: (its oldest, its newest millisecond), inverted; None
        when the partition is known to the end."""
        inverted = -_start_of(shard.known)[0]
        if inverted < self.end:
            shard.done = True
            return None
        width = shard.width
        if shard.ceiling is not None and shard.ceiling < inverted:
            width = min(width, inverted - shard.ceiling)  # stop short of it
        return inverted, max(inverted - width + 1, self.end)

    async def probe(self, shard: _Shard) -> None:
        """Row keys alone, of the next window past what the partition is known to."""
        span = self._span(shard)
        if span is None:
            return
        inverted, lowest = span
        condition = self._condition(shard.number, shard.known, lowest)
        rows, more = await self.store.query_page(shard.number, condition, self.extra, KEYS_PER_PROBE, ["RowKey"])
        keys = [order_key(r["RowKey"][len(self.prefix) :], shard.number) for r in rows]
        if not more:
            self._complete(shard, lowest, len(keys))
            shard.keys += keys
        elif lowest == inverted:
            # One millisecond, read in suffix order: what came back is the start of what is left.
            shard.keys += keys
            shard.known = keys[-1] if keys else shard.known
        else:
            self._narrow(shard, inverted, lowest, keys)

    async def window(self, shard: _Shard) -> None:
        """The next window of a partition read whole (a later page's first look)."""
        span = self._span(shard)
        if span is None:
            return
        inverted, lowest = span
        condition = self._condition(shard.number, shard.known, lowest)
        rows, more = await self.store.query_page(shard.number, condition, self.extra, self.limit)
        keyed = [(order_key(r["RowKey"][len(self.prefix) :], shard.number), r) for r in rows]
        if not more:
            self._complete(shard, lowest, len(keyed))
            shard.rows += keyed
            shard.front = shard.known
        elif lowest == inverted:
            shard.rows += keyed
            shard.front = shard.known = keyed[-1][0] if keyed else shard.known
        else:
            self._narrow(shard, inverted, lowest, [k for k, _ in keyed], whole=True)

    async def fetch(self, shard: _Shard, last: Key) -> None:
        """Read whole the rows of a partition known by key alone, up to `last`: an exact range,
        so one query (with room for rows that appeared since the probe)."""
        condition = self._condition(shard.number, shard.front, -last[0], last)
        rows, more = await self.store.query_page(shard.number, condition, self.extra, self.limit)
        if more:  # more than a page appeared meanwhile: leave them to the next page
            return
        shard.rows += [(order_key(r["RowKey"][len(self.prefix) :], shard.number), r) for r in rows]
        shard.front = last
        shard.keys = [k for k in shard.keys if k > last]

    def _complete(self, shard: _Shard, lowest: int, found: int) -> None:
        shard.known = (-lowest, _END, _INF)
        shard.done = lowest == self.end
        if shard.ceiling is not None and shard.ceiling >= lowest:
            shard.ceiling = None  # reached: the next window starts there
        growth = MAX_GROWTH if found < self.limit else 2
        shard.width = min(shard.width * growth, MS_CEILING)

    def _narrow(self, shard: _Shard, inverted: int, lowest: int, seen: list[Key], whole: bool = False) -> None:
        """More in the window than a query returns, and what came back is its newest part: the
        next window stops short of the last one seen and is at most half as wide; after a window
        read whole, about as wide as the part not seen (a probe takes 20 pages' worth)."""
        width = shard.width // 2 if not whole else shard.width
        if seen:
            last = -seen[-1][0]
            shard.ceiling = last
            width = min(width, inverted - last) if last < inverted else 1
        shard.width = max(1, width)


def _next_widths(shards: list[_Shard], after: Key, limit: int) -> list[int]:
    """The next page's first window per partition: from what this page knew past its end, the
    width that should hold about three quarters of a page."""
    out = []
    for s in shards:
        beyond = sum(1 for k, _ in s.rows if k > after) + sum(1 for k in s.keys if k > after)
        span = s.known[0] - after[0] + 1  # ms from the position to how far it is known
        if span <= 1:
            out.append(s.width)
        elif beyond:
            out.append(max(1, span * (limit * 3 // 4) // beyond))
        else:
            out.append(max(s.width, span * 2))
    return out


async def _range(store: JobStore, prefix: str, low: str | None, high: str | None) -> tuple[int | None, int | None]:
    """(start, end) as inverted ms: the oldest and the newest millisecond the listing covers.
    None when the table holds no row in range."""
    end = int(low) if low is not None else None
    start = int(high) - 1 if high is not None else None
    probes: list[Any] = []
    if end is None:
        probes.append(_newest(store, prefix))
    if start is None:
        cutoff = utcnow() - timedelta(days=store.storage.config.retention_days)
        probes.append(_oldest_bound(store, prefix, cutoff, end))
    found = await asyncio.gather(*probes)
    if end is None:
        end = found.pop(0)
        if end is None:
            return None, None
    if start is None:
        start = found.pop(0)
    return start, end


async def _newest(store: JobStore, prefix: str) -> int | None:
    """The newest row's inverted ms over all partitions: the first row of each (one row key)."""
    firsts = await asyncio.gather(*(_first_row(store, s, f"RowKey ge '{prefix}0' and RowKey lt '{prefix}a'")
                                    for s in range(store.partitions)))  # fmt: skip
    keys = [int(r[len(prefix) : len(prefix) + _DIGITS]) for r in firsts if r is not None]
    return min(keys) if keys else None


async def _oldest_bound(store: JobStore, prefix: str, cutoff: datetime, end: int | None) -> int:
    """An inverted ms no row is older than: the retention cutoff if nothing is older (the usual
    case: one row key per partition), else a bound probed eight times farther back each time."""
    now = _ms(utcnow())
    moment = _ms(cutoff)
    if end is not None:  # `until` before the cutoff: start looking from there
        moment = min(moment, MS_CEILING - end)
    shards = list(range(store.partitions))
    for _ in range(MAX_BACK_OFFS + 1):
        if moment <= 0:
            break
        bound = MS_CEILING - moment
        # Row keys of that millisecond end before "~": `gt` skips the whole millisecond.
        condition = f"RowKey gt '{prefix}{_ms_key(bound)}~' and RowKey lt '{prefix}a'"
        older = await asyncio.gather(*(_first_row(store, s, condition) for s in shards))
        shards = [s for s, row in zip(shards, older, strict=True) if row is not None]
        if not shards:
            return bound
        moment = now - (now - moment) * BACK_OFF
    return MS_CEILING  # from 1970


async def _first_row(store: JobStore, shard: int, condition: str) -> str | None:
    rows, _ = await store.query_page(shard, condition, "", 1, select=["RowKey"])
    return rows[0]["RowKey"] if rows else None


def _ms(moment: datetime) -> int:
    return max(0, int(moment.timestamp() * 1000))


def encode(state: dict[str, Any], scope_hash: str) -> str:
    raw = json.dumps({"f": scope_hash, **state}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, scope_hash: str) -> dict[str, Any]:
    """The state in a token this listing issued; ValueError otherwise."""
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    if not isinstance(raw, dict) or not {"f", "p", "e", "w"} <= set(raw):
        raise ValueError("not an oldest-first token")
    if raw["f"] != scope_hash:
        raise LookupError("continuation token belongs to a listing with other filters")
    p, e, w = raw["p"], raw["e"], raw["w"]
    if not (isinstance(p, list) and len(p) == 3 and isinstance(p[0], int) and isinstance(p[1], str)
            and isinstance(p[2], int) and isinstance(e, int) and isinstance(w, list)
            and all(isinstance(x, int) and x >= 1 for x in w) and len(w) <= 100):  # fmt: skip
        raise ValueError("malformed oldest-first token")
    if not (0 <= p[0] <= MS_CEILING and 0 <= e <= MS_CEILING and -1 <= p[2] <= _INF and len(p[1]) <= 10):
        raise ValueError("malformed oldest-first token")
    if p[1] not in ("", _END) and not all(c in "0123456789abcdef" for c in p[1]):
        raise ValueError("malformed oldest-first token")
    return raw
