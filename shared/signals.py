"""The one definition of what the app emits: metric names, span names, attribute names.

The code emits these (shared/telemetry.py); the Application Insights workbook and the alerts are
generated from them (python -m tools.dashboards); a test runs a job against Azurite with in-memory
exporters and checks that every name the workbook queries was emitted.
"""

from __future__ import annotations

from dataclasses import dataclass

# Attributes on every log record, span and metric point about a job (custom dimensions in
# Application Insights).
JOB_ID = "job_id"
JOB_TYPE = "job_type"
ATTEMPT = "attempt"
STATUS = "status"
OUTCOME = "outcome"
QUEUE_WAIT_MS = "queue_wait_ms"


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | histogram | gauge
    unit: str
    description: str


SUBMITTED = Metric("jobs.submitted", "counter", "{job}", "Jobs accepted by the API")
SUCCEEDED = Metric("jobs.succeeded", "counter", "{job}", "Jobs that ended succeeded")
RETRIED = Metric("jobs.retried", "counter", "{attempt}", "Failed attempts scheduled for a retry")
DEAD_LETTERED = Metric("jobs.dead_lettered", "counter", "{job}", "Jobs that ended dead-lettered")
CANCELLED = Metric("jobs.cancelled", "counter", "{job}", "Jobs cancelled on request")
ATTEMPT_DURATION = Metric("jobs.attempt.duration", "histogram", "ms", "Time a handler ran, per attempt")
QUEUE_WAIT = Metric("jobs.queue.wait", "histogram", "ms", "Time from an attempt being due to its claim")
QUEUE_DEPTH = Metric("jobs.queue.depth", "gauge", "{message}", "Messages in the jobs queue")
POISON_DEPTH = Metric("jobs.poison.depth", "gauge", "{message}", "Messages in the poison queue")

METRICS: tuple[Metric, ...] = (
    SUBMITTED,
    SUCCEEDED,
    RETRIED,
    DEAD_LETTERED,
    CANCELLED,
    ATTEMPT_DURATION,
    QUEUE_WAIT,
    QUEUE_DEPTH,
    POISON_DEPTH,
)

# Spans: one trace per job. The submit span's context travels in every message of the job and
# is kept on its record, so each attempt and each repair is a child of the submit.
SPAN_SUBMIT = "job submit"
SPAN_ATTEMPT = "job attempt"
SPAN_REPAIR = "job repair"
SPAN_RECONCILE = "reconcile"
SPANS = (SPAN_SUBMIT, SPAN_ATTEMPT, SPAN_REPAIR, SPAN_RECONCILE)
