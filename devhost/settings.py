"""App settings (local.settings.json, the environment) and host.json, read the way the Functions
host reads them: host.json keys are case-insensitive, timespans may be "hh:mm:ss" strings."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?$")


class SettingsError(ValueError):
    """A setting or host.json value the host cannot use; the message says which and why."""


def parse_timespan(value: Any, default: float) -> float:
    """Seconds from a host.json duration: a .NET timespan string ("00:00:02", "1.00:00:00",
    "00:00:00.500", "00:05") or a number of milliseconds (JSON number or digits), since
    host.json files in the wild use both for the queue settings."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise SettingsError(f"not a timespan: {value!r}")
    if isinstance(value, int | float):
        return float(value) / 1000
    text = str(value).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text) / 1000
    match = _TIMESPAN.match(text)
    if not match:
        raise SettingsError(f"not a timespan: {value!r} (expected hh:mm:ss or milliseconds)")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes) > 59 or int(seconds or 0) > 59:
        raise SettingsError(f"not a timespan: {value!r}")
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """host.json `extensions.queues`, with the host's defaults."""

    batch_size: int = 16
    # The real host's default is batchSize/2 multiplied by the number of cores; here batchSize/2.
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json this host acts on."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    log_levels: dict[str, str] = field(default_factory=lambda: {"default": "Information"})


def _lower_keys(value: Any) -> Any:
    """host.json goes through .NET configuration, whose keys are case-insensitive."""
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    return value


def _get(section: Any, key: str) -> Any:
    """A key of a host.json object, whatever its case."""
    if not isinstance(section, dict):
        return None
    return next((v for k, v in section.items() if str(k).lower() == key.lower()), None)


def _int(section: dict[str, Any], key: str, default: int, low: int, high: int | None = None) -> int:
    value = section.get(key.lower(), default)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().lstrip("-").isdigit():
        raise SettingsError(f"host.json extensions.queues.{key} must be an integer, got {value!r}")
    number = int(value)
    if number < low or (high is not None and number > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise SettingsError(f"host.json extensions.queues.{key} must be {bounds}, got {number}")
    return number


def parse_queue_options(raw: dict[str, Any]) -> QueueOptions:
    q = _lower_keys(raw)
    batch = _int(q, "batchSize", 16, 1, 32)
    encoding = str(q.get("messageencoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise SettingsError(f"host.json extensions.queues.messageEncoding must be base64 or none, got {encoding!r}")
    polling = parse_timespan(q.get("maxpollinginterval"), 60.0)
    if polling < 0.1:
        raise SettingsError("host.json extensions.queues.maxPollingInterval must be at least 00:00:00.100")
    visibility = parse_timespan(q.get("visibilitytimeout"), 0.0)
    return QueueOptions(
        batch_size=batch,
        new_batch_threshold=_int(q, "newBatchThreshold", batch // 2, 0),
        max_polling_interval=polling,
        visibility_timeout=visibility,
        max_dequeue_count=_int(q, "maxDequeueCount", 5, 1),
        message_encoding=encoding,
    )


def load_host_json(app_dir: Path) -> HostConfig:
    """host.json from the app folder; a missing file means every default."""
    path = app_dir / "host.json"
    try:
        original = json.loads(path.read_text(encoding="utf-8-sig")) if path.exists() else {}
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path} is not valid JSON: {exc}") from exc
    data = _lower_keys(original)
    extensions = data.get("extensions", {})
    prefix = extensions.get("http", {}).get("routeprefix", "api")
    if not isinstance(prefix, str):
        raise SettingsError("host.json extensions.http.routePrefix must be a string")
    # Category names keep their case here (they become logger names).
    levels = {str(k): str(v) for k, v in (_get(_get(original, "logging"), "logLevel") or {}).items()}
    if not any(k.lower() == "default" for k in levels):
        levels["default"] = "Information"
    return HostConfig(
        route_prefix=prefix.strip("/"), queues=parse_queue_options(extensions.get("queues", {})), log_levels=levels
    )


@dataclass(frozen=True)
class LocalSettings:
    """What local.settings.json holds besides its Values."""

    values: dict[str, str] = field(default_factory=dict)
    http_port: int | None = None  # Host.LocalHttpPort, used when --port is not given


def load_local_settings(path: Path, environ: dict[str, str] | Any = os.environ) -> LocalSettings:
    """Put local.settings.json `Values` into the environment, as `func start` does; a variable that
    is already set wins. A missing file is fine."""
    if not path.exists():
        return LocalSettings()
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{path} is not valid JSON: {exc}") from exc
    if data.get("IsEncrypted"):
        raise SettingsError(f"{path} is encrypted (IsEncrypted: true); decrypt it first")

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    values = {str(k): text(v) for k, v in (data.get("Values") or {}).items()}
    for key, value in values.items():
        environ.setdefault(key, value)
    port = (data.get("Host") or {}).get("LocalHttpPort")
    return LocalSettings(values, int(port) if port else None)


def resolve(value: str, environ: dict[str, str] | Any = os.environ) -> str:
    """Binding expressions: %NAME% is the app setting NAME (an error names the missing setting)."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise SettingsError(f"app setting '{name}' is not set (used as %{name}% in a binding)")
        return environ[name]

    return re.sub(r"%([^%]+)%", setting, value)


def connection_string(name: str, environ: dict[str, str] | Any = os.environ) -> str:
    """The connection string a binding's `connection` names. As in the WebJobs SDK the name is tried
    with the `AzureWebJobs` prefix first, then as given. (local.settings.json ConnectionStrings are
    for frameworks, not bindings, in the real host too.)"""
    candidates = [name] if name.startswith("AzureWebJobs") else [f"AzureWebJobs{name}", name]
    for candidate in candidates:
        if environ.get(candidate):
            return environ[candidate]
    raise SettingsError(f"connection setting {' or '.join(repr(c) for c in candidates)} is not set")
