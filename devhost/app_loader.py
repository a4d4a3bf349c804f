"""Import a v2-model function app (`function_app.py`) and describe its functions from their
decorators, as the Python worker indexes them."""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("devhost")

SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")


class AppLoadError(RuntimeError):
    """The app cannot be indexed (no app object, two of them, an import error)."""


@dataclass(frozen=True)
class Function:
    name: str
    trigger_type: str  # httpTrigger | queueTrigger | timerTrigger | anything else (listed, not run)
    binding_name: str  # the parameter that receives the trigger
    func: Callable[..., Any]
    trigger: Any  # the library's trigger object: route, methods, queue_name, schedule...
    extra_bindings: tuple[str, ...] = ()  # other bindings' "name (type)", which this host does not supply
    is_async: bool = False
    wants_context: bool = False


def _app_objects(module: Any) -> list[Any]:
    import azure.functions as func

    return [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]


def import_app_module(app_dir: Path, module: str = "function_app") -> Any:
    """Import `<app_dir>/<module>.py` with the app folder first on sys.path, as the worker does,
    so the app's own packages (`shared/`, ...) are found before anything else."""
    app_dir = app_dir.resolve()
    if not (app_dir / f"{module}.py").exists():
        raise AppLoadError(f"{app_dir / (module + '.py')} not found")
    if str(app_dir) in sys.path:
        sys.path.remove(str(app_dir))
    sys.path.insert(0, str(app_dir))
    loaded = sys.modules.get(module)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent != app_dir:
        del sys.modules[module]  # another app's module of the same name (tests load several apps)
    importlib.invalidate_caches()
    return importlib.import_module(module)


def index_functions(app: Any) -> list[Function]:
    """Describe every function of an app object. `get_functions()` may be called once per app
    object (a second call fails on duplicate names), so call this once and keep the result."""
    functions = []
    for f in app.get_functions():
        trigger = f.get_trigger()
        user_function = f.get_user_function()
        others = tuple(
            f"{b.name} ({b.type})"
            for b in f.get_bindings()
            if b is not trigger and b.name != "$return" and not str(b.type).endswith("Trigger")
        )
        functions.append(
            Function(
                name=f.get_function_name(),
                trigger_type=str(getattr(trigger, "type", None) or trigger.get_binding_name()),
                binding_name=trigger.name,
                func=user_function,
                trigger=trigger,
                extra_bindings=others,
                is_async=inspect.iscoroutinefunction(user_function),
                wants_context="context" in inspect.signature(user_function).parameters,
            )
        )
    return functions


def load_app(app_dir: Path, module: str = "function_app") -> list[Function]:
    """Import the app and index its one FunctionApp (or AsgiFunctionApp, WsgiFunctionApp...)."""
    try:
        mod = import_app_module(app_dir, module)
    except AppLoadError:
        raise
    except Exception as exc:
        raise AppLoadError(f"importing {module}.py failed: {exc!r}") from exc
    apps = _app_objects(mod)
    if not apps:
        raise AppLoadError(f"{module}.py defines no FunctionApp (func.FunctionApp, AsgiFunctionApp, ...) at top level")
    if len(apps) > 1:
        raise AppLoadError(f"{module}.py defines {len(apps)} function app objects; the worker accepts one")
    functions = index_functions(apps[0])
    for f in functions:
        if f.trigger_type not in SUPPORTED_TRIGGERS:
            log.warning("Function '%s' has a %s, which devhost does not run", f.name, f.trigger_type)
        if f.extra_bindings:
            log.warning(
                "Function '%s' declares bindings devhost does not supply: %s", f.name, ", ".join(f.extra_bindings)
            )
    return functions
