"""The OpenAPI 3.1 document, generated from the endpoint table in shared/api.py and the pydantic
models of shared/contract.py: the same definitions the requests are validated with."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import api
from shared.api import HEADERS, Endpoint

TITLE = "Jobs API"
VERSION = "1.0.0"
DESCRIPTION = """\
Background jobs on Azure Functions, with Azure Storage as the only backing service.

Submit a job (`POST /api/jobs`): it is queued at once and answered `202 Accepted` with a `Location` to
poll and a `Retry-After`. A worker runs it with retries and exponential backoff; a job that runs out
of attempts is `dead_lettered`, and can be redriven. Bulk actions redrive or cancel every job matching
a filter in the background, as an operation to poll.

Errors are `application/problem+json` (RFC 9457) with a machine-readable `code`.
A query parameter an operation does not list is refused (`400 unknown_parameter`); `code`, the function
key, is taken everywhere.
In Azure every route except `/api/health`, `/api/openapi.json` and `/api/docs` needs a function key,
in the `x-functions-key` header (or a `code` query parameter).
"""
SECURITY_SCHEMES = {
    "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                    "description": "A function key of the app (Azure only; the local host needs none)."},
    "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code",
                         "description": "The same key as a query parameter."},
}  # fmt: skip
_PATH_PARAM = re.compile(r"\{(\w+)(?::length\((\d+)\))?\}")  # a Functions route parameter, with its constraint


def openapi_path(route: str) -> str:
    """`jobs/{id:length(25)}` -> `/api/jobs/{id}`: OpenAPI has no constraints in paths."""
    return "/api/" + _PATH_PARAM.sub(lambda m: "{" + m[1] + "}", route)


def document(job_types: list[str], endpoints: list[Endpoint] | None = None) -> dict[str, Any]:
    endpoints = api.ENDPOINTS if endpoints is None else endpoints
    refs, schemas = _schemas(endpoints)
    # The job types are the app's registered handlers: listing them lets a client (and a fuzzer)
    # know which submissions are valid.
    for name, schema in schemas.items():
        if name.startswith(("JobRequest", "JobTemplate")) and "type" in schema.get("properties", {}):
            schema["properties"]["type"]["enum"] = job_types
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        op = paths.setdefault(openapi_path(e.route), {})[e.method.lower()] = _operation(e, refs)
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["name"] == "type":  # a job type: the registered ones
                param["schema"]["enum"] = job_types
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "tags": [
            {"name": "jobs"},
            {"name": "bulk"},
            {"name": "flow", "description": "Pause, resume and limit job types."},
            {"name": "schedules"},
            {"name": "service"},
        ],  # fmt: skip
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": SECURITY_SCHEMES},
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
    }


def _schemas(endpoints: list[Endpoint]) -> tuple[dict[tuple[type[BaseModel], str], dict[str, Any]], dict[str, Any]]:
    wanted: dict[tuple[type[BaseModel], str], None] = {}
    for e in endpoints:
        if e.body is not None:
            wanted[(e.body, "validation")] = None
        for reply in e.replies.values():
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")
    return refs, top.get("$defs", {})  # type: ignore[return-value]


def _operation(e: Endpoint, refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": e.name, "summary": e.summary, "tags": [e.tag]}
    doc = (e.run.__doc__ or "").strip()
    if doc:
        op["description"] = " ".join(doc.split())
    parameters = []
    for name, length in _PATH_PARAM.findall(e.route):
        schema: dict[str, Any] = {"type": "string", "minLength": int(length or 1)}
        if length:
            schema["maxLength"] = int(length)
        schema.update(e.path_values.get(name, {}))
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    if e.query is not None:
        parameters += _query_parameters(e.query)
    for name in e.request_headers:
        description, schema = HEADERS[name]
        parameters.append({"name": name, "in": "header", "required": False, "description": description,
                           "schema": schema})  # fmt: skip
    if parameters:
        op["parameters"] = parameters
    if e.body is not None:
        op["requestBody"] = {
            "required": e.body_required,
            "content": {api.JSON: {"schema": refs[(e.body, "validation")]}},
        }
    op["responses"] = {str(status): _response(reply, refs) for status, reply in sorted(e.replies.items())}
    if e.anonymous:
        op["security"] = []
    return op


def _response(reply: api.Reply, refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.headers:
        out["headers"] = {name: {"description": HEADERS[name][0], "schema": HEADERS[name][1]} for name in reply.headers}
    types = (reply.content_type,) if isinstance(reply.content_type, str) else reply.content_type
    schema = refs[(reply.model, "serialization")] if reply.model is not None else {"type": "string"}
    if types:  # none: an answer without a body (204)
        out["content"] = {t: {"schema": schema} for t in types}
    return out


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        # An optional parameter is absent, never null: keep the non-null branch.
        options = [p for p in prop.pop("anyOf", []) if p.get("type") != "null"]
        if options:
            prop = {**options[0], **prop}
        prop.pop("title", None)
        if prop.get("default", 0) is None:
            prop.pop("default")
        description = prop.pop("description", None)
        if "$ref" in prop:  # an enum: inline it, a query parameter is a plain value
            prop = dict(schema["$defs"][prop["$ref"].rsplit("/", 1)[1]])
            prop.pop("title", None)
        param = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if name not in required:
            # The route takes an empty value as no value (`?status=&type=`, as a form sends them).
            param["allowEmptyValue"] = True
        if description:
            param["description"] = description
        params.append(param)
    return params
