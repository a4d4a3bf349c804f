"""Timer triggers: six-field NCRONTAB schedules (`sec min hour day month day-of-week`),
`runOnStartup`, and one instance at a time across hosts, held by a blob lease as on Azure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import UTC, datetime

import azure.functions.timer as func_timer
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobClient, BlobLeaseClient, ContainerClient
from croniter import croniter

from devhost.app_loader import Function
from devhost.invoker import Invoker
from devhost.settings import resolve
from devhost.storage import connection_string

log = logging.getLogger("devhost.timer")

LEASE_SECONDS = 15
RENEW_SECONDS = 5
LOCK_CONTAINER = "azure-webjobs-hosts"


def to_croniter(ncrontab: str) -> str:
    """croniter takes the seconds field last; NCRONTAB puts it first."""
    fields = ncrontab.split()
    if len(fields) != 6:
        raise ValueError(f"NCRONTAB needs six fields (seconds first), got {ncrontab!r}")
    return " ".join(fields[1:] + fields[:1])


class TimerRunner:
    def __init__(self, function: Function, invoke: Invoker, host_id: str) -> None:
        self.function = function
        self.invoke = invoke
        self.schedule = to_croniter(resolve(function.trigger.schedule))
        croniter(self.schedule)  # fail at start on a bad schedule
        conn = connection_string("AzureWebJobsStorage")
        self.container = ContainerClient.from_connection_string(conn, LOCK_CONTAINER)
        self.blob = BlobClient.from_connection_string(conn, LOCK_CONTAINER, f"locks/{host_id}/{function.name}.listener")
        self.lease: BlobLeaseClient | None = None

    async def run(self, stop: asyncio.Event) -> None:
        first = True
        while await self._hold_lock(stop):
            if first and getattr(self.function.trigger, "run_on_startup", False):
                await self._fire(past_due=False)
            first = False
            await self._run_while_holding(stop)

    async def _run_while_holding(self, stop: asyncio.Event) -> None:
        renewer = asyncio.create_task(self._renew(stop))
        try:
            times = croniter(self.schedule, datetime.now(UTC))
            while not stop.is_set() and self.lease is not None:
                due = times.get_next(datetime)
                wait = (due - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=wait)
                    if stop.is_set():
                        break
                late = (datetime.now(UTC) - due).total_seconds()
                await self._fire(past_due=late > 1)
        finally:
            renewer.cancel()
            await self._release()

    async def _fire(self, past_due: bool) -> None:
        try:
            await self.invoke(self.function, func_timer.TimerRequest(past_due=past_due))
            log.info("Executed 'Functions.%s' (Succeeded)", self.function.name)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", self.function.name)

    async def _hold_lock(self, stop: asyncio.Event) -> bool:
        """Wait until this instance holds the timer's lock (or the host stops)."""
        while not stop.is_set():
            try:
                await self._ensure_blob()
                lease = BlobLeaseClient(self.blob)
                await lease.acquire(lease_duration=LEASE_SECONDS)
                self.lease = lease
                return True
            except HttpResponseError as exc:
                if exc.status_code != 409:  # 409: another instance holds it
                    log.warning("timer lock for %s: %s", self.function.name, str(exc).splitlines()[0])
            except Exception as exc:  # noqa: BLE001 - storage may be down
                log.warning("timer lock for %s: %s", self.function.name, str(exc).splitlines()[0])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=RENEW_SECONDS)
        return False

    async def _renew(self, stop: asyncio.Event) -> None:
        while not stop.is_set() and self.lease is not None:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self.lease.renew()
            except Exception as exc:  # noqa: BLE001
                log.warning("lost the timer lock for %s: %s", self.function.name, str(exc).splitlines()[0])
                self.lease = None

    async def _ensure_blob(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self.container.create_container()
        with contextlib.suppress(ResourceExistsError, HttpResponseError):
            await self.blob.upload_blob(b"", overwrite=False)

    async def _release(self) -> None:
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.release()
            self.lease = None

    async def close(self) -> None:
        await self.blob.close()
        await self.container.close()


def host_id(app_dir: str) -> str:
    configured = os.environ.get("AzureFunctionsWebHost__hostid")
    if configured:
        return configured.lower()
    return (
        "".join(c for c in os.path.basename(os.path.abspath(app_dir)).lower() if c.isalnum() or c == "-")[:32] or "app"
    )
