"""Calling a user function as the Python worker does: async ones on the event loop, sync ones in
a thread pool (PYTHON_THREADPOOL_THREAD_COUNT, default min(32, cores + 4))."""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from devhost.app_loader import Function


@dataclass
class Context:
    """The subset of azure.functions.Context that apps use."""

    function_name: str
    function_directory: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    trace_context: Any = None
    retry_context: Any = None


class Invoker:
    def __init__(self, app_dir: str) -> None:
        threads = int(os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT") or min(32, (os.cpu_count() or 1) + 4))
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="function")
        self.app_dir = app_dir

    async def __call__(self, function: Function, trigger_value: Any) -> Any:
        kwargs = {function.binding_name: trigger_value}
        if function.wants_context:
            kwargs["context"] = Context(function.name, self.app_dir)
        if function.is_async:
            return await function.func(**kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(function.func, **kwargs))

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
