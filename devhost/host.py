"""One host process: the HTTP server, the queue listeners and the timers of one app."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from pathlib import Path

from aiohttp import web

from devhost.app_loader import Function, load_app
from devhost.http_server import make_app
from devhost.invoker import Invoker
from devhost.queue_listener import QueueListener
from devhost.settings import HostConfig, load_host_json, load_local_settings
from devhost.timer import TimerRunner, host_id

log = logging.getLogger("devhost")

DRAIN_SECONDS = 10
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "information": logging.INFO, "warning": logging.WARNING,
              "error": logging.ERROR, "critical": logging.CRITICAL, "none": logging.CRITICAL + 10}  # fmt: skip


def apply_log_levels(config: HostConfig) -> None:
    """host.json `logging.logLevel`: `default` sets the root logger; other categories set the
    Python logger of the same dotted name, lower-cased (`Azure.Core` -> `azure.core`)."""
    for category, level in config.log_levels:
        name = None if category.lower() == "default" else category.lower()
        logging.getLogger(name).setLevel(LOG_LEVELS.get(level.lower(), logging.INFO))


def listing(functions: list[Function], config: HostConfig, port: int) -> str:
    """The function list `func start` prints."""
    prefix = f"/{config.route_prefix}" if config.route_prefix else ""
    lines = ["", "Functions:", ""]
    for f in functions:
        if f.trigger_type == "httpTrigger":
            methods = ",".join(str(getattr(m, "value", m)) for m in f.trigger.methods) if f.trigger.methods else "*"
            route = f.trigger.route or f.name
            lines.append(f"        {f.name}: [{methods}] http://localhost:{port}{prefix}/{route}")
        else:
            lines.append(f"        {f.name}: {f.trigger_type}")
        lines.append("")
    return "\n".join(lines)


async def serve(app_dir: Path, port: int, settings: Path, instance: int = 0) -> int:
    load_local_settings(settings)
    config = load_host_json(app_dir)
    apply_log_levels(config)
    functions = load_app(app_dir)
    invoke = Invoker(str(app_dir))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    runner = web.AppRunner(make_app(functions, config.route_prefix, invoke), access_log=None)
    await runner.setup()
    # Every instance binds the same port; the kernel spreads connections as a load balancer would.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    site = web.SockSite(runner, sock)
    await site.start()

    listeners = [QueueListener(f, config.queues, invoke) for f in functions if f.trigger_type == "queueTrigger"]
    timers = [TimerRunner(f, invoke, host_id(str(app_dir))) for f in functions if f.trigger_type == "timerTrigger"]
    await asyncio.gather(*(listener.start() for listener in listeners))
    tasks = [asyncio.create_task(x.run(stop)) for x in [*listeners, *timers]]
    if instance == 0:
        print(listing(functions, config, port), flush=True)
    print(f"Host started (instance {instance}, pid {os.getpid()})", flush=True)
    await stop.wait()

    log.info("Stopping host (instance %d)", instance)
    await runner.cleanup()
    await asyncio.gather(*(listener.drain(DRAIN_SECONDS) for listener in listeners))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for closer in [*listeners, *timers]:
        await closer.close()
    invoke.close()
    return 0
