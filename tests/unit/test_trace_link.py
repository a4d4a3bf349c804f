"""The link from a job to its telemetry in Application Insights (the Azure portal's Logs, with a
query for the job's operation id): its shape, its query, and when there is none."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from shared.telemetry import trace_portal_url

RESOURCE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-jobs/providers/"
    "Microsoft.Insights/components/appi-jobs"
)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CREATED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FINISHED = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
PREFIX = "https://portal.azure.com/#blade/Microsoft_Azure_Monitoring_Logs/LogsBlade/resourceId/"
QUERY_PART = "/source/LogsBlade.AnalyticsShareLinkToQuery/q/"


def parts(url: str) -> tuple[str, str]:
    assert url.startswith(PREFIX)
    resource, packed = url[len(PREFIX) :].split(QUERY_PART)
    return unquote(resource), gzip.decompress(base64.b64decode(unquote(packed))).decode()


def test_the_link_opens_logs_on_the_resource_with_a_query_for_the_operation_id():
    url = trace_portal_url(RESOURCE, TRACE, CREATED, FINISHED)
    assert url is not None
    resource, query = parts(url)
    assert resource == RESOURCE
    assert query.splitlines() == [
        "union requests, dependencies, traces, exceptions",
        "| where timestamp between (datetime(2026-01-01T11:50:00Z) .. datetime(2026-01-01T13:05:00Z))",
        f'| where operation_Id == "{TRACE}"',
        "| order by timestamp asc",
    ]
    # One path segment each: the resource id's slashes and base64's "/", "+" and "=" are encoded.
    assert url[len(PREFIX) :].count("/") == QUERY_PART.count("/")
    assert trace_portal_url(RESOURCE, TRACE, CREATED, FINISHED) == url  # the same job, the same link


def test_a_job_still_running_has_no_end_to_its_window():
    _, query = parts(trace_portal_url(RESOURCE, TRACE, CREATED, None) or "")
    assert "| where timestamp >= datetime(2026-01-01T11:50:00Z)" in query.splitlines()


@pytest.mark.parametrize(
    ("resource", "trace"),
    [
        ("", TRACE),  # locally: no Application Insights
        (RESOURCE, None),  # the submit was not traced
        (RESOURCE, "not-a-trace-id"),
        ("/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/app", TRACE),  # not a component
        (RESOURCE + "/../../other", TRACE),
    ],
)
def test_no_link_without_a_resource_or_a_trace(resource, trace):
    assert trace_portal_url(resource, trace, CREATED, FINISHED) is None
