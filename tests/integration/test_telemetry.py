"""What a job emits, captured with in-memory exporters on a real Azurite run: one trace per job,
the metrics with their values, logs carrying the job's attributes."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import api, signals
from shared.telemetry import JsonFormatter, Telemetry
from tests.integration.conftest import blocking, call_api, drop, make_services, run_until


@pytest.fixture
def captured(azurite, unique_name, portal):
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    telemetry = Telemetry(tracer_provider, MeterProvider(metric_readers=[reader]))
    services = make_services(azurite, unique_name, telemetry=telemetry)
    yield blocking(services, portal), spans, reader
    drop(services, portal)


def metric_points(reader) -> dict[str, list]:
    out: dict[str, list] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_job_that_fails_once_then_succeeds_is_one_trace_with_metrics_and_logs(captured, caplog):
    services, spans, reader = captured
    caplog.set_level(logging.INFO)
    job = services.service.submit("fail", {"times": 1}).job
    run_until(services, lambda: services.service.get(job.id).status.terminal)
    services.reconciler.run()

    # One trace: the submit and both attempts share its trace id; the attempts are its children.
    job_spans = [s for s in spans.get_finished_spans() if s.attributes.get(signals.JOB_ID) == job.id]
    names = sorted(s.name for s in job_spans)
    assert names == [signals.SPAN_ATTEMPT, signals.SPAN_ATTEMPT, signals.SPAN_SUBMIT]
    assert len({s.context.trace_id for s in job_spans}) == 1
    submit = next(s for s in job_spans if s.name == signals.SPAN_SUBMIT)
    attempts = sorted((s for s in job_spans if s.name == signals.SPAN_ATTEMPT), key=lambda s: s.start_time)
    assert all(a.parent.span_id == submit.context.span_id for a in attempts)
    assert [a.attributes[signals.OUTCOME] for a in attempts] == ["retry_scheduled", "succeeded"]
    assert [a.attributes[signals.ATTEMPT] for a in attempts] == [1, 2]
    assert all(a.attributes[signals.JOB_TYPE] == "fail" for a in attempts)
    assert all(signals.QUEUE_WAIT_MS in a.attributes for a in attempts)

    # Metrics, by job type, with the right values.
    points = metric_points(reader)
    counted = ("jobs.submitted", "jobs.retried", "jobs.succeeded")
    total = {
        name: sum(p.value for p in pts if p.attributes.get(signals.JOB_TYPE) == "fail")
        for name, pts in points.items()
        if name in counted
    }
    assert total == {"jobs.submitted": 1, "jobs.retried": 1, "jobs.succeeded": 1}
    assert "jobs.dead_lettered" not in points and "jobs.cancelled" not in points
    for histogram in (signals.ATTEMPT_DURATION.name, signals.QUEUE_WAIT.name):
        assert sum(p.count for p in points[histogram]) == 2, histogram
    assert [p.value for p in points[signals.QUEUE_DEPTH.name]] == [0]
    assert [p.value for p in points[signals.POISON_DEPTH.name]] == [0]

    # Logs about the job carry its attributes, and print as JSON lines when asked.
    job_logs = [r for r in caplog.records if getattr(r, signals.JOB_ID, None) == job.id]
    assert {r.getMessage().split(":")[0] for r in job_logs} >= {
        "job submitted",
        "attempt failed, retry scheduled",
        "attempt succeeded",
    }
    for record in job_logs:
        for attr in (signals.JOB_TYPE, signals.ATTEMPT, signals.STATUS):
            assert hasattr(record, attr), (record.getMessage(), attr)
    import json

    line = json.loads(JsonFormatter().format(job_logs[-1]))
    assert line[signals.JOB_ID] == job.id and line[signals.STATUS] == "succeeded"


def test_a_job_submitted_over_http_joins_the_hosts_request_trace(captured):
    """In Azure the host hands the function its span for the request (`context.trace_context`):
    the submit is its child, and the attempt follows, so caller -> API -> queue -> worker is one trace."""
    services, spans, _ = captured
    host_span = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    request = api.ApiRequest(method="POST", body=b'{"type": "echo", "payload": 1}', trace_parent=host_span)
    response = call_api(services, api.submit_job, request)
    assert response.status == 202
    run_until(services, lambda: services.service.get(response.body["id"]).status.terminal)
    job_spans = [s for s in spans.get_finished_spans() if s.attributes.get(signals.JOB_ID) == response.body["id"]]
    assert {f"{s.context.trace_id:032x}" for s in job_spans} == {"0af7651916cd43dd8448eb211c80319c"}
    submit = next(s for s in job_spans if s.name == signals.SPAN_SUBMIT)
    assert f"{submit.parent.span_id:016x}" == "b7ad6b7169203331"
    attempt = next(s for s in job_spans if s.name == signals.SPAN_ATTEMPT)
    assert attempt.parent.span_id == submit.context.span_id


def test_dead_letter_and_cancel_are_counted(captured):
    services, _, reader = captured
    dead = services.service.submit("fail", None, max_attempts=1).job
    run_until(services, lambda: services.service.get(dead.id).status.terminal)
    services.service.cancel(services.service.submit("echo", 1).job.id)
    points = metric_points(reader)
    assert sum(p.value for p in points["jobs.dead_lettered"]) == 1
    assert sum(p.value for p in points["jobs.cancelled"]) == 1


def test_every_metric_in_the_definition_is_emitted(captured):
    """What dashboards query must exist: a run that touches every path emits every metric."""
    services, _, reader = captured
    ok = services.service.submit("fail", {"times": 1}).job
    dead = services.service.submit("fail", None, max_attempts=1).job
    services.service.cancel(services.service.submit("echo", 1, delay_seconds=60).job.id)
    run_until(services, lambda: all(services.service.get(j.id).status.terminal for j in (ok, dead)))
    services.reconciler.run()
    emitted = set(metric_points(reader))
    assert {m.name for m in signals.METRICS} <= emitted


def test_everything_the_dashboards_and_alerts_query_is_emitted(captured, caplog):
    """Run every path against Azurite, capture what is emitted, and check each metric, span,
    dimension and log text the workbook and alerts query for is among it."""
    import re

    from shared.worker import Outcome
    from tools import dashboards

    services, spans, reader = captured
    caplog.set_level(logging.INFO)
    ok = services.service.submit("fail", {"times": 1}).job
    dead = services.service.submit("fail", None, max_attempts=1).job
    services.service.cancel(services.service.submit("echo", 1, delay_seconds=60).job.id)
    run_until(services, lambda: all(services.service.get(j.id).status.terminal for j in (ok, dead)))
    services.reconciler.run()

    finished = spans.get_finished_spans()
    points = metric_points(reader)
    dimensions = {k for sp in finished for k in sp.attributes}
    dimensions |= {k for pts in points.values() for p in pts for k in p.attributes}
    dimensions |= {k for r in caplog.records for k in vars(r)}
    messages = " ".join(r.getMessage() for r in caplog.records)
    outcomes = {str(o) for o in Outcome}

    for query in dashboards.queries():
        for metric in re.findall(r'"(jobs\.[a-z_.]+)"', query):
            assert metric in points, f"{metric!r} is queried but never emitted"
        for span in re.findall(r'requests \| where name == "([^"]+)"', query):
            assert span in {sp.name for sp in finished}, f"span {span!r} is queried but never emitted"
        for dim in re.findall(r"customDimensions\.(\w+)", query):
            assert dim in dimensions, f"dimension {dim!r} is queried but never emitted"
        for text in re.findall(r'message has "([^"]+)"', query):
            assert text in messages, f"log text {text!r} is queried but never logged"
        for value in re.findall(r'in \(("[a-z_]+"(?:, "[a-z_]+")*)\)', query):
            for item in re.findall(r'"([a-z_]+)"', value):
                assert item in outcomes, f"outcome {item!r} is queried but never set"


def test_committed_dashboards_match_the_signal_definitions():
    from tools import dashboards

    for path, text in dashboards.render().items():
        assert path.read_text() == text, f"run `python -m tools.dashboards`: {path.name} is stale"
