"""The served OpenAPI document against the code it describes, without storage or a host: the HTTP
functions of function_app.py, the problem codes shared/ raises, the registered job types."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

import shared.handlers  # noqa: F401 - registers the shipped job types
from shared import api, apidocs
from shared.apidocs.openapi import openapi_path
from shared.contract import ProblemCode
from shared.registry import registry

REPO = Path(__file__).resolve().parents[2]
CATCH_ALL = "{*path}"  # the fallback route: every request no other route takes, not an operation
ALWAYS = {"429", "500", "503"}  # the host's throttle, a bug, storage down: any route may answer them


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...]  # empty: every method
    anonymous: bool
    module: ModuleType
    user_function: Any


@cache
def http_functions() -> tuple[HttpFunction, ...]:
    """The app's HTTP functions, from a private copy of function_app.py: `get_functions()` may be
    called only once per app object, and another test (or the host) may want `function_app.app`."""
    spec = importlib.util.spec_from_file_location("_function_app_under_test", REPO / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = []
    for f in module.app.get_functions():
        trigger = f.get_trigger()
        if trigger is None or trigger.type != "httpTrigger":
            continue
        methods = tuple(str(getattr(m, "value", m)).upper() for m in (trigger.methods or ()))
        level = str(getattr(trigger.auth_level, "value", trigger.auth_level)).upper()
        out.append(
            HttpFunction(
                f.get_function_name(), trigger.route, methods, level == "ANONYMOUS", module, f.get_user_function()
            )
        )
    return tuple(out)


@cache
def served_document() -> dict[str, Any]:
    """The document exactly as GET /api/openapi.json serves it (the route needs only the registry)."""
    response = asyncio.run(apidocs.openapi(SimpleNamespace(registry=registry), api.ApiRequest()))  # type: ignore[arg-type]
    assert response.status == 200
    return json.loads(response.encoded())


def route_prefix() -> str:
    host = json.loads((REPO / "host.json").read_text())
    return host.get("extensions", {}).get("http", {}).get("routePrefix", "api")


def expected_path(route: str) -> str:
    """Written independently of openapi_path: any constraint (`{id:length(25)}`, `{n:int}`) goes."""
    return "/" + "/".join(p for p in (route_prefix(), re.sub(r"\{(\w+):[^{}]*\}", r"{\1}", route)) if p)


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method.upper()): op
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    }


# --- (a) the functions and the operations ------------------------------------------------------


def test_function_app_has_http_functions_and_one_catch_all():
    functions = http_functions()
    assert len(functions) >= 10
    assert [f.name for f in functions if f.route == CATCH_ALL] == ["fallback"]


def test_every_http_function_is_exactly_one_operation_and_every_operation_a_function():
    documented = operations(served_document())
    bound: dict[tuple[str, str], str] = {}
    for f in http_functions():
        if f.route == CATCH_ALL:
            continue
        assert f.methods, f"{f.name}: an HTTP function other than the fallback should name its methods"
        for method in f.methods:
            key = (expected_path(f.route), method)
            assert key not in bound, f"{f.name} and {bound[key]} both bind {method} {key[0]}"
            bound[key] = f.name
    assert sorted(bound) == sorted(documented), (
        f"functions without an operation: {sorted(set(bound) - set(documented))}; "
        f"operations without a function: {sorted(set(documented) - set(bound))}"
    )
    for key, name in bound.items():
        assert documented[key]["operationId"] == name, f"{key}: operationId is not the function's name {name}"


def test_the_catch_all_route_is_not_documented():
    document = served_document()
    assert not [p for p in document["paths"] if "*" in p or p.rstrip("/") == "/" + route_prefix()]
    assert "fallback" not in {op["operationId"] for op in operations(document).values()}


def test_each_function_runs_the_endpoint_documented_at_its_path_and_method():
    """function_app.py binds a route to an endpoint of shared/api.py by hand: the one it calls must
    be the one whose route, method and auth the document describes."""
    for f in http_functions():
        called: list[api.Route] = []

        async def record(route: api.Route, req: Any, context: Any) -> None:
            called.append(route)  # noqa: B023 - awaited at once

        f.module._http = record
        asyncio.run(f.user_function(None, None))
        (route,) = called
        if f.route == CATCH_ALL:
            assert route is api.fallback
            continue
        (endpoint,) = [e for e in api.ENDPOINTS if e.run is route]
        assert (endpoint.name, endpoint.route, endpoint.anonymous) == (f.name, f.route, f.anonymous)
        assert (endpoint.method,) == f.methods


@pytest.mark.parametrize(
    ("route", "path"),
    [
        ("jobs", "/api/jobs"),
        ("jobs/{id:length(25)}", "/api/jobs/{id}"),
        ("jobs/{id}/cancel", "/api/jobs/{id}/cancel"),
        ("docs/{file}", "/api/docs/{file}"),
    ],
)
def test_openapi_path_drops_route_constraints(route, path):
    assert openapi_path(route) == path == expected_path(route)


def test_anonymous_functions_need_no_key_and_the_others_need_the_function_key():
    document = served_document()
    assert document["security"] == [{"functionKey": []}, {"functionKeyQuery": []}]
    schemes = document["components"]["securitySchemes"]
    assert (schemes["functionKey"]["in"], schemes["functionKey"]["name"]) == ("header", "x-functions-key")
    assert (schemes["functionKeyQuery"]["in"], schemes["functionKeyQuery"]["name"]) == ("query", "code")
    documented = operations(document)
    anonymous = set()
    for f in http_functions():
        if f.route == CATCH_ALL:
            continue
        op = documented[(expected_path(f.route), f.methods[0])]
        if f.anonymous:
            anonymous.add(f.name)
            assert op.get("security") == [], f"{f.name} is anonymous: its operation needs `security: []`"
        else:
            assert "security" not in op, f"{f.name} needs the function key: it must not override `security`"
    assert {"health", "openapi", "docs", "docs_asset"} <= anonymous


def test_optional_query_parameters_may_be_sent_empty():
    """`GET /api/jobs?status=&type=` lists every job: the route takes an empty value as no value,
    and the document has to say so, or a fuzzer (rightly) calls the 200 a contract violation."""
    (list_jobs,) = [op for op in operations(served_document()).values() if op["operationId"] == "list_jobs"]
    query = [p for p in list_jobs["parameters"] if p["in"] == "query"]
    assert {p["name"] for p in query} >= {"status", "type", "since", "until", "limit", "continuation"}
    for p in query:
        assert p.get("allowEmptyValue", False) is not p["required"], p


# --- (b) valid OpenAPI 3.1 ---------------------------------------------------------------------


def test_document_is_valid_openapi_3_1():
    document = served_document()
    assert document["openapi"].startswith("3.1.")
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in OpenAPIV31SpecValidator(document).iter_errors()
    ]
    assert not errors, "\n".join(errors[:20])


def test_every_operation_has_a_unique_operation_id_a_summary_and_a_known_tag():
    document = served_document()
    tags = {t["name"] for t in document["tags"]}
    ids = [op["operationId"] for op in operations(document).values()]
    assert len(ids) == len(set(ids))
    for key, op in operations(document).items():
        assert op.get("summary"), key
        assert set(op["tags"]) <= tags, key


# --- (c) problem codes -------------------------------------------------------------------------


def raised_codes() -> dict[str, list[str]]:
    """Every `code` a `Problem(status, code, ...)` in shared/ is given, by walking the syntax tree:
    string literals, and a parameter of the enclosing function (its default and the literals that
    calls pass for it)."""
    codes: dict[str, list[str]] = {}
    trees = {path: ast.parse(path.read_text(), str(path)) for path in sorted((REPO / "shared").rglob("*.py"))}
    for path, tree in trees.items():
        enclosing: dict[ast.AST, ast.FunctionDef | ast.AsyncFunctionDef | None] = {}
        for node in ast.walk(tree):  # parents before children, so each node's function is known
            for child in ast.iter_child_nodes(node):
                is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                enclosing[child] = node if is_function else enclosing.get(node)
        for call in [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _called(n) == "Problem"]:
            where = f"{path.relative_to(REPO)}:{call.lineno}"
            arg = call.args[1] if len(call.args) > 1 else next(k.value for k in call.keywords if k.arg == "code")
            func = enclosing.get(call)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                values = {arg.value}
            elif isinstance(arg, ast.Name) and func is not None:
                values = _parameter_values(func, arg.id, trees.values())
                assert values, f"{where}: cannot tell which codes `{arg.id}` may hold"
            else:
                raise AssertionError(f"{where}: a Problem's code should be a literal or a parameter")
            for value in values:
                codes.setdefault(value, []).append(where)
    return codes


def _called(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)


def _parameter_values(func: ast.FunctionDef | ast.AsyncFunctionDef, name: str, trees: Any) -> set[str]:
    args = func.args
    positional = [*args.posonlyargs, *args.args]
    defaults = dict(
        zip([a.arg for a in positional][len(positional) - len(args.defaults) :], args.defaults, strict=True)
    )
    defaults.update({a.arg: d for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None})
    values = set()
    if isinstance(defaults.get(name), ast.Constant):
        values.add(defaults[name].value)
    index = [a.arg for a in positional].index(name) if name in [a.arg for a in positional] else None
    for tree in trees:
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and _called(call) == func.name:
                given = [k.value for k in call.keywords if k.arg == name]
                if index is not None and index < len(call.args):
                    given.append(call.args[index])
                values |= {v.value for v in given if isinstance(v, ast.Constant)}
    return values


def test_every_code_shared_raises_is_in_the_documented_enum_and_every_documented_code_is_raised():
    document = served_document()
    documented = document["components"]["schemas"]["ProblemCode"]["enum"]
    assert sorted(documented) == sorted(c.value for c in ProblemCode)
    assert document["components"]["schemas"]["ProblemDetails"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ProblemCode"
    }
    raised = raised_codes()
    undocumented = {code: where for code, where in raised.items() if code not in documented}
    assert not undocumented, f"codes raised but not in ProblemCode: {undocumented}"
    never_raised = sorted(set(documented) - set(raised))
    assert not never_raised, f"documented codes nothing in shared/ raises: {never_raised}"


# --- (d) job types -----------------------------------------------------------------------------


def shipped_handler_types() -> set[str]:
    """The types decorated with `@handler("...")` in shared/handlers.py, read from its source."""
    tree = ast.parse((REPO / "shared" / "handlers.py").read_text())
    return {
        d.args[0].value
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        for d in n.decorator_list
        if isinstance(d, ast.Call) and _called(d) == "handler" and isinstance(d.args[0], ast.Constant)
    }


def test_job_request_type_enum_is_the_registered_job_types():
    schemas = served_document()["components"]["schemas"]
    assert schemas["JobRequest"]["properties"]["type"]["enum"] == registry.types
    assert set(registry.types) == shipped_handler_types() and registry.types
    # A batch's items are the same JobRequest, so they get the same enum.
    assert schemas["BatchRequest"]["properties"]["jobs"]["items"] == {"$ref": "#/components/schemas/JobRequest"}


# --- (e) common responses ----------------------------------------------------------------------


def test_every_operation_documents_429_500_and_503_as_problems():
    for key, op in operations(served_document()).items():
        missing = ALWAYS - set(op["responses"])
        assert not missing, f"{key} does not list {sorted(missing)}"
        for status in ALWAYS:
            content = op["responses"][status]["content"]
            assert content == {api.PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}, key


def test_error_responses_are_problem_details_and_successes_are_not():
    for key, op in operations(served_document()).items():
        for status, response in op["responses"].items():
            if status == "204":  # No Content: no body to describe
                assert "content" not in response, key
                continue
            types = set(response["content"])
            if int(status) >= 400:
                assert types == {api.PROBLEM_JSON}, (key, status)
            else:
                assert api.PROBLEM_JSON not in types, (key, status)


# --- (f) what a bulk action matches --------------------------------------------------------------


def test_the_bulk_routes_say_that_an_empty_filter_matches_every_job_they_apply_to():
    """`{"filter": {}}` cancels every queued and running job with no confirmation: the document and
    the README say so where a caller reads about the routes."""
    documented = {op["operationId"]: op for op in operations(served_document()).values()}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name, matched in (("cancel_jobs", "every queued and running job"),
                          ("retry_jobs", "every dead-lettered and cancelled job")):  # fmt: skip
        description = documented[name]["description"]
        assert '`{"filter": {}}`' in description and matched in description, name
    assert '**`{"filter": {}}` cancels every queued and running job**' in readme
    assert '**`{"filter": {}}` matches every one of them**' in readme


# --- (g) PATCH bodies ----------------------------------------------------------------------------


def _schema(document: dict[str, Any], ref: str) -> dict[str, Any]:
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_patch_bodies_offer_no_default_since_a_field_left_out_stays_as_it_is():
    """A generator that fills in `"default": null` for a left-out field would remove a type's limits
    or a schedule's name the caller never mentioned: no property of a PATCH body (or of an object
    nested in one) has a default."""
    document = served_document()
    seen = []
    for (path, method), op in operations(document).items():
        if method != "PATCH":
            continue
        pending = [op["requestBody"]["content"]["application/json"]["schema"]["$ref"]]
        while pending:
            schema = _schema(document, pending.pop())
            seen.append(schema["title"])
            for name, field in schema["properties"].items():
                assert "default" not in field, (path, schema["title"], name)
                for option in [field, *field.get("anyOf", [])]:
                    if "$ref" in option and _schema(document, option["$ref"]).get("properties"):
                        pending.append(option["$ref"])
    assert {"TypeChange", "SchedulePatch", "JobTemplatePatch"} <= set(seen), seen
