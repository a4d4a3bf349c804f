"""One host process: settings, the app, its HTTP server, queue listeners and timers, and an orderly
shutdown on SIGINT/SIGTERM (stop taking work, let running invocations finish for a bounded time,
close the storage clients)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from devhost.app_loader import AppLoadError, Function, load_app
from devhost.http_server import FUNCTION_KEY_VARIABLE, build_router, make_app, methods_of
from devhost.invoker import Invoker
from devhost.queue_listener import QueueListener
from devhost.settings import HostConfig, SettingsError, connection_string, load_host_json, load_local_settings
from devhost.singleton import LOCK_CONTAINER, BlobLock, host_id, lock_blob_name
from devhost.storage import StorageClients
from devhost.timer import TimerRunner

log = logging.getLogger("devhost")

DRAIN_SECONDS = 10.0
DEFAULT_PORT = 7071
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "information": logging.INFO, "warning": logging.WARNING,
              "error": logging.ERROR, "critical": logging.CRITICAL, "none": logging.CRITICAL + 10}  # fmt: skip


@dataclass(frozen=True)
class HostOptions:
    app_dir: Path
    settings: Path
    port: int | None = None
    instance: int = 0
    reuse_port: bool = False  # set for supervised instances, which share one port


def apply_log_levels(config: HostConfig) -> None:
    """host.json `logging.logLevel`: `default` sets the root logger; another category sets the
    Python logger of the same dotted name in lower case (`Azure.Core` -> `azure.core`,
    `Function` -> the Executing/Executed lines). The Azure SDKs' request logs stay at Warning
    unless host.json names an `Azure...` category."""
    if not any(k.lower().startswith("azure") for k in config.log_levels):
        logging.getLogger("azure").setLevel(logging.WARNING)
    for category, level in config.log_levels.items():
        name = None if category.lower() == "default" else category.lower()
        logging.getLogger(name).setLevel(LOG_LEVELS.get(level.lower(), logging.INFO))


def listing(functions: list[Function], config: HostConfig, port: int, errors: dict[str, str]) -> str:
    """The function list `func start` prints."""
    prefix = f"/{config.route_prefix}" if config.route_prefix else ""
    lines = ["", "Functions:", ""]
    for f in functions:
        if f.trigger_type == "httpTrigger":
            methods = methods_of(f)
            shown = f"[{','.join(methods)}] " if methods else ""
            route = (f.trigger.route or f.name).strip("/")
            lines.append(f"        {f.name}: {shown}http://localhost:{port}{prefix}/{route}")
        else:
            lines.append(f"        {f.name}: {f.trigger_type}")
        lines.append("")
    for name, error in errors.items():
        lines += [f"The '{name}' function is in error: {error}", ""]
    return "\n".join(lines)


class Host:
    def __init__(self, options: HostOptions, config: HostConfig, functions: list[Function]) -> None:
        self.options = options
        self.config = config
        self.functions = functions
        self.invoke = Invoker(str(options.app_dir))
        self.clients = StorageClients()
        self.errors: dict[str, str] = {}
        self.listeners: list[QueueListener] = []
        self.timers: list[TimerRunner] = []
        hid = host_id(str(options.app_dir))
        for f in functions:
            try:
                if f.trigger_type == "queueTrigger":
                    self.listeners.append(QueueListener(f, config.queues, self.invoke, self.clients))
                elif f.trigger_type == "timerTrigger":
                    container = self.clients.container(connection_string("AzureWebJobsStorage"), LOCK_CONTAINER)
                    lock = BlobLock(container, lock_blob_name(hid, f.name))
                    self.timers.append(TimerRunner(f, self.invoke, lock))
            except (SettingsError, ValueError) as exc:
                # As the host does: the function is in error, the others run.
                self.errors[f.name] = str(exc)
        router = build_router(functions, self.errors)
        if options.instance != 0:  # instance 0 prints them under the function list
            for name, error in self.errors.items():
                log.error("The '%s' function is in error: %s", name, error)
        self.runner = web.AppRunner(
            make_app(router, config.route_prefix, self.invoke, os.environ.get(FUNCTION_KEY_VARIABLE) or None),
            access_log=None,
            shutdown_timeout=DRAIN_SECONDS,
        )

    async def run(self, port: int) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True, reuse_port=self.options.reuse_port)
        try:
            await site.start()
        except OSError as exc:
            log.error("Cannot listen on 127.0.0.1:%d: %s", port, exc.strerror or exc)
            await self.runner.cleanup()
            await self.clients.close()
            self.invoke.close()
            return 1
        await asyncio.gather(*(listener.start(stop) for listener in self.listeners))
        for timer in self.timers:
            timer.start(stop)
        instance = self.options.instance
        if instance == 0:
            print(listing(self.functions, self.config, port, self.errors), flush=True)
        print(f"Host started (instance {instance}, pid {os.getpid()})", flush=True)
        await stop.wait()
        await self.shutdown()
        return 0

    async def shutdown(self) -> None:
        log.info("Stopping host (instance %d): draining for up to %.0f s", self.options.instance, DRAIN_SECONDS)
        await asyncio.gather(
            self.runner.cleanup(),
            *(listener.stop(DRAIN_SECONDS) for listener in self.listeners),
            *(timer.stop(DRAIN_SECONDS) for timer in self.timers),
        )
        await self.clients.close()
        self.invoke.close()
        if self.invoke.busy_threads:
            # Python would wait for those threads at exit, without bound: leave them behind.
            log.warning("%d function threads still running; exiting without them", self.invoke.busy_threads)
            logging.shutdown()
            sys.stdout.flush()
            os._exit(0)
        log.info("Host stopped (instance %d)", self.options.instance)


async def serve(options: HostOptions) -> int:
    """Load settings and the app, then run the host until SIGINT/SIGTERM. Returns the exit code."""
    try:
        local = load_local_settings(options.settings)  # before the app is imported: it may read them
        config = load_host_json(options.app_dir)
    except SettingsError as exc:
        log.error("%s", exc)
        return 1
    apply_log_levels(config)
    try:
        functions = load_app(options.app_dir)
    except AppLoadError as exc:
        log.error("%s", exc, exc_info=exc.__cause__ is not None)
        return 1
    port = options.port or local.http_port or DEFAULT_PORT
    return await Host(options, config, functions).run(port)
