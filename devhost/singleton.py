"""A listener lock as the Functions host takes one for a timer: a lease on the blob
`locks/<hostId>/Host.Functions.<name>.Listener` in the `azure-webjobs-hosts` container, held and
renewed by one instance; when the holder dies the lease lapses and another instance takes it."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import time
import uuid

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobLeaseClient, ContainerClient

log = logging.getLogger("devhost.singleton")

LOCK_CONTAINER = "azure-webjobs-hosts"
LEASE_SECONDS = 15  # the shortest blob lease; the host uses 15 s in development, 60 s in Azure
RENEW_SECONDS = 5
RETRY_SECONDS = 2  # how often a waiting instance tries to take the lock (the host: every minute)


def lock_blob_name(host_id: str, function_name: str) -> str:
    return f"locks/{host_id}/Host.Functions.{function_name}.Listener"


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))


class BlobLock:
    def __init__(self, container: ContainerClient, blob_name: str) -> None:
        self.container = container
        self.blob = container.get_blob_client(blob_name)
        self.name = blob_name
        # One lease id per process: re-acquiring a lease this process still holds succeeds at once.
        self.lease = BlobLeaseClient(self.blob, lease_id=str(uuid.uuid4()))
        self.lost = asyncio.Event()
        self.held = False
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this instance holds the lock (True) or the host stops (False)."""
        waiting_logged = False
        while not stop.is_set():
            try:
                await self._try_acquire()
                self.held = True
                self.lost.clear()
                self._renewer = asyncio.create_task(self._renew())
                return True
            except HttpResponseError as exc:
                if exc.status_code == 409:  # another instance holds it
                    if not waiting_logged:
                        log.info("Lock %s is held by another instance; waiting for it", self.name)
                        waiting_logged = True
                else:
                    log.warning("Cannot take lock %s: %s", self.name, _first_line(exc))
            except Exception as exc:  # noqa: BLE001 - storage down: keep trying
                log.warning("Cannot take lock %s: %s", self.name, _first_line(exc))
            await sleep_or_stop(stop, RETRY_SECONDS)
        return False

    async def _try_acquire(self) -> None:
        try:
            await self.lease.acquire(lease_duration=LEASE_SECONDS)
        except ResourceNotFoundError:  # first use: create the container and the empty lock blob
            with contextlib.suppress(ResourceExistsError):
                await self.container.create_container()
            with contextlib.suppress(ResourceExistsError):
                await self.blob.upload_blob(b"", overwrite=False)
            await self.lease.acquire(lease_duration=LEASE_SECONDS)

    async def _renew(self) -> None:
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self.lease.renew()
                last_ok = time.monotonic()
                continue
            except HttpResponseError as exc:
                gone = exc.status_code in (404, 409)  # the blob is gone or someone else has the lease
                reason = _first_line(exc)
            except Exception as exc:  # noqa: BLE001 - keep trying while the lease may still be ours
                gone = False
                reason = _first_line(exc)
            if gone or time.monotonic() - last_ok > LEASE_SECONDS - RENEW_SECONDS:
                log.warning("Lost lock %s: %s", self.name, reason)
                self.held = False
                self.lost.set()
                return
            log.warning("Renewing lock %s failed (will retry): %s", self.name, reason)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self.held:
            self.held = False
            with contextlib.suppress(Exception):
                await self.lease.release()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def host_id(app_dir: str, environ: dict[str, str] | None = None) -> str:
    """The id that scopes locks in shared storage: `AzureFunctionsWebHost__hostid` when set, the site
    name in Azure, else the app folder's name plus a hash of its path (instances of one app folder
    share it; two apps in different folders do not)."""
    env = os.environ if environ is None else environ
    configured = env.get("AzureFunctionsWebHost__hostid") or env.get("WEBSITE_SITE_NAME")
    if configured:
        return configured.lower()[:32].strip("-")
    path = os.path.abspath(app_dir)
    name = re.sub(r"[^a-z0-9]+", "-", os.path.basename(path).lower()).strip("-") or "app"
    digest = hashlib.sha256(path.encode()).hexdigest()[:8]
    return f"{name[:23].strip('-')}-{digest}"
