"""Traces, metrics and logs, with OpenTelemetry. Names come from shared/signals.py.

Exporters, chosen once per process from the environment:
- APPLICATIONINSIGHTS_CONNECTION_STRING set: Azure Monitor (azure-monitor-opentelemetry), with
  the managed identity named by APPLICATIONINSIGHTS_AUTHENTICATION_STRING (`Authorization=AAD;
  ClientId=...`) since the templates disable local (key) auth;
- else OTEL_EXPORTER_OTLP_ENDPOINT set: OTLP over HTTP;
- else JOBS_TELEMETRY_CONSOLE=1: spans and metrics printed to the console;
- else nothing is exported. Metrics are still kept in process for GET /api/metrics (Prometheus).
JOBS_LOG_FORMAT=json prints one JSON object per log line, with the job attributes.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from shared import signals
from shared.job import Job

log = logging.getLogger("jobs.telemetry")


def job_attributes(job: Job) -> dict[str, Any]:
    return {
        signals.JOB_ID: job.id,
        signals.JOB_TYPE: job.type,
        signals.ATTEMPT: job.attempt,
        signals.STATUS: str(job.status),
    }


class Telemetry:
    """The instruments the app records to. Providers default to the global ones (no-ops unless
    configured), so tests can pass in-memory ones."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = trace.get_tracer("jobs", tracer_provider=tracer_provider)
        meter = metrics.get_meter("jobs", meter_provider=meter_provider)
        self._counters = {
            m.name: meter.create_counter(m.name, unit=m.unit, description=m.description)
            for m in signals.METRICS
            if m.kind == "counter"
        }
        self._histograms = {
            m.name: meter.create_histogram(m.name, unit=m.unit, description=m.description)
            for m in signals.METRICS
            if m.kind == "histogram"
        }
        self._gauge_values: dict[str, int] = {}
        self._lock = threading.Lock()
        for m in signals.METRICS:
            if m.kind == "gauge":
                meter.create_observable_gauge(
                    m.name, callbacks=[self._observe(m.name)], unit=m.unit, description=m.description
                )

    # --- metrics -----------------------------------------------------------------------------

    def count(self, metric: signals.Metric, job: Job) -> None:
        self._counters[metric.name].add(1, {signals.JOB_TYPE: job.type})

    def record(self, metric: signals.Metric, value_ms: float, job: Job) -> None:
        self._histograms[metric.name].record(max(0.0, value_ms), {signals.JOB_TYPE: job.type})

    def set_gauge(self, metric: signals.Metric, value: int) -> None:
        with self._lock:
            self._gauge_values[metric.name] = value

    def _observe(self, name: str) -> Any:
        def callback(options: Any) -> Iterator[metrics.Observation]:
            with self._lock:
                value = self._gauge_values.get(name)
            if value is not None:
                yield metrics.Observation(value)

        return callback

    # --- traces ------------------------------------------------------------------------------

    @contextmanager
    def span(
        self,
        name: str,
        job: Job | None = None,
        parent: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        **attributes: Any,
    ) -> Iterator[Span]:
        """A span; with `parent` (a traceparent) it joins that trace, so a job is one trace."""
        context = extract({"traceparent": parent}) if parent else None
        attrs = {**(job_attributes(job) if job else {}), **attributes}
        with self.tracer.start_as_current_span(name, context=context, kind=kind, attributes=attrs) as span:
            try:
                yield span
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                raise

    @staticmethod
    @contextmanager
    def joined(traceparent: str | None) -> Iterator[None]:
        """Make `traceparent` (the host's span for an HTTP request) the current context, so the
        spans started inside are its children: caller -> API -> queue -> worker is one trace."""
        if not traceparent:
            yield
            return
        token = otel_context.attach(extract({"traceparent": traceparent}))
        try:
            yield
        finally:
            otel_context.detach(token)

    @staticmethod
    def current_traceparent() -> str | None:
        carrier: dict[str, str] = {}
        inject(carrier)
        return carrier.get("traceparent")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the job attributes a record carries."""

    FIELDS = (signals.JOB_ID, signals.JOB_TYPE, signals.ATTEMPT, signals.STATUS, signals.OUTCOME)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            out["trace_id"] = f"{span.trace_id:032x}"
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


_configured = False
_config_lock = threading.Lock()


def configure(env: Mapping[str, str] | None = None) -> None:
    """Set up exporters from the environment, once per process."""
    global _configured
    env = os.environ if env is None else env
    with _config_lock:
        if _configured:
            return
        _configured = True
        if env.get("JOBS_LOG_FORMAT", "").lower() == "json":
            for handler in logging.getLogger().handlers or [_stderr_handler()]:
                handler.setFormatter(JsonFormatter())
        readers = [_prometheus_reader()]
        if env.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
            _configure_azure_monitor(env, readers)
        elif env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            _configure_sdk(readers, otlp=True)
        elif env.get("JOBS_TELEMETRY_CONSOLE", "").lower() in ("1", "true", "yes"):
            _configure_sdk(readers, otlp=False)
        else:
            from opentelemetry.sdk.metrics import MeterProvider

            metrics.set_meter_provider(MeterProvider(metric_readers=readers))


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    return handler


def _prometheus_reader() -> Any:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    return PrometheusMetricReader()


def _configure_azure_monitor(env: Mapping[str, str], readers: list[Any]) -> None:
    from azure.monitor.opentelemetry import configure_azure_monitor

    credential = None
    auth = dict(
        part.split("=", 1)
        for part in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").split(";")
        if "=" in part
    )
    if auth.get("Authorization", "").upper() == "AAD":
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=auth.get("ClientId"))
    configure_azure_monitor(credential=credential, metric_readers=readers, logger_name="jobs")


def _configure_sdk(readers: list[Any], otlp: bool) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if otlp:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter, metric_exporter = OTLPSpanExporter(), OTLPMetricExporter()
    else:
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        span_exporter, metric_exporter = ConsoleSpanExporter(), ConsoleMetricExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[*readers, PeriodicExportingMetricReader(metric_exporter)]))


# --- a job's telemetry in the Azure portal -------------------------------------------------------

PORTAL = "https://portal.azure.com"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_COMPONENT = re.compile(
    r"^/subscriptions/[0-9A-Fa-f-]{36}/resourceGroups/[-\w.()]{1,90}/providers/Microsoft\.Insights/components/"
    r"[-\w.()]{1,260}$",
    re.IGNORECASE,
)


def trace_query(trace_id: str, since: datetime, until: datetime | None) -> str:
    """Every request, dependency, log line and exception of one trace (a job: its submit and all
    its attempts), oldest first. The times keep the query to the job's life (telemetry is kept
    90 days by default); the portal then shows them as "Set in query"."""
    when = f"timestamp >= datetime({since:%Y-%m-%dT%H:%M:%SZ})"
    if until is not None:
        when = f"timestamp between (datetime({since:%Y-%m-%dT%H:%M:%SZ}) .. datetime({until:%Y-%m-%dT%H:%M:%SZ}))"
    return (
        "union requests, dependencies, traces, exceptions\n"
        f"| where {when}\n"
        f'| where operation_Id == "{trace_id}"\n'
        "| order by timestamp asc"
    )


def trace_portal_url(resource_id: str, trace_id: str | None, since: datetime, until: datetime | None) -> str | None:
    """A link that opens Logs on the Application Insights resource with `trace_query`: the shape
    Microsoft documents for links to a query (the BCTech samples, "How do I create a link (URL)
    that opens a KQL query in the Azure Application Insights portal?": the resource id URL-encoded,
    the query gzipped and base64-encoded after `q/`). From the results, any row opens the
    end-to-end transaction view. None without a resource id (locally) or a trace id."""
    if not trace_id or not _TRACE_ID.match(trace_id) or not _COMPONENT.match(resource_id or ""):
        return None
    window_start = since - timedelta(minutes=10)  # the submit's request starts a little earlier
    window_end = until + timedelta(hours=1) if until is not None else None
    query = trace_query(trace_id, window_start.astimezone(UTC), window_end.astimezone(UTC) if window_end else None)
    # mtime=0: the same job always gets the same link.
    packed = base64.b64encode(gzip.compress(query.encode(), mtime=0)).decode()
    return (
        f"{PORTAL}/#blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/resourceId/{quote(resource_id, safe='')}"
        f"/source/LogsBlade.AnalyticsShareLinkToQuery/q/{quote(packed, safe='')}"
    )


def prometheus_text() -> bytes:
    """The process's metrics in the Prometheus text format, for GET /api/metrics."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)
