"""Route templates as Functions matches them, without a server."""

from __future__ import annotations

import pytest

from devhost.routes import RouteError, Router, parse_template

GUID = "5f4dcc3b-5aa7-65d6-1d83-27de882cf99a"


@pytest.fixture
def router() -> Router:
    r = Router()
    for template, methods in [
        ("jobs", ["POST"]),
        ("jobs", ["GET"]),
        ("jobs/{id}", ["GET"]),
        ("jobs/batch", ["POST"]),
        ("jobs/{id:int}/x", None),
        ("files/{*rest}", None),
        ("opt/{x?}", None),
        ("dflt/{x=7}", None),
        ("n/{v:int}", None),
        ("n/{v:alpha}", None),
        ("g/{id:guid}", None),
        ("r/{n:range(1,5)}", None),
        ("len/{s:length(2,3)}", None),
        ("re/{s:regex(^ab+$)}", None),
        ("dl/{file}.{ext}", None),
        ("", ["GET"]),
    ]:
        r.add(template, methods, template)
    return r


@pytest.mark.parametrize(
    ("method", "path", "target", "params"),
    [
        ("GET", "/jobs/abc", "jobs/{id}", {"id": "abc"}),
        ("GET", "/jobs/abc/", "jobs/{id}", {"id": "abc"}),  # a trailing slash is ignored
        ("POST", "/jobs/batch", "jobs/batch", {}),  # a literal segment beats a parameter
        ("GET", "/JOBS", "jobs", {}),  # literals match case-insensitively
        ("POST", "/jobs", "jobs", {}),
        ("GET", "/files/a/b/c", "files/{*rest}", {"rest": "a/b/c"}),
        ("GET", "/files", "files/{*rest}", {}),  # a catch-all may be empty
        ("GET", "/opt", "opt/{x?}", {}),
        ("GET", "/opt/1", "opt/{x?}", {"x": "1"}),
        ("GET", "/dflt", "dflt/{x=7}", {"x": "7"}),  # default value
        ("GET", "/n/12", "n/{v:int}", {"v": "12"}),
        ("GET", "/n/ab", "n/{v:alpha}", {"v": "ab"}),  # a failed constraint lets another route match
        ("GET", f"/g/{GUID}", "g/{id:guid}", {"id": GUID}),
        ("GET", "/r/3", "r/{n:range(1,5)}", {"n": "3"}),
        ("GET", "/len/abc", "len/{s:length(2,3)}", {"s": "abc"}),
        ("GET", "/re/ABBB", "re/{s:regex(^ab+$)}", {"s": "ABBB"}),  # regex constraints ignore case
        ("GET", "/dl/report.v2.pdf", "dl/{file}.{ext}", {"file": "report.v2", "ext": "pdf"}),
        ("GET", "", "", {}),
        ("GET", "/", "", {}),
    ],
)
def test_routes_match_like_functions(router, method, path, target, params):
    resolved = router.resolve(method, path)
    assert (resolved.status, resolved.route.target, resolved.params) == (200, target, params)


@pytest.mark.parametrize(
    "path", ["/n/1x", "/g/not-a-guid", "/r/9", "/len/a", "/re/ba", "/jobs/1/2/3", "/jobsx", "/dl/noext"]
)
def test_paths_failing_constraints_or_shape_are_404(router, path):
    assert router.resolve("GET", path).status == 404


def test_wrong_method_is_405_with_the_allowed_methods(router):
    resolved = router.resolve("DELETE", "/jobs")
    assert (resolved.status, resolved.allowed) == (405, frozenset({"GET", "POST"}))


def test_int_constraint_is_a_32_bit_integer(router):
    assert router.resolve("GET", "/jobs/2147483647/x").params == {"id": "2147483647"}
    assert router.resolve("GET", "/jobs/2147483648/x").status == 404


def test_templates_parse_into_literals_and_parameters():
    segments = parse_template("/a/{b:int:min(1)}/{{lit}}/{*rest}")
    assert segments[0] == ["a"] and segments[2] == ["{lit}"]
    assert segments[1][0].name == "b" and segments[1][0].constraints == (("int", None), ("min", "1"))
    assert segments[3][0].catch_all
    assert parse_template("") == [] and parse_template("/") == []


@pytest.mark.parametrize(
    "template", ["a/{b", "a/b}", "a/{*rest}/c", "a/{x?}/c", "a/{x}{y}", "a/{x:nosuch}", "a//b", "a/{x:min(z)}"]
)
def test_bad_templates_are_refused(template):
    with pytest.raises(RouteError):
        Router().add(template, None, None)
