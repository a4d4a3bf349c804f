"""/api/docs, Swagger UI served by the app itself: a strict Content-Security-Policy, every file from
the app (no CDN), and a real browser that renders the document and calls the API from the page."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests

pytestmark = pytest.mark.e2e

# What a file's extension must be served as (the part before any `;`).
CONTENT_TYPES = {
    ".js": {"application/javascript", "text/javascript"},
    ".css": {"text/css"},
    ".png": {"image/png"},
    ".json": {"application/json"},
}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "data", "srcset"}


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.inline_scripts: list[str] = []
        self.handlers: list[str] = []  # on* attributes: inline script too
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [(tag, name, value) for name, value in attrs if name in URL_ATTRIBUTES and value]
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]
        self._in_script = tag == "script" and not values.get("src")
        if tag == "style":
            self.inline_scripts.append("<style>")  # style-src allows inline styles, but ours has none

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts.append(data.strip()[:80])


def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name.lower()] = sources
    return directives


def media_type(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def test_docs_page_has_a_strict_csp_and_every_file_it_needs_comes_from_the_app(host):
    page_url = host.url("/api/docs")
    page = requests.get(page_url, timeout=5)
    assert page.status_code == 200 and media_type(page) == "text/html"
    assert page.headers.get("X-Content-Type-Options") == "nosniff"

    csp = csp_directives(page.headers["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"], "scripts from the app only: no inline, no eval, no other host"
    assert csp["default-src"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]  # Swagger UI fetches the document and calls the API, here only
    assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    for name, sources in csp.items():
        off_host = [s for s in sources if s not in ("'self'", "'none'", "'unsafe-inline'", "data:")]
        assert not off_host, f"{name} allows {off_host}"

    parsed = PageParser()
    parsed.feed(page.text)
    assert not parsed.inline_scripts and not parsed.handlers, "the CSP would block inline script"
    assert not re.search(r"(?:https?:)?//", page.text), "a URL in the page points off the host"
    referenced = {urljoin(page_url, value) for _, _, value in parsed.urls}
    assert {urlsplit(u).path for u in referenced} >= {
        "/api/docs/swagger-ui.css",
        "/api/docs/swagger-ui-bundle.js",
        "/api/docs/init.js",
    }

    # init.js loads the document: relative too, and no public validator.
    init = requests.get(host.url("/api/docs/init.js"), timeout=5).text
    assert not re.search(r"https?://", init) and re.search(r"validatorUrl:\s*null", init)
    (document_url,) = re.findall(r"\burl:\s*\"([^\"]+)\"", init)
    referenced.add(urljoin(page_url, document_url))

    for url in sorted(referenced):
        assert urlsplit(url).netloc == urlsplit(host.base).netloc, f"{url} is not on this host"
        r = requests.get(url, timeout=10)
        suffix = re.search(r"\.\w+$", urlsplit(url).path)
        assert r.status_code == 200 and r.content, url
        assert suffix and media_type(r) in CONTENT_TYPES[suffix[0]], f"{url} is served as {media_type(r)}"
        assert r.headers.get("X-Content-Type-Options") == "nosniff" or suffix[0] == ".json", url
    document = requests.get(urljoin(page_url, document_url), timeout=5).json()
    assert document["openapi"].startswith("3.1")

    # The stylesheet needs nothing else from anywhere: its images are data: URLs.
    css = requests.get(host.url("/api/docs/swagger-ui.css"), timeout=5).text
    assert all(u.strip("'\"").startswith("data:") for u in re.findall(r"url\(([^)]*)\)", css))


@pytest.mark.parametrize("name", ["page.html", "openapi.py", "__init__.py", "..%2F__init__.py", "swagger-ui.js"])
def test_docs_serves_only_its_assets(host, name):
    r = requests.get(host.url(f"/api/docs/{name}"), timeout=5)
    assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text


def test_swagger_ui_renders_the_document_and_calls_the_api_in_a_real_browser(host, browser_page, tmp_path):
    page, document = browser_page.page, requests.get(host.url("/api/openapi.json"), timeout=5).json()
    operations = [op for item in document["paths"].values() for op in item.values()]

    started = time.monotonic()
    response = page.goto(host.url("/api/docs"))
    assert response is not None and response.status == 200
    page.get_by_text("Submit a job").first.wait_for(timeout=15_000)
    page.locator('.opblock-summary-path[data-path="/api/jobs"]').first.wait_for()
    rendered = time.monotonic() - started
    assert page.locator(".opblock").count() == len(operations)
    assert page.locator(".info .title").inner_text().startswith(document["info"]["title"])

    # Expand POST /api/jobs and send it from the page (Swagger UI's "Try it out" is on).
    submit = page.locator("#operations-jobs-submit_job")
    submit.locator(".opblock-summary").click()
    body = submit.locator(".body-param textarea")
    body.fill(json.dumps({"type": "echo", "payload": {"from": "swagger-ui"}}, indent=2))
    submit.get_by_role("button", name="Execute").click()
    status = submit.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=15_000)
    assert status.inner_text().strip().startswith("202"), submit.locator(".live-responses-table").inner_text()
    status.scroll_into_view_if_needed()
    page.mouse.move(0, 0)
    page.screenshot(path=str(tmp_path / "swagger-ui.png"))
    print(
        f"\nSwagger UI rendered {len(operations)} operations in {rendered:.1f} s; screenshot: {tmp_path}/swagger-ui.png"
    )

    listed = requests.get(host.url("/api/jobs"), params={"type": "echo"}, timeout=5).json()["jobs"]
    assert [j["payload"] for j in listed] == [{"from": "swagger-ui"}]
    assert not browser_page.problems(), "\n".join(browser_page.problems())
    off_host = [u for u in browser_page.requests if not u.startswith(host.base) and not u.startswith("data:")]
    assert not off_host, off_host


@pytest.mark.parametrize(
    ("path", "location"),
    [("/api/docs/", "../docs"), ("/api/docs//", "../../docs"), ("/api/dashboard/?a=1", "../dashboard?a=1")],
)
def test_a_page_asked_for_with_a_trailing_slash_redirects_to_its_own_url(host, path, location):
    r = requests.get(host.url(path), timeout=5, allow_redirects=False)
    # Relative, as browsers resolve it (WHATWG URL: one "../" per empty segment; Python's urljoin
    # collapses them, so the browser tests follow the redirects).
    assert (r.status_code, r.headers.get("Location")) == (308, location)


def test_swagger_ui_under_a_trailing_slash_renders_in_a_real_browser(host, browser_page):
    page = browser_page.page
    response = page.goto(host.url("/api/docs/"))
    assert response is not None and response.status == 200
    assert urlsplit(page.url).path == "/api/docs"
    page.locator('.opblock-summary-path[data-path="/api/jobs"]').first.wait_for(timeout=15_000)
    assert not browser_page.problems(), "\n".join(browser_page.problems())
