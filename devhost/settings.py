"""local.settings.json and host.json, read the way the Functions host reads them."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def parse_timespan(value: Any, default: float) -> float:
    """Seconds from a host.json timespan ("00:00:02", "1.00:00:00", "00:00:00.500") or an
    integer of milliseconds, as the host accepts both for queue settings."""
    if value is None:
        return default
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1000
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise ValueError(f"not a timespan: {value!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval: float = 60.0
    visibility_timeout: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()
    log_levels: tuple[tuple[str, str], ...] = (("default", "Information"),)


def load_host_json(app_dir: Path) -> HostConfig:
    path = app_dir / "host.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    extensions = data.get("extensions", {})
    prefix = extensions.get("http", {}).get("routePrefix", "api")
    q = extensions.get("queues", {})
    batch = int(q.get("batchSize", 16))
    if not 1 <= batch <= 32:
        raise ValueError("host.json queues.batchSize must be 1..32")
    encoding = str(q.get("messageEncoding", "base64")).lower()
    if encoding not in ("base64", "none"):
        raise ValueError("host.json queues.messageEncoding must be base64 or none")
    queues = QueueOptions(
        batch_size=batch,
        # The real host's default is batchSize/2 per core; one local process stands for one core.
        new_batch_threshold=int(q.get("newBatchThreshold", batch // 2)),
        max_polling_interval=max(0.1, parse_timespan(q.get("maxPollingInterval"), 60.0)),
        visibility_timeout=parse_timespan(q.get("visibilityTimeout"), 0.0),
        max_dequeue_count=int(q.get("maxDequeueCount", 5)),
        message_encoding=encoding,
    )
    levels = tuple((str(k), str(v)) for k, v in data.get("logging", {}).get("logLevel", {}).items())
    return HostConfig(route_prefix=prefix.strip("/"), queues=queues, log_levels=levels or HostConfig.log_levels)


def load_local_settings(path: Path) -> dict[str, str]:
    """Put local.settings.json `Values` into the environment; a variable already set wins."""
    if not path.exists():
        return {}
    values = {str(k): str(v) for k, v in json.loads(path.read_text()).get("Values", {}).items()}
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return values


def resolve(value: str) -> str:
    """Binding expressions: %NAME% is the app setting NAME."""

    def setting(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise KeyError(f"app setting {name!r} is not set (used as %{name}%)")
        return os.environ[name]

    return re.sub(r"%([^%]+)%", setting, value)
