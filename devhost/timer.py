"""Timer triggers: NCRONTAB schedules (six fields, seconds first, or five without seconds) or a
constant interval ("00:00:30"), `runOnStartup`, and one instance at a time across hosts (a blob
lease, see singleton.py). Schedules run in the local time zone, or WEBSITE_TIME_ZONE when set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import azure.functions.timer as func_timer
from croniter import croniter

from devhost.app_loader import Function
from devhost.invoker import Invoker
from devhost.settings import SettingsError, parse_timespan, resolve
from devhost.singleton import BlobLock, sleep_or_stop

log = logging.getLogger("devhost.timer")

PAST_DUE_SECONDS = 1.0  # an invocation this late counts as past due


def to_croniter(ncrontab: str) -> str:
    """croniter takes the seconds field last; NCRONTAB puts it first. Five fields mean no seconds."""
    fields = ncrontab.split()
    if len(fields) == 5:
        return " ".join(fields)
    if len(fields) != 6:
        raise SettingsError(f"NCRONTAB needs six fields (seconds first) or five, got {ncrontab!r}")
    return " ".join(fields[1:] + fields[:1])


@dataclass(frozen=True)
class Schedule:
    """When a timer fires: a cron expression (in croniter's order) or a constant interval."""

    expression: str
    cron: str | None = None
    interval: timedelta | None = None

    def next_after(self, moment: datetime) -> datetime:
        if self.interval is not None:
            return moment + self.interval
        assert self.cron is not None
        # NCrontab requires both day-of-month and day-of-week to match (cron ORs them).
        return croniter(self.cron, moment, day_or=False).get_next(datetime)


def parse_schedule(expression: str) -> Schedule:
    """A schedule as the timer extension reads one: NCRONTAB first, then a timespan."""
    text = expression.strip()
    if len(text.split()) in (5, 6):
        cron = to_croniter(text)
        if not croniter.is_valid(cron):
            raise SettingsError(f"not a valid NCRONTAB expression: {expression!r}")
        return Schedule(expression, cron=cron)
    if re.fullmatch(r"(\d+\.)?\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?", text):
        seconds = parse_timespan(text, 0)
        if seconds <= 0:
            raise SettingsError(f"a timer interval must be positive: {expression!r}")
        return Schedule(expression, interval=timedelta(seconds=seconds))
    raise SettingsError(f"the schedule {expression!r} is neither an NCRONTAB expression nor a timespan")


def schedule_zone() -> tzinfo:
    name = os.environ.get("WEBSITE_TIME_ZONE") or os.environ.get("TZ")
    if name:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(name)
    zone = datetime.now().astimezone().tzinfo
    assert zone is not None
    return zone


class TimerRunner:
    """Fires one timer function while this instance holds its lock."""

    def __init__(self, function: Function, invoke: Invoker, lock: BlobLock) -> None:
        self.function = function
        self.invoke = invoke
        self.schedule = parse_schedule(resolve(function.trigger.schedule))
        self.run_on_startup = bool(getattr(function.trigger, "run_on_startup", False))
        self.lock = lock
        self.zone = schedule_zone()
        self._task: asyncio.Task[None] | None = None

    def start(self, stop: asyncio.Event) -> None:
        self._task = asyncio.create_task(self._run(stop), name=f"timer {self.function.name}")

    async def stop(self, timeout: float) -> None:
        """Let a running invocation finish (bounded), then release the lock."""
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=max(0.0, timeout))
        if not done:
            log.warning("Timer '%s' still running at shutdown; abandoning it", self.function.name)
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self, stop: asyncio.Event) -> None:
        while await self.lock.acquire(stop):
            log.info("Timer '%s' runs on this instance (schedule %s)", self.function.name, self.schedule.expression)
            try:
                # The host starts a timer's listener once it holds the lock; runOnStartup fires then.
                if self.run_on_startup and not stop.is_set():
                    await self._fire(past_due=False, reason="Timer fired at startup")
                await self._loop(stop)
            finally:
                await self.lock.release()

    async def _loop(self, stop: asyncio.Event) -> None:
        last_due = datetime.now(self.zone)
        while not stop.is_set() and not self.lock.lost.is_set():
            now = datetime.now(self.zone)
            due = self.schedule.next_after(max(now, last_due))
            await _wait_any((stop, self.lock.lost), (due - datetime.now(self.zone)).total_seconds())
            if stop.is_set() or self.lock.lost.is_set():
                return
            now = datetime.now(self.zone)
            if now < due:  # woke a little early: wait the rest
                await sleep_or_stop(stop, (due - now).total_seconds())
                if stop.is_set():
                    return
            last_due = due
            late = (datetime.now(self.zone) - due).total_seconds()
            await self._fire(past_due=late > PAST_DUE_SECONDS, reason=f"Timer fired at {due.isoformat()}")

    async def _fire(self, past_due: bool, reason: str) -> None:
        with contextlib.suppress(Exception):  # the invoker logged it; a timer keeps its schedule
            await self.invoke(self.function, func_timer.TimerRequest(past_due=past_due), reason=reason)


async def _wait_any(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
