"""Import a v2-model function app and describe its functions from their decorators."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Function:
    name: str
    trigger_type: str  # httpTrigger | queueTrigger | timerTrigger
    binding_name: str  # the parameter that receives the trigger
    func: Callable[..., Any]
    trigger: Any  # the library's trigger object: route, methods, queue_name, schedule...

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def wants_context(self) -> bool:
        return "context" in inspect.signature(self.func).parameters


def load_app(app_dir: Path, module: str = "function_app") -> list[Function]:
    sys.path.insert(0, str(app_dir))
    mod = importlib.import_module(module)
    import azure.functions as func

    apps = [v for v in vars(mod).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise RuntimeError(f"{module}.py must define exactly one FunctionApp, found {len(apps)}")
    functions = []
    for f in apps[0].get_functions():  # may be called once per app object: the result is kept
        trigger = f.get_trigger()
        functions.append(Function(f.get_function_name(), trigger.get_binding_name(), trigger.name,
                                  f.get_user_function(), trigger))  # fmt: skip
    return functions
