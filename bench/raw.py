"""The ceiling: the storage calls one job costs, made by the SDK with no app in between, in three
shapes.

- `raw_ceiling_async`: one process submits (insert, put) from `concurrency` tasks and works the
  queue (receive in batches, conditional claim, conditional result, delete), as the pipeline's
  `bench.pipeline` compares against.
- `python -m bench.raw --port P`: the same calls with the submit behind a bare aiohttp endpoint in
  a process of its own, as a host has it, and submitted over HTTP by the bench's client. What
  it reaches against `raw_ceiling_async` is what the HTTP hop alone costs on the same cores; the
  pipeline against it is what the app and the local host cost beyond that hop.
- `raw_ceiling`: the same calls with the sync clients from threads, for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from shared.storage import transport_options

BATCH = 16  # host.json's queues.batchSize and newBatchThreshold, unless the app's host.json says otherwise
NEW_BATCH_THRESHOLD = 8
NO_CONTENT = "return-no-content"  # the insert as the app makes it: only the ETag comes back
PAYLOAD = json.dumps({"n": 1})


# One job's rows and message, the same for the sync and async ceilings.
def keys(i: int) -> dict[str, str]:
    return {"PartitionKey": f"p{i % 4:02d}", "RowKey": f"{i:023d}"}


def queued(i: int) -> dict[str, Any]:
    return {**keys(i), "status": "queued", "payload": PAYLOAD, "attempt": 1}


def message(i: int, etag: str) -> str:
    return json.dumps({"id": i, "attempt": 1, "etag": etag, "payload": PAYLOAD})


def running(i: int) -> dict[str, Any]:
    return {**keys(i), "status": "running"}


def succeeded(i: int) -> dict[str, Any]:
    return {**keys(i), "status": "succeeded", "result": PAYLOAD}


IF_MATCH = {"mode": UpdateMode.MERGE, "match_condition": MatchConditions.IfNotModified}


class RawJobs:
    """One job's calls on one table and queue, and a receive loop that fetches `batch` more
    messages whenever no more than `threshold` are in flight, as the host does."""

    def __init__(self, conn: str, name: str, batch: int, threshold: int) -> None:
        options = transport_options(os.environ)  # the same HTTP transport settings as the app's clients
        self.table = TableClient.from_connection_string(conn, name, **options)
        self.queue = QueueClient.from_connection_string(conn, name, **options)
        self.batch, self.threshold = batch, threshold
        self.completed = 0
        self.last_done = 0.0  # time.time() of the last completion

    async def __aenter__(self) -> RawJobs:
        await self.table.create_table()
        await self.queue.create_queue()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.table.delete_table()
        await self.queue.delete_queue()
        await self.table.close()
        await self.queue.close()

    async def submit(self, i: int) -> None:
        meta = await self.table.create_entity(queued(i), response_preference=NO_CONTENT)
        await self.queue.send_message(message(i, meta["etag"]))

    async def work(self, received: Any) -> None:
        body = json.loads(received.content)
        meta = await self.table.update_entity(running(body["id"]), etag=body["etag"], **IF_MATCH)
        await self.table.update_entity(succeeded(body["id"]), etag=meta["etag"], **IF_MATCH)
        await self.queue.delete_message(received)
        self.completed += 1
        self.last_done = time.time()

    async def drain(self, until: int | None = None, timeout: float = 300) -> None:
        """Work the queue until `until` jobs are done (forever if None)."""
        in_flight: set[asyncio.Task] = set()
        deadline = time.monotonic() + timeout
        while until is None or self.completed < until:
            if until is not None and time.monotonic() > deadline:
                raise RuntimeError("raw ceiling run did not finish in time")
            for task in [t for t in in_flight if t.done()]:
                task.result()
            in_flight = {t for t in in_flight if not t.done()}
            if len(in_flight) > self.threshold:
                await asyncio.sleep(0.002)
                continue
            # Hidden for 5 minutes, not the default 30 s: a message may wait longer than that behind
            # a backlog, and a second delivery would fail the run.
            pages = self.queue.receive_messages(messages_per_page=self.batch, visibility_timeout=300).by_page()
            try:
                received = [m async for m in await pages.__anext__()]
            except StopAsyncIteration:
                received = []
            if not received:
                await asyncio.sleep(0.01)
                continue
            in_flight |= {asyncio.create_task(self.work(m)) for m in received}


def raw_ceiling_async(
    conn: str, jobs: int, concurrency: int, batch: int = BATCH, threshold: int = NEW_BATCH_THRESHOLD
) -> float:
    """Jobs/s of the SDK's async clients (aiohttp) on one event loop making one job's calls, as
    the app makes them since its functions are async: `concurrency` submitting tasks and the
    receive loop."""

    async def run() -> float:
        async with RawJobs(conn, "raw" + uuid.uuid4().hex[:10], batch, threshold) as raw:
            todo = iter(range(jobs))

            async def submitter() -> None:
                for i in todo:
                    await raw.submit(i)

            start = time.perf_counter()
            submitters = [asyncio.create_task(submitter()) for _ in range(concurrency)]
            await raw.drain(until=jobs)
            await asyncio.gather(*submitters)
            return jobs / (time.perf_counter() - start)

    return asyncio.run(run())


def raw_ceiling(
    conn: str, jobs: int, concurrency: int, batch: int = BATCH, threshold: int = NEW_BATCH_THRESHOLD
) -> float:
    """The same calls with the SDKs' sync clients (requests), from threads: a reference for the
    engine before it was async."""
    from azure.data.tables import TableClient as SyncTableClient
    from azure.storage.queue import QueueClient as SyncQueueClient

    name = "raw" + uuid.uuid4().hex[:10]
    options = transport_options(os.environ)
    table = SyncTableClient.from_connection_string(conn, name, **options)
    queue = SyncQueueClient.from_connection_string(conn, name, **options)
    table.create_table()
    queue.create_queue()

    def submit(i: int) -> None:
        meta = table.create_entity(queued(i), response_preference=NO_CONTENT)
        queue.send_message(message(i, meta["etag"]))

    completed = 0
    lock = threading.Lock()

    def work(received: Any) -> None:
        nonlocal completed
        body = json.loads(received.content)
        meta = table.update_entity(running(body["id"]), etag=body["etag"], **IF_MATCH)
        table.update_entity(succeeded(body["id"]), etag=meta["etag"], **IF_MATCH)
        queue.delete_message(received)
        with lock:
            completed += 1

    deadline = time.monotonic() + 300
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as submitters, ThreadPoolExecutor(batch) as workers:
        submits = [submitters.submit(submit, i) for i in range(jobs)]
        in_flight: list = []
        while completed < jobs:
            if time.monotonic() > deadline:
                raise RuntimeError("raw ceiling run did not finish in time")
            for f in in_flight:
                if f.done() and f.exception():
                    raise f.exception()
            in_flight = [f for f in in_flight if not f.done()]
            if len(in_flight) > threshold:  # fetch more when down to newBatchThreshold, as the host does
                time.sleep(0.002)
                continue
            received = list(next(queue.receive_messages(messages_per_page=batch, visibility_timeout=300).by_page(), []))
            if not received:
                time.sleep(0.01)
                continue
            in_flight += [workers.submit(work, m) for m in received]
        for f in submits:
            f.result()
    elapsed = time.perf_counter() - start
    table.delete_table()
    queue.delete_queue()
    return jobs / elapsed


async def serve(conn: str, port: int, batch: int, threshold: int) -> None:
    """The same calls behind `POST /api/jobs` (any body; it answers 202 once the job is stored and
    queued) and `GET /api/done` (how many jobs are done, and when the last one was, as Unix time)."""
    async with RawJobs(conn, "raw" + uuid.uuid4().hex[:10], batch, threshold) as raw:
        ids = itertools.count()

        async def submit(request: web.Request) -> web.Response:
            await request.read()
            i = next(ids)
            await raw.submit(i)
            return web.json_response({"id": i}, status=202)

        async def done(_: web.Request) -> web.Response:
            return web.json_response({"completed": raw.completed, "last_done": raw.last_done})

        app = web.Application()
        app.router.add_post("/api/jobs", submit)
        app.router.add_get("/api/done", done)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        worker = asyncio.create_task(raw.drain())
        print("ready", flush=True)
        await stop.wait()
        worker.cancel()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--threshold", type=int, default=NEW_BATCH_THRESHOLD)
    args = parser.parse_args()
    asyncio.run(serve(os.environ["AzureWebJobsStorage"], args.port, args.batch, args.threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
