"""The dashboard's page and files as the app serves them (the route functions, no host): a strict
Content-Security-Policy on the page, every file the page references (and every module those
import) served with the right content type, nothing else served, and no HTML-string sink in the
scripts."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from shared import dashboard
from shared.api import ApiRequest, ApiResponse, Problem

HERE = Path(dashboard.__file__).parent
PAGE_URL = "http://app.test/api/dashboard"
PREFIX = "/api/dashboard/"
CONTENT_TYPES = {".js": {"text/javascript"}, ".css": {"text/css"}, ".svg": {"image/svg+xml"}}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "data", "srcset"}
# ES module imports: `import x from "./a.js"`, `import "./a.js"`, `export ... from "./a.js"`, `import("./a.js")`.
IMPORTS = re.compile(
    r"""^\s*(?:import|export)\b[^;"'`]*?\bfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']""",
    re.MULTILINE,
)


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []  # inline scripts, styles, handlers and style attributes
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for name, v in attrs if name in URL_ATTRIBUTES and v and not v.startswith("#")]
        self.inline += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on") or name == "style"]
        self._in_script = tag == "script" and not values.get("src")
        if tag == "style":
            self.inline.append("<style>")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"<script>{data.strip()[:60]}")


def page() -> ApiResponse:
    return asyncio.run(dashboard.dashboard(None, ApiRequest()))  # type: ignore[arg-type]


def asset(name: str) -> ApiResponse:
    try:
        return asyncio.run(dashboard.dashboard_asset(None, ApiRequest(route={"file": name})))  # type: ignore[arg-type]
    except Problem as problem:  # as shared.api.handle answers it
        return problem.response()


def directives(header: str) -> dict[str, list[str]]:
    out = {}
    for part in header.split(";"):
        if part.strip():
            name, *sources = part.split()
            out[name.lower()] = sources
    return out


def media_type(response: ApiResponse) -> str:
    return response.content_type.split(";")[0].strip().lower()


def test_the_page_is_html_with_a_strict_content_security_policy():
    response = page()
    assert response.status == 200 and media_type(response) == "text/html"
    csp = directives(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    for name in ("script-src", "style-src", "connect-src", "img-src"):
        assert csp[name] == ["'self'"], f"{name}: the app's own files only, nothing inline"
    for name in ("object-src", "base-uri", "form-action", "frame-ancestors"):
        assert csp[name] == ["'none'"], name
    assert csp["require-trusted-types-for"] == ["'script'"] and csp["trusted-types"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_has_no_inline_script_or_style_and_no_url_off_the_app():
    html = page().encoded().decode()
    parsed = PageParser()
    parsed.feed(html)
    assert not parsed.inline, f"the CSP would block these: {parsed.inline}"
    assert not re.search(r"(?:https?:)?//", html), "a URL in the page points off the app"


def referenced_files() -> dict[str, str]:
    """Every file the page needs, by name, with who references it: the page's own references,
    then the modules those import, transitively."""
    parsed = PageParser()
    parsed.feed(page().encoded().decode())
    found: dict[str, str] = {}
    queue = [(urljoin(PAGE_URL, url), "index.html") for url in parsed.urls]
    while queue:
        url, referrer = queue.pop()
        path = urlsplit(url).path
        assert urlsplit(url).netloc == urlsplit(PAGE_URL).netloc, f"{referrer} references {url}, off the app"
        assert path.startswith(PREFIX) and "/" not in path[len(PREFIX) :], f"{referrer}: {url} is not a dashboard file"
        name = path[len(PREFIX) :]
        if name in found:
            continue
        found[name] = referrer
        if name.endswith(".js"):
            targets = [t for groups in IMPORTS.findall((HERE / name).read_text()) for t in groups if t]
            queue += [(urljoin(url, target), name) for target in targets]
    return found


def test_every_file_the_page_references_is_served_with_the_right_content_type():
    files = referenced_files()
    assert {"main.js", "dashboard.css", "favicon.svg", "api.js", "jobs.js", "job.js", "overview.js"} <= set(files)
    for name, referrer in sorted(files.items()):
        response = asset(name)
        assert response.status == 200 and response.encoded(), f"{name} (from {referrer})"
        suffix = Path(name).suffix
        assert media_type(response) in CONTENT_TYPES[suffix], f"{name} is served as {response.content_type}"
        assert response.headers["X-Content-Type-Options"] == "nosniff", name


def test_every_served_file_is_used_and_every_file_in_the_folder_is_either_served_or_the_page():
    assert set(referenced_files()) == set(dashboard.ASSETS), "a served file nothing loads, or a loaded file not served"
    on_disk = {p.name for p in HERE.iterdir() if p.is_file() and p.suffix in CONTENT_TYPES}
    assert on_disk == set(dashboard.ASSETS)


@pytest.mark.parametrize("name", ["index.html", "__init__.py", "README.md", "..%2F__init__.py", "missing.js", ""])
def test_nothing_else_is_served(name):
    response = asset(name)
    assert (response.status, response.body["code"]) == (404, "not_found")


# Sinks that parse a string as HTML or code. Data must reach the page only as text.
SINKS = re.compile(r"\.innerHTML|\.outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\s*\(|srcdoc")


def test_no_script_builds_markup_or_code_from_strings():
    for path in sorted(HERE.glob("*.js")):
        text = path.read_text()
        assert not SINKS.findall(text), f"{path.name}: {SINKS.findall(text)}"
        assert not re.search(r"setTimeout\(\s*[\"'`]", text), f"{path.name}: setTimeout with a string"
        # Absolute URLs in scripts: SVG's namespace, which is a name, and the Azure portal, which the
        # job page checks the API's trace_url against before it shows it as a link; neither is fetched.
        urls = set(re.findall(r"https?://[^\s\"'`]+", text)) - {
            "http://www.w3.org/2000/svg",
            "https://portal.azure.com/",
        }
        assert not urls, f"{path.name} points off the app: {urls}"


def test_the_stylesheet_loads_nothing():
    css = (HERE / "dashboard.css").read_text()
    assert "url(" not in css and "@import" not in css
