"""Calling a user function as the Python worker does: async functions on the event loop, sync ones
in a thread pool (PYTHON_THREADPOOL_THREAD_COUNT, default min(32, cores + 4)); a `context`
parameter gets a Context. Every invocation's end is logged (`Executed ...`, with its outcome and
duration; its start, `Executing ...`, at debug); sync ones still running in a thread are counted,
so shutdown knows whether it can exit normally."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func

from devhost.app_loader import Function


class TraceContext:
    """The W3C trace context an invocation runs in. The real host passes its own span for the
    invocation; this host passes the `traceparent` an HTTP request came with, so an app that joins
    it lands in the caller's trace as it would in Azure."""

    def __init__(self, trace_parent: str, trace_state: str = "") -> None:
        self._trace_parent = trace_parent
        self._trace_state = trace_state

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class Context(func.Context):
    """The worker's invocation context: function name and folder, invocation id, and the trace
    context of an HTTP request that carried one."""

    def __init__(self, function_name: str, function_directory: str, trace_context: TraceContext | None = None) -> None:
        self._function_name = function_name
        self._function_directory = function_directory
        self._invocation_id = str(uuid.uuid4())
        self._thread_local_storage = threading.local()
        self._trace_context = trace_context

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def thread_local_storage(self) -> threading.local:
        return self._thread_local_storage

    @property
    def trace_context(self) -> TraceContext | None:
        return self._trace_context

    @property
    def retry_context(self) -> Any:
        return None


def user_traceback(exc: BaseException, user_function: Any) -> str:
    """The exception's traceback from the user's function down, without this host's frames (as
    the worker reports it); the whole traceback when that frame is not found (a wrapped function)."""
    code = getattr(user_function, "__code__", None)
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not code:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__)).rstrip()


def default_thread_count() -> int:
    configured = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
    if configured:
        count = int(configured)
        if not 1 <= count <= 32:
            raise ValueError("PYTHON_THREADPOOL_THREAD_COUNT must be 1..32")
        return count
    return min(32, (os.cpu_count() or 1) + 4)


class Invoker:
    def __init__(self, app_dir: str, threads: int | None = None) -> None:
        self.threads = threads or default_thread_count()
        self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="function")
        self.app_dir = app_dir
        self.busy_threads = 0  # sync invocations still running in a thread (may outlive a cancelled caller)
        self._lock = threading.Lock()
        self._loggers: dict[str, logging.Logger] = {}

    async def __call__(
        self, function: Function, trigger_value: Any, reason: str = "", trace: TraceContext | None = None
    ) -> Any:
        """Run one invocation; the function's exception propagates after being logged."""
        context = Context(function.name, self.app_dir, trace)
        kwargs: dict[str, Any] = {function.binding_name: trigger_value}
        if function.wants_context:
            kwargs["context"] = context
        logger = self._loggers.get(function.name)
        if logger is None:
            logger = self._loggers[function.name] = logging.getLogger(f"function.{function.name}")
        # The real host logs this line at Information too; here it is debug: a log record costs about
        # as much CPU as a small function's whole invocation, and the Executed line below says what
        # an operator needs (outcome, id, duration). host.json "Function": "Debug" shows it.
        logger.debug("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, context.invocation_id)
        started = time.perf_counter()
        try:
            if function.is_async:
                result = await function.func(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                call = functools.partial(contextvars.copy_context().run, self._run_sync, function.func, kwargs)
                result = await loop.run_in_executor(self.pool, call)
        except Exception as exc:
            ms = (time.perf_counter() - started) * 1000
            logger.error("Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)\n%s", function.name,
                         context.invocation_id, ms, user_traceback(exc, function.func))  # fmt: skip
            raise

        ms = (time.perf_counter() - started) * 1000
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", function.name, context.invocation_id, ms
        )
        return result

    def _run_sync(self, fn: Any, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            self.busy_threads += 1
        try:
            return fn(**kwargs)
        finally:
            with self._lock:
                self.busy_threads -= 1

    def close(self) -> None:
        """Stop the pool without waiting: threads still running are abandoned (see host shutdown)."""
        self.pool.shutdown(wait=False, cancel_futures=True)
