"""What a refused value's problem says: the values a field takes, as a client sends them
(`queued`), never a Python enum's repr (`<Status.QUEUED: 'queued'>`)."""

from __future__ import annotations

import pytest

from shared import contract as c
from shared.api import Problem, _model
from shared.job import Status
from shared.schedules import contract as sc


@pytest.mark.parametrize(
    ("model", "data", "named"),
    [
        (c.ListQuery, {"status": "bogus"}, "'queued', 'running', 'succeeded', 'dead_lettered' or 'cancelled'"),
        (c.ListQuery, {"order": "bogus"}, "'newest' or 'oldest'"),
        (c.BulkCancelRequest, {"filter": {"status": "succeeded"}}, "`filter.status`: Input should be 'queued' or"),
        (c.BulkRetryRequest, {"filter": {"status": "queued"}}, "'dead_lettered' or 'cancelled'"),
        (c.JobRequest, {"type": "echo", "priority": "urgent"}, "'high', 'normal' or 'low'"),
        (c.BatchRequest, {"jobs": [{"type": "echo", "priority": "urgent"}]}, "'high', 'normal' or 'low'"),
        (sc.ScheduleRequest, {"cron": "* * * * *", "job": {"type": "echo", "priority": "x"}}, "'high', 'normal'"),
        (sc.ScheduleRequest, {"cron": "* * * * *", "job": {"type": "echo"}, "overlap": "x"}, "'allow' or 'skip'"),
        (sc.SchedulePatch, {"catch_up": "x", "job": {"priority": "x"}}, "'once' or 'skip'"),
    ],
)  # fmt: skip
def test_a_refused_value_is_told_the_values_it_may_take_as_json_has_them(model, data, named):
    with pytest.raises(Problem) as refused:
        _model(model, data)
    detail = refused.value.detail
    assert named in detail and "<" not in detail and "Status." not in detail, detail


def test_the_bulk_filters_take_statuses_that_exist():
    for model in (c.RetryFilter, c.CancelFilter):
        allowed = model.model_json_schema()["properties"]["status"]["anyOf"][0]["enum"]
        assert set(allowed) < {s.value for s in Status}
        assert c.JobFilter.model_validate(model(status=allowed[0]).model_dump()).status is Status(allowed[0])
