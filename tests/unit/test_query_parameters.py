"""Every route refuses a query parameter it does not document (before it reads or writes
anything), takes the function key's `code` anywhere, and a page takes any query."""

from __future__ import annotations

import asyncio

import pytest

import shared.apidocs  # noqa: F401 - registers every route
import shared.handlers  # noqa: F401
from shared import api, contract


async def no_services():
    raise AssertionError("a refused request must not reach storage")


def call(endpoint: api.Endpoint, query: dict[str, str]) -> api.ApiResponse:
    request = api.ApiRequest(endpoint.method, {}, query, {"content-type": "application/json"}, b"{}")
    return asyncio.run(api.handle(endpoint.run, no_services, request))


@pytest.mark.parametrize("endpoint", [e for e in api.ENDPOINTS if not e.any_query], ids=lambda e: e.name)
def test_a_query_parameter_a_route_does_not_document_is_refused_before_anything_is_done(endpoint):
    known = list(endpoint.query.model_fields) if endpoint.query is not None else []
    r = call(endpoint, {"bogus": "1", "code": "a-function-key", **{name: "" for name in known[:1]}})
    assert (r.status, r.body["code"], r.body["fields"]) == (400, "unknown_parameter", ["bogus"]), r.body
    assert r.body["detail"].endswith(f"takes {', '.join(known) if known else 'none'}"), r.body["detail"]
    assert 400 in endpoint.replies  # and the document says it may


def test_the_message_names_the_route_and_what_it_does():
    (pause,) = [e for e in api.ENDPOINTS if e.name == "pause_all"]
    detail = call(pause, {"type": "sleep"}).body["detail"]
    assert detail == "unknown query parameter(s): type; POST /api/pause (Pause every job type) takes none"
    (get_job,) = [e for e in api.ENDPOINTS if e.name == "get_job"]
    assert "GET /api/jobs/{id} (Get a job)" in call(get_job, {"x": ""}).body["detail"]


def test_pages_and_their_files_take_any_query():
    pages = sorted(e.name for e in api.ENDPOINTS if e.any_query)
    assert pages == ["dashboard", "dashboard_asset", "docs", "docs_asset"]


def test_a_parameter_given_twice_is_named_as_such():
    """The host joins a repeated parameter's values with commas; no valid value holds one."""
    request = api.ApiRequest("GET", {}, {"status": "queued,failed", "limit": "5"}, {}, b"")
    with pytest.raises(api.Problem) as refused:
        api.query_model(contract.ListQuery, request)
    r = refused.value.response()
    assert (r.status, r.body["code"], r.body["fields"]) == (400, "invalid_parameter", ["status"]), r.body
    assert r.body["detail"] == "give each query parameter once, with one value (status=queued,failed)"


def test_health_names_its_dependencies_when_storage_was_down_before_the_first_request():
    """The app's services make the table and queues on first use; when that fails, every route
    answers 503 storage_unavailable but health, which still says what does not answer."""
    from azure.core.exceptions import ServiceRequestError

    async def unreachable():
        raise ServiceRequestError("Connection refused")

    for route, code in ((api.health, "dependency_unavailable"), (api.list_jobs, "storage_unavailable")):
        request = api.ApiRequest("GET", {}, {}, {}, b"")
        r = asyncio.run(api.handle(route, unreachable, request))
        assert (r.status, r.body["code"]) == (503, code), r.body
    assert r.body.get("checks") is None
    r = asyncio.run(api.handle(api.health, unreachable, api.ApiRequest("GET", {}, {}, {}, b"")))
    assert r.body["checks"] == {"table": "ServiceRequestError: Connection refused"} | {
        "queue": "ServiceRequestError: Connection refused"
    }
