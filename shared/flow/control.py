"""What the worker asks before it claims a job: may it start now?

- its type is paused: park it (parking.py); it does not run and spends no attempt;
- its type is at its concurrency limit: wait, with the message hidden for a back-off that grows
  with each wait (0.5 s doubling to MAX_WAIT_SECONDS), then ask again; a slot given back meanwhile,
  or a limit raised or removed through the API, wakes waiting jobs sooner (slots.py);
- its type is at its rate limit: wait until the start time reserved for it (rate.py); a start
  far ahead is noted, so a change of the limit through the API wakes the job to ask again;
- otherwise: start, holding a concurrency slot if the type has a limit.
A job that waits keeps its attempt: nothing is claimed until it may start.

A type with no pause and no limit costs no storage call here: the settings are cached.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueMessage

from shared.config import Config
from shared.flow.holds import Holds
from shared.flow.parking import Parking
from shared.flow.rate import NOTED_BEYOND, RESERVATION_SLACK, NewerLimit, RateLimiter, signature
from shared.flow.settings import ALL, FlowSettings, FlowState, TypeFlow
from shared.flow.slots import Slot, Slots
from shared.job import Job, Priority, utcnow
from shared.registry import Registry
from shared.storage import Storage
from shared.store import JobStore

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 10.0
# Settings older than this are read again before a job is parked or made to wait for a slot.
RECHECK_SECONDS = 1.0
WAKE_MARGIN_SECONDS = 0.5  # a changed limit wakes its waiters RECHECK_SECONDS + this after the change
RELEASE_BUDGET_SECONDS = 5.0  # what a resume request spends releasing; the reconciler does the rest
RELEASE_PER_RUN = 2000
# A worker may park a job on a view of the settings this old: keep releasing that long after a resume.
RELEASE_TAIL = timedelta(seconds=30)


@dataclass(frozen=True)
class Start:
    slot: Slot | None = None


@dataclass(frozen=True)
class Wait:
    until: datetime
    reserved: datetime | None = None  # a start time held for this job (a rate limit)
    for_slot: bool = False  # every concurrency slot was held: whoever gives one back may wake it
    noted_under: str | None = None  # the reserved start is far: noted under this limit, woken if it changes
    stale: bool = False  # the rate limit's log was kept under a limit newer than this instance's view

    @property
    def ended_by_a_change(self) -> bool:
        """Whether a view of the settings newer than the one it was decided on could end it."""
        return self.for_slot or self.noted_under is not None or self.stale


@dataclass(frozen=True)
class Park:
    pass


Verdict = Start | Wait | Park


class FlowControl:
    def __init__(self, storage: Storage, store: JobStore, registry: Registry, config: Config) -> None:
        self.config = config
        self.settings = FlowSettings(storage, registry)
        self.slots = Slots(storage)
        self.rate = RateLimiter(storage)
        self.parking = Parking(storage, store)
        self.holds = Holds(storage, self.settings, self.slots.waiters, self.rate.waiters)
        self.registry = registry

    async def admit(
        self, job: Job, reserved: datetime | None, waits: int, lease: timedelta, under: str | None = None
    ) -> Verdict:
        """May this attempt start now? A Start may hold a slot: give it back when the attempt ends.
        `reserved`: the start a rate limit gave it, under the limit `under` if that start was far."""
        flow = await self.settings.for_type(job.type)
        if flow.paused:
            # Parking a job after a resume only delays it; still, look again before doing so.
            flow = self.settings.effective(await self.settings.current(RECHECK_SECONDS), job.type)
        verdict = await self._decide(job, flow, reserved, waits, lease, under)
        if isinstance(verdict, Wait) and verdict.ended_by_a_change:
            # A limit raised or removed reaches a cached view only after CACHE_SECONDS, and the
            # jobs it wakes would wait again: look once more before a wait that a change would
            # end (a read at most once per RECHECK_SECONDS per instance, however many jobs wait).
            fresh = self.settings.effective(await self.settings.current(RECHECK_SECONDS), job.type)
            if fresh != flow:
                verdict = await self._decide(job, fresh, reserved, waits, lease, under)
        return verdict

    async def _decide(
        self, job: Job, flow: TypeFlow, reserved: datetime | None, waits: int, lease: timedelta, under: str | None
    ) -> Verdict:
        if flow.paused:
            return Park()
        if waits and reserved is None and flow.max_concurrency is None:
            await self.slots.forget(job.type, job.id)  # it waited for a slot of a limit since removed
        if not flow.limited:
            return Start()
        now = utcnow()
        if (
            reserved is not None
            and under is not None
            and now < reserved - timedelta(seconds=1)
            and flow.rate_limit is not None
            and under == signature(flow.rate_limit, flow.rate_version)
        ):
            # Back before its start under the same limit: a queue message is hidden 7 days at most.
            # It keeps its place; asking again would put it at the end of the line, and a backlog
            # longer than 7 days would never start. (A changed limit wakes it to ask again.)
            return Wait(reserved, reserved=reserved, noted_under=under)
        slot = None
        if flow.max_concurrency is not None:
            holder, waited = f"{job.id}:{job.attempt}", job.id if waits else None
            slot = await self.slots.take(job.type, flow.max_concurrency, holder, now + lease, now, job_id=waited)
            if slot is None:
                return Wait(now + timedelta(seconds=backoff(waits)), for_slot=True)
        if flow.rate_limit is not None and not (reserved and reserved - timedelta(seconds=1) <= now <= reserved
                                                 + RESERVATION_SLACK):  # fmt: skip
            try:
                start = await self.rate.reserve(job.type, flow.rate_limit, now, flow.rate_version)
            except NewerLimit:  # another instance has read a newer limit: this one's view is stale
                start, stale = None, True
            else:
                stale = False
            if start is None or start > now + timedelta(milliseconds=500):
                if slot is not None:
                    await self.slots.give_back(slot)
                if start is None:  # the rate row was too busy to write, or is newer: ask again soon
                    return Wait(now + timedelta(seconds=backoff(waits)), stale=stale)
                under = signature(flow.rate_limit, flow.rate_version) if start - now > NOTED_BEYOND else None
                return Wait(start, reserved=start, noted_under=under)
        return Start(slot)

    async def limits_changed(
        self, job_type: str, flow: TypeFlow, concurrency: bool, rate: bool, occupancy: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        """After a type's limits were set through the API: wake the waiting jobs the change concerns,
        for about RELEASE_BUDGET_SECONDS; how many were woken, waiting for a slot and for a start.
        `flow`: what applies to the type now.
        - `concurrency` changed: as many jobs waiting for a slot as the new limit has free, or every
          one if it has no limit now (the rest come back after their back-off). `occupancy`: the
          slots held and jobs waiting, if just read.
        - `rate` changed: every job holding a far start under another limit, to ask again under
          this one (the reconciler wakes the rest, and those noted by an instance that had not yet
          read the change)."""
        free = 0
        if concurrency:
            held, waiting = occupancy or await self.slots.occupancy(job_type, utcnow())
            free = waiting if flow.max_concurrency is None else min(flow.max_concurrency - held, waiting)
        rate_waiters = rate and await self.rate.waiters.any_waiting(job_type)
        if free <= 0 and not rate_waiters:
            return 0, 0
        # A woken job may reach an instance whose settings predate the change. One that read them
        # over RECHECK_SECONDS before it makes the job wait reads them again; waking only once that
        # long has passed since the change means one that read them sooner has read the change.
        await asyncio.sleep(RECHECK_SECONDS + WAKE_MARGIN_SECONDS)
        deadline = time.monotonic() + RELEASE_BUDGET_SECONDS
        for_slots = for_rate = 0
        if free > 0:
            every = None if flow.max_concurrency is None else free
            for_slots = await self.slots.wake(job_type, utcnow(), every, RELEASE_BUDGET_SECONDS)
        if rate_waiters:
            left = max(0.5, deadline - time.monotonic())
            for_rate = await self.rate.wake_changed(job_type, flow.rate_limit, flow.rate_version, utcnow(), left)
        return for_slots, for_rate

    async def wait_for_rate(self, job: Job, priority: Priority, sent: QueueMessage, verdict: Wait) -> None:
        """Note a job holding a far start, with the message just sent for it. Only a shortcut: if
        this write fails, the job starts at its reserved time whatever the limit becomes."""
        assert verdict.reserved is not None and verdict.noted_under is not None
        try:
            await self.rate.note(job.type, job.id, priority, sent, verdict.reserved, verdict.noted_under)
        except AzureError as exc:
            log.warning("could not note a job holding a start under a rate limit (%s)", exc)

    async def wake_rate_waiters(self, state: FlowState, seconds: float) -> int:
        """For the types whose rate limit changed lately (none: no call), wake for about `seconds`
        the jobs still holding a start under an older limit: how many were woken. A type is done
        once a pass finds none, RELEASE_TAIL after the change (an instance may note a start under
        the old limit until it reads the change)."""
        woken = 0
        for job_type, override in state.overrides.items():
            if not override.rate_wake_pending:
                continue
            flow = self.settings.effective(state, job_type)
            found = await self.rate.wake_changed(job_type, flow.rate_limit, flow.rate_version, utcnow(), seconds)
            woken += found
            changed = override.rate_changed_at
            if found == 0 and (changed is None or utcnow() - changed > RELEASE_TAIL):
                await self.settings.change(
                    job_type, unless=lambda o, changed=changed: o.rate_changed_at != changed, rate_wake_pending=False
                )
        return woken

    async def renew(self, slot: Slot, until: datetime) -> Slot | None:
        return await self.slots.renew(slot, until)

    async def give_back(self, slot: Slot | None) -> None:
        if slot is not None:
            await self.slots.give_back(slot)

    async def wait_for_slot(self, job: Job, priority: Priority, sent: QueueMessage, back: datetime) -> None:
        """Leave word that the job waits for a slot, with the message just sent for it. Only a
        shortcut: if this write fails, the message still comes back after its back-off."""
        try:
            await self.slots.wait(job.type, job.id, priority, sent.id, sent.pop_receipt, back)
        except AzureError as exc:
            log.warning("could not record a job waiting for a slot (%s); it asks again at %s", exc, back)

    # --- pause and resume --------------------------------------------------------------------

    async def pause(self, job_type: str) -> None:
        await self.settings.change(job_type, paused=True)

    async def resume(self, job_type: str) -> int:
        """Resume a type (or ALL) and release what was parked for a few seconds; how many jobs
        were released (the reconciler releases the rest)."""
        await self.settings.change(job_type, paused=False, release_pending=True, resumed_at=utcnow())
        return await self.release(await self.settings.read(), RELEASE_BUDGET_SECONDS, RELEASE_PER_RUN)

    async def release(self, state: FlowState, budget_seconds: float, limit: int) -> int:
        """Release the parked jobs of the types resumed and not yet released (none: no call).
        A type is done once a pass finds nothing left, RELEASE_TAIL after its resume: a worker
        with an older view of the settings may park one of its jobs until then."""
        pending = {t: o for t, o in state.overrides.items() if o.release_pending and not o.paused}
        if not pending:
            return 0
        types = self.registry.types if ALL in pending else sorted(pending)
        released, complete = await self.parking.release(
            [t for t in types if not state.paused(t)], utcnow(), budget_seconds, limit
        )
        now = utcnow()
        for job_type, override in pending.items():
            if complete and override.resumed_at and now - override.resumed_at > RELEASE_TAIL:
                resumed = override.resumed_at
                await self.settings.change(
                    job_type, unless=lambda o, resumed=resumed: o.resumed_at != resumed, release_pending=False
                )
        return released


def backoff(waits: int) -> float:
    """Seconds before a job over a concurrency limit asks again: 0.5 s doubling to 10 s, +-50 %.
    Wide jitter spreads the waiters' returns, so a slot given back is soon taken again: with
    +-20 % they came back in bunches and a limit of 2 drained 50 short jobs a third slower."""
    return min(MAX_WAIT_SECONDS, 0.5 * 2**waits) * random.uniform(0.5, 1.5)
