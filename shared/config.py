"""Configuration, read once from app settings (environment variables in Azure and under the local
host, which loads them from local.settings.json).

`SETTINGS` is the one list of every setting the app reads; the infrastructure tests check that the
templates set each of them under the same name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    doc: str


# Storage connection. Locally a connection string; in Azure identity-based, no keys:
# AzureWebJobsStorage__accountName (or the __blobServiceUri/__queueServiceUri/__tableServiceUri
# trio) with __credential=managedidentity and __clientId of the user-assigned identity.
STORAGE_CONNECTION = "AzureWebJobsStorage"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "JOBS_QUEUE_NAME",
        "jobs",
        "Queue of normal-priority job attempts; high and low priority use <name>-high and <name>-low, and each "
        "queue's poison queue is <queue>-poison.",
    ),
    Setting("JOBS_TABLE_NAME", "jobs", "Table holding the job records."),
    Setting(
        "JOBS_CONTAINER_NAME", "job-payloads", "Blob container for payloads and results too large for a table entity."
    ),
    Setting("JOBS_MAX_ATTEMPTS", "5", "Attempts per job unless the job or its type says otherwise."),
    Setting("JOBS_BACKOFF_BASE_SECONDS", "2", "Delay before the 2nd attempt; doubles each attempt (with jitter)."),
    Setting("JOBS_BACKOFF_MAX_SECONDS", "300", "Cap on the delay between attempts."),
    Setting(
        "JOBS_LEASE_SECONDS",
        "60",
        "How long a running attempt's lease lasts: renewed while it runs, presumed lost after.",
    ),
    Setting("JOBS_HEARTBEAT_SECONDS", "20", "How often a running attempt renews its lease (and learns of a cancel)."),
    Setting("JOBS_TIME_LIMIT_SECONDS", "540", "How long an attempt may run, unless its type says otherwise."),
    Setting("JOBS_SYNC_HANDLER_THREADS", "16", "Threads for sync handlers (async handlers run on the event loop)."),
    Setting("JOBS_RECONCILE_SCHEDULE", "*/30 * * * * *", "NCRONTAB schedule (six fields) of the reconciler."),
    Setting(
        "JOBS_RECONCILE_GRACE_SECONDS",
        "300",
        "How long a queued job may stay unclaimed past its due time before its message is presumed lost.",
    ),
    Setting("JOBS_RETENTION_DAYS", "7", "Finished jobs older than this are deleted by the reconciler."),
    Setting("JOBS_PARTITIONS", "4", "Table partitions new jobs are spread over (each takes ~2,000 writes/s)."),
    Setting(
        "JOBS_MAX_PAYLOAD_BYTES",
        "1048576",
        "Largest accepted payload (bytes of its JSON in UTF-8); over 30,000 characters it is stored in a blob.",
    ),
    Setting(
        "JOBS_API_TIMEOUT_SECONDS",
        "20",
        "How long an API request may wait on storage before it answers 503 (clients send it again).",
    ),
    Setting(
        "JOBS_APPINSIGHTS_RESOURCE_ID",
        "",
        "The Application Insights resource's id (/subscriptions/.../components/<name>), set by the templates: "
        "the API links each job to its telemetry in the Azure portal (`trace_url`). Empty (locally): no link.",
    ),
    # --- schedules (shared/schedules/) ---
    Setting(
        "JOBS_SCHEDULER_SCHEDULE",
        "*/5 * * * * *",
        "NCRONTAB schedule (six fields) of the timer that fires due schedules (the reconciler also fires them).",
    ),
    Setting(
        "JOBS_SCHEDULER_GRACE_SECONDS",
        "60",
        "How late a schedule's fire may be and still run as scheduled; later, it was missed (downtime) and the "
        "schedule's catch_up policy applies.",
    ),
)


@dataclass(frozen=True)
class Config:
    queue_name: str
    table_name: str
    container_name: str
    max_attempts: int
    backoff_base_seconds: float
    backoff_max_seconds: float
    lease_seconds: float
    heartbeat_seconds: float
    time_limit_seconds: float
    sync_handler_threads: int
    reconcile_schedule: str
    reconcile_grace_seconds: float
    retention_days: float
    partitions: int
    max_payload_bytes: int
    api_timeout_seconds: float
    appinsights_resource_id: str
    # schedules
    scheduler_schedule: str
    scheduler_grace_seconds: float

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"

    def queue_name_for(self, priority: str) -> str:
        """The queue of a priority: JOBS_QUEUE_NAME for normal, with -high or -low appended for the
        others (the triggers in function_app.py name them the same way)."""
        return self.queue_name if priority == "normal" else f"{self.queue_name}-{priority}"


class ConfigError(ValueError):
    pass


def _read(env: dict[str, str], setting: Setting) -> str:
    value = env.get(setting.name, "").strip()
    return value if value else (setting.default or "")


def load(env: dict[str, str] | None = None) -> Config:
    """Build a Config from the environment, failing with the setting's name on a bad value."""
    env = dict(os.environ) if env is None else env
    raw = {s.name: _read(env, s) for s in SETTINGS}
    values = {}
    for f, setting in zip(fields(Config), SETTINGS, strict=True):
        text = raw[setting.name]
        try:
            value = text if f.type == "str" else int(text) if f.type == "int" else float(text)
        except ValueError:
            raise ConfigError(f"{setting.name}={text!r} is not a valid {f.type}") from None
        if f.type == "int" and value < 1 or f.type == "float" and value < 0:
            raise ConfigError(f"{setting.name} must be {'at least 1' if f.type == 'int' else 'zero or more'}")
        values[f.name] = value
    if values["api_timeout_seconds"] <= 0:
        raise ConfigError("JOBS_API_TIMEOUT_SECONDS must be more than 0")
    if values["heartbeat_seconds"] >= values["lease_seconds"]:
        raise ConfigError("JOBS_HEARTBEAT_SECONDS must be less than JOBS_LEASE_SECONDS, to renew a lease in time")
    return Config(**values)


@lru_cache(maxsize=1)
def get() -> Config:
    """The process-wide configuration, read once."""
    return load()
