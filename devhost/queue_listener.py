"""Queue triggers with the Functions host's semantics (host.json `extensions.queues`):

- receive up to `batchSize` messages (hidden for 10 minutes), run them concurrently, and fetch the
  next batch when the number still running falls to `newBatchThreshold`;
- when a receive finds nothing, wait before the next one, from 100 ms doubling (with jitter) up to
  `maxPollingInterval`; back to fast polling as soon as messages arrive;
- while a function runs, its message's visibility is renewed halfway through the 10 minutes;
- success deletes the message; a failure makes it visible again after `visibilityTimeout`, and
  once it has been dequeued `maxDequeueCount` times it moves to `<queue>-poison` (created on
  first use) with its body as received;
- bodies are decoded per `messageEncoding` (base64 or none); one that is not valid base64 goes
  straight to the poison queue, as on the real host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import random
import re
from typing import Any

import azure.functions.queue as func_queue
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from devhost.app_loader import Function
from devhost.invoker import Invoker
from devhost.settings import QueueOptions, SettingsError, connection_string, resolve
from devhost.singleton import sleep_or_stop
from devhost.storage import StorageClients

log = logging.getLogger("devhost.queue")

MIN_POLL_DELAY = 0.1  # the host's QueuePollingIntervals.Minimum
IN_FLIGHT_VISIBILITY = 600  # seconds a received message stays hidden, renewed while its function runs
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


def in_flight_visibility() -> int:
    """10 minutes as on the real host; DEVHOST_MESSAGE_VISIBILITY_SECONDS shortens it (tests)."""
    return max(1, int(os.environ.get("DEVHOST_MESSAGE_VISIBILITY_SECONDS") or IN_FLIGHT_VISIBILITY))


def next_delay(delay: float, maximum: float) -> float:
    """Idle back-off: double with +-20% jitter, within [MIN_POLL_DELAY, maximum]."""
    return max(MIN_POLL_DELAY, min(maximum, delay * 2 * random.uniform(0.8, 1.2)))


def decode_body(raw: str, encoding: str) -> bytes | None:
    """The message body as the function sees it; None when it is not valid base64."""
    if encoding == "none":
        return raw.encode("utf-8")
    try:
        return base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _is_pop_receipt_mismatch(exc: HttpResponseError) -> bool:
    return exc.status_code == 400 and "popreceipt" in str(getattr(exc, "error_code", "") or exc).lower()


class _Visibility:
    """Keeps one message hidden while its function runs, renewing halfway through the timeout, and
    tracks the newest pop receipt (each update changes it). Until the first renewal is due there is
    only a timer, no task: most invocations end long before it."""

    def __init__(self, queue: QueueClient, message: Any, seconds: int) -> None:
        self.queue = queue
        self.message_id = message.id
        self.pop_receipt: str = message.pop_receipt
        self.seconds = seconds
        self._done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(seconds / 2, self._begin)

    def _begin(self) -> None:
        self._timer = None
        if not self._done.is_set():
            self._task = asyncio.create_task(self._keep())

    async def _keep(self) -> None:
        wait = 0.0  # the first wait was the timer's
        while True:
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._done.wait(), timeout=wait)
                    return
            try:
                updated = await self.queue.update_message(
                    self.message_id, self.pop_receipt, visibility_timeout=self.seconds
                )
                self.pop_receipt = updated.pop_receipt
                wait = self.seconds / 2
                log.debug("Message %s: visibility renewed for %d s", self.message_id, self.seconds)
                continue
            except ResourceNotFoundError:
                return  # deleted by someone else
            except HttpResponseError as exc:
                if _is_pop_receipt_mismatch(exc):
                    return
                reason = _first_line(exc)
            except Exception as exc:  # noqa: BLE001 - storage blip: try again soon
                reason = _first_line(exc)
            # Retry sooner while the message is still hidden, as the host does.
            wait = max(1.0, (wait or self.seconds / 2) / 2)
            log.warning("Renewing visibility of message %s failed (retry in %.0f s): %s", self.message_id, wait, reason)

    async def stop(self) -> str:
        """Stop renewing (after an update in progress completes) and return the current pop receipt."""
        self._done.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            await self._task
        return self.pop_receipt


class QueueListener:
    def __init__(self, function: Function, options: QueueOptions, invoke: Invoker, clients: StorageClients) -> None:
        self.function = function
        self.options = options
        self.invoke = invoke
        self.queue_name = resolve(function.trigger.queue_name).lower()
        if not _QUEUE_NAME.match(self.queue_name):
            raise SettingsError(f"invalid queue name {self.queue_name!r} (3-63 of a-z, 0-9 and single '-')")
        conn = connection_string(resolve(function.trigger.connection or "AzureWebJobsStorage"))
        self.queue = clients.queue(conn, self.queue_name)
        self.poison = clients.queue(conn, f"{self.queue_name}-poison")
        self.visibility = in_flight_visibility()
        self.in_flight: set[asyncio.Task[None]] = set()
        self._room: asyncio.Future[None] | None = None  # set once in_flight falls to newBatchThreshold
        self._poller: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self, stop: asyncio.Event) -> None:
        """Create the queue if missing (as the host does when the listener starts), then poll."""
        await self._create_queue(stop)
        self._poller = asyncio.create_task(self._poll(stop), name=f"poll {self.queue_name}")

    async def stop(self, timeout: float) -> None:
        """Stop polling, let running invocations finish within `timeout`, abandon the rest (their
        messages stay hidden until the in-flight visibility lapses, as after a host crash)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._poller is not None:
            done, _ = await asyncio.wait({self._poller}, timeout=min(2.0, timeout))
            if not done:
                self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.in_flight:
            await asyncio.wait(set(self.in_flight), timeout=max(0.0, deadline - loop.time()))
        left = [t for t in self.in_flight if not t.done()]
        if left:
            log.warning("%d '%s' invocations still running at shutdown; abandoning them", len(left), self.function.name)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def _create_queue(self, stop: asyncio.Event) -> None:
        warned = False
        while not stop.is_set():
            try:
                await self.queue.create_queue()
                return
            except ResourceExistsError:
                return
            except Exception as exc:  # noqa: BLE001 - storage not up yet
                if not warned:
                    log.warning("Cannot create queue '%s' yet (will retry): %s", self.queue_name, _first_line(exc))
                    warned = True
                await sleep_or_stop(stop, 1.0)

    async def _poll(self, stop: asyncio.Event) -> None:
        delay = MIN_POLL_DELAY
        while not stop.is_set():
            if len(self.in_flight) > self.options.new_batch_threshold:
                # Woken once, when enough have finished (not at every completion: waiting on every
                # task in flight cost a callback per task per finished message); within 1 s to
                # notice a stop.
                self._room = asyncio.get_running_loop().create_future()
                await asyncio.wait((self._room,), timeout=1.0)
                continue
            messages = await self._receive(stop)
            if stop.is_set():
                await self._release_unstarted(messages)
                return
            if not messages:
                await sleep_or_stop(stop, delay)
                delay = next_delay(delay, self.options.max_polling_interval)
                continue
            delay = MIN_POLL_DELAY
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self.in_flight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        room = self._room
        if room is not None and not room.done() and len(self.in_flight) <= self.options.new_batch_threshold:
            room.set_result(None)

    async def _receive(self, stop: asyncio.Event) -> list[Any]:
        """One receive call (the first page only: with `max_messages` the SDK keeps asking until it
        has that many or a page comes back empty, which costs a second call per poll)."""
        try:
            pager = self.queue.receive_messages(
                messages_per_page=self.options.batch_size, visibility_timeout=self.visibility
            ).by_page()
            messages: list[Any] = []
            async for page in pager:
                messages = [m async for m in page]
                break
        except ResourceNotFoundError:
            log.warning("Queue '%s' does not exist; creating it", self.queue_name)
            await self._create_queue(stop)
            return []
        except Exception as exc:  # noqa: BLE001 - storage may be down: keep polling, backing off
            if not self._failing:
                log.warning("Receiving from queue '%s' failed (will retry): %s", self.queue_name, _first_line(exc))
            self._failing = True
            return []
        if self._failing:
            log.info("Receiving from queue '%s' works again", self.queue_name)
            self._failing = False
        return messages

    async def _release_unstarted(self, messages: list[Any]) -> None:
        """Messages received while the host stops: make them visible again for another instance."""
        for message in messages:
            with contextlib.suppress(Exception):
                await self.queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)

    async def _process(self, message: Any) -> None:
        try:
            await self._handle(message)
        except Exception:
            log.exception("Handling message %s from queue '%s' failed", message.id, self.queue_name)

    async def _handle(self, message: Any) -> None:
        raw: str = message.content or ""
        max_count = self.options.max_dequeue_count
        if message.dequeue_count > max_count:
            why = f"it was dequeued {message.dequeue_count} times (maxDequeueCount {max_count})"
            await self._to_poison(message, raw, message.pop_receipt, why)
            return
        body = decode_body(raw, self.options.message_encoding)
        if body is None:
            why = "its body is not valid base64 (host.json messageEncoding is base64)"
            await self._to_poison(message, raw, message.pop_receipt, why)
            return
        msg = func_queue.QueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count, expiration_time=message.expires_on,
            insertion_time=message.inserted_on, time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )  # fmt: skip
        visibility = _Visibility(self.queue, message, self.visibility)
        succeeded = False
        try:
            await self.invoke(self.function, msg, reason=f"New queue message detected on '{self.queue_name}'.")
            succeeded = True
        except Exception:  # noqa: BLE001 - the invoker logged it with its traceback
            pass
        finally:
            pop_receipt = await visibility.stop()
        if succeeded:
            await self._delete(message.id, pop_receipt)
        elif message.dequeue_count >= max_count:
            await self._to_poison(message, raw, pop_receipt, f"it has reached maxDequeueCount of {max_count}")
        else:
            await self._release_after_failure(message.id, pop_receipt)

    async def _delete(self, message_id: str, pop_receipt: str) -> None:
        try:
            await self.queue.delete_message(message_id, pop_receipt)
        except ResourceNotFoundError:
            log.debug("Message %s was already gone", message_id)
        except HttpResponseError as exc:
            if not _is_pop_receipt_mismatch(exc):
                raise
            log.debug("Message %s was taken by another receiver; not deleting it", message_id)

    async def _release_after_failure(self, message_id: str, pop_receipt: str) -> None:
        """Visible again after visibilityTimeout (the REST API takes whole seconds)."""
        try:
            await self.queue.update_message(
                message_id, pop_receipt, visibility_timeout=int(self.options.visibility_timeout)
            )
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:
            if not _is_pop_receipt_mismatch(exc):
                raise

    async def _to_poison(self, message: Any, raw: str, pop_receipt: str, why: str) -> None:
        log.warning("Message %s moves to queue '%s-poison': %s", message.id, self.queue_name, why)
        try:
            await self.poison.send_message(raw)
        except ResourceNotFoundError:  # the host creates the poison queue on first use
            with contextlib.suppress(ResourceExistsError):
                await self.poison.create_queue()
            await self.poison.send_message(raw)
        await self._delete(message.id, pop_receipt)
