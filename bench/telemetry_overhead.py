"""What telemetry costs per job: time and bytes, telemetry on against telemetry off, in one run.

    python -m bench.telemetry_overhead [--jobs 300] [--runs 3]

The same `echo` jobs go through the service and the worker on Azurite (no HTTP, no host, so the
difference is the instrumentation alone), once with no-op providers and once with the SDK
recording spans, metrics and JSON log lines. Bytes are what an exporter would send: each span
as OTLP-like JSON, each log record as a JSON line, the metrics collected once per run.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import statistics
import sys
import time
import uuid
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from shared import config as config_module
from shared.app import build
from shared.telemetry import JsonFormatter, Telemetry
from tools.azurite import Azurite


class ByteCountingExporter(SpanExporter):
    def __init__(self) -> None:
        self.bytes = 0
        self.spans = 0

    def export(self, spans: Any) -> SpanExportResult:
        for span in spans:
            self.bytes += len(span.to_json(indent=None))
            self.spans += 1
        return SpanExportResult.SUCCESS


def run(conn: str, jobs: int, telemetry_on: bool) -> dict[str, float]:
    name = "tel" + uuid.uuid4().hex[:10]
    env = {"AzureWebJobsStorage": conn, "JOBS_QUEUE_NAME": name, "JOBS_TABLE_NAME": name, "JOBS_CONTAINER_NAME": name}
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("jobs")  # what is exported: configure() passes logger_name="jobs"
    exporter = ByteCountingExporter()
    reader = InMemoryMetricReader()
    if telemetry_on:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[reader]))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    else:
        telemetry = Telemetry()  # the global no-op providers
        root.setLevel(logging.WARNING)
    services = build(config_module.load(env), env=env, telemetry=telemetry)
    queue = services.storage.queue
    try:
        start = time.perf_counter()
        for i in range(jobs):
            services.service.submit("echo", {"n": i})
            [message] = list(queue.receive_messages(max_messages=1, visibility_timeout=30))
            services.worker.process(message.content)
            queue.delete_message(message)
        elapsed = time.perf_counter() - start
        metric_bytes = len(reader.get_metrics_data().to_json(indent=None)) if telemetry_on else 0
    finally:
        root.removeHandler(handler)
        for client in (services.storage.queue, services.storage.poison_queue):
            client.delete_queue()
        services.storage.table.delete_table()
        services.storage.container.delete_container()
    return {
        "ms_per_job": elapsed * 1000 / jobs,
        "span_bytes_per_job": exporter.bytes / jobs,
        "spans_per_job": exporter.spans / jobs,
        "log_bytes_per_job": len(stream.getvalue().encode()) / jobs,
        "metric_bytes_per_run": metric_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    off, on = [], []
    with Azurite() as azurite:
        run(azurite.connection_string, 20, False)  # warm up clients and Azurite
        for _ in range(args.runs):  # alternate, so drift hits both alike
            off.append(run(azurite.connection_string, args.jobs, False))
            on.append(run(azurite.connection_string, args.jobs, True))
    med = {k: statistics.median(r[k] for r in on) for k in on[0]}
    base = statistics.median(r["ms_per_job"] for r in off)
    result = {
        "jobs": args.jobs,
        "runs": args.runs,
        "ms_per_job_off": round(base, 2),
        "ms_per_job_on": round(med["ms_per_job"], 2),
        "overhead_ms_per_job": round(med["ms_per_job"] - base, 2),
        "overhead_fraction": round(med["ms_per_job"] / base - 1, 3),
        "spans_per_job": med["spans_per_job"],
        "span_bytes_per_job": round(med["span_bytes_per_job"]),
        "log_bytes_per_job": round(med["log_bytes_per_job"]),
        "metric_bytes_per_collection": med["metric_bytes_per_run"],
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
