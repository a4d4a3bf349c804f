"""Queue triggers with the Functions host's semantics (host.json `extensions.queues`):

- receive up to `batchSize` messages, run them concurrently, fetch the next batch when the number
  still running falls to `newBatchThreshold`;
- when a receive finds nothing, wait before the next one, doubling (with jitter) from 100 ms up
  to `maxPollingInterval`; back to fast polling as soon as messages arrive;
- a message being processed stays hidden (10 minutes, renewed while the function runs);
- success deletes it; a failure makes it visible again after `visibilityTimeout`, and once it has
  been dequeued `maxDequeueCount` times it moves to `<queue>-poison`, body unchanged;
- bodies are decoded per `messageEncoding` (base64 or none); one that is not valid base64 goes
  straight to the poison queue, as on the real host.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import random
from typing import Any

import azure.functions.queue as func_queue
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue.aio import QueueClient

from devhost.app_loader import Function
from devhost.invoker import Invoker
from devhost.settings import QueueOptions, resolve
from devhost.storage import connection_string

log = logging.getLogger("devhost.queue")

IN_FLIGHT_VISIBILITY = 600  # seconds, as the real host
RENEW_EVERY = IN_FLIGHT_VISIBILITY / 2
MIN_POLL_DELAY = 0.1


class QueueListener:
    def __init__(self, function: Function, options: QueueOptions, invoke: Invoker) -> None:
        self.function = function
        self.options = options
        self.invoke = invoke
        self.queue_name = resolve(function.trigger.queue_name).lower()
        conn = connection_string(resolve(function.trigger.connection or "AzureWebJobsStorage"))
        self.queue = QueueClient.from_connection_string(conn, self.queue_name)
        self.poison = QueueClient.from_connection_string(conn, f"{self.queue_name}-poison")
        self.in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create the queue and its poison queue if missing, as the host does when a listener starts."""
        await self._ensure_queues()

    async def run(self, stop: asyncio.Event) -> None:
        delay = MIN_POLL_DELAY
        while not stop.is_set():
            if len(self.in_flight) > self.options.new_batch_threshold:
                await asyncio.wait(self.in_flight, return_when=asyncio.FIRST_COMPLETED, timeout=1)
                continue
            try:
                messages = await self._receive()
            except Exception as exc:  # noqa: BLE001 - storage may be down: keep polling, slowly
                log.warning("receive from %s failed: %s", self.queue_name, str(exc).splitlines()[0])
                messages = []
            if not messages:
                await _sleep_or_stop(stop, delay)
                delay = min(self.options.max_polling_interval, delay * 2 * random.uniform(0.8, 1.2))
                continue
            delay = MIN_POLL_DELAY
            for message in messages:
                task = asyncio.create_task(self._process(message))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    async def _receive(self) -> list[Any]:
        """One receive call: the first page only. (With `max_messages` the SDK keeps asking until
        it has that many or a page comes back empty, which costs a second call per poll.)"""
        pager = self.queue.receive_messages(
            messages_per_page=self.options.batch_size, visibility_timeout=IN_FLIGHT_VISIBILITY
        ).by_page()
        async for page in pager:
            return [m async for m in page]
        return []

    async def drain(self, timeout: float) -> None:
        if self.in_flight:
            await asyncio.wait(self.in_flight, timeout=timeout)

    async def close(self) -> None:
        await self.queue.close()
        await self.poison.close()

    async def _ensure_queues(self) -> None:
        for client in (self.queue, self.poison):
            while True:
                try:
                    await client.create_queue()
                except ResourceExistsError:
                    pass
                except Exception as exc:  # noqa: BLE001 - storage not up yet
                    log.warning("cannot create queue %s yet: %s", client.queue_name, str(exc).splitlines()[0])
                    await asyncio.sleep(1)
                    continue
                break

    async def _process(self, message: Any) -> None:
        raw: str = message.content
        if message.dequeue_count > self.options.max_dequeue_count:
            await self._to_poison(message, raw, "dequeue count over maxDequeueCount before processing")
            return
        try:
            body = base64.b64decode(raw, validate=True) if self.options.message_encoding == "base64" else raw.encode()
        except (binascii.Error, ValueError):
            await self._to_poison(message, raw, "not valid base64 (host.json messageEncoding is base64)")
            return
        msg = func_queue.QueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count, expiration_time=message.expires_on,
            insertion_time=message.inserted_on, time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )  # fmt: skip
        state = {"pop_receipt": message.pop_receipt}
        renewer = asyncio.create_task(self._keep_hidden(message, state))
        try:
            await self.invoke(self.function, msg)
        except Exception:
            renewer.cancel()
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, dequeue count %d)",
                self.function.name, message.id, message.dequeue_count,
            )  # fmt: skip
            await self._after_failure(message, raw, state["pop_receipt"])
            return
        renewer.cancel()
        try:
            await self.queue.delete_message(message.id, state["pop_receipt"])
        except Exception as exc:  # noqa: BLE001 - e.g. it became visible and was taken again
            log.warning("could not delete message %s: %s", message.id, str(exc).splitlines()[0])

    async def _keep_hidden(self, message: Any, state: dict[str, str]) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                await asyncio.sleep(RENEW_EVERY)
                updated = await self.queue.update_message(
                    message.id, state["pop_receipt"], visibility_timeout=IN_FLIGHT_VISIBILITY
                )
                state["pop_receipt"] = updated.pop_receipt

    async def _after_failure(self, message: Any, raw: str, pop_receipt: str) -> None:
        try:
            if message.dequeue_count >= self.options.max_dequeue_count:
                await self._to_poison(message, raw, f"failed {message.dequeue_count} times", pop_receipt)
            else:
                await self.queue.update_message(
                    message.id, pop_receipt, visibility_timeout=int(self.options.visibility_timeout)
                )
        except Exception as exc:  # noqa: BLE001 - it will reappear after the in-flight visibility
            log.warning("could not release message %s: %s", message.id, str(exc).splitlines()[0])

    async def _to_poison(self, message: Any, raw: str, why: str, pop_receipt: str | None = None) -> None:
        log.error("Moving message %s to queue '%s-poison': %s", message.id, self.queue_name, why)
        await self.poison.send_message(raw)
        await self.queue.delete_message(message.id, pop_receipt or message.pop_receipt)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
