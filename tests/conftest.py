"""Fixtures shared by every test: a real Azurite, started once per session on free ports, in memory;
and a real browser (Debian's Chromium driven by Playwright) for tests of pages the app serves."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.blocking import Portal
from tools import chromium
from tools.azurite import Azurite

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def portal() -> Iterator[Portal]:
    """One event loop in a background thread, for sync calls into the async app (tests/blocking.py)."""
    p = Portal()
    yield p
    p.close()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite() as instance:
        yield instance


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name for a queue, table or container, so tests never share state."""
    return "t" + uuid.uuid4().hex[:16]


@pytest.fixture
def storage_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point AzureWebJobsStorage at the test Azurite for the duration of one test."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    return dict(os.environ)


# --- a real browser --------------------------------------------------------------------------------

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Collects what the page reports about Content-Security-Policy: Chromium also logs each violation
# to the console, but the event says which directive and which URL. Init scripts are injected by
# the browser, so the page's own CSP does not stop this one.
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push({
    directive: e.violatedDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber}));
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's, see tools/chromium.py), launched once per test module. Installed
    here if it is missing and we are root (as `make test` does first); the test is skipped, with the
    reason, only when there is no Chromium and it cannot be installed.

    Per module, not per session: while Playwright's sync API is started, this thread counts as
    running an event loop, so `asyncio.run()` fails (the worker runs async handlers with it). Keep
    tests that run async code out of the modules that use the browser."""
    path = chromium.find()
    if path is None and chromium.can_install():
        try:
            path = chromium.install()
        except (subprocess.CalledProcessError, RuntimeError) as exc:
            pytest.skip(f"NO BROWSER: Chromium is missing and installing it failed ({exc}); {chromium.HOW_TO_INSTALL}")
    if path is None:
        pytest.skip(f"NO BROWSER: {chromium.missing_reason()} (and this user cannot install it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(path), args=chromium.LAUNCH_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class WatchedPage:
    """A fresh page (its own context: no cookies or cache from another test) and everything it
    reported: console errors, uncaught exceptions, CSP violations, failed or off-host requests."""

    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    off_host_requests: list[str] = field(default_factory=list)  # blocked: tests never leave the machine
    requests: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[dict[str, Any]]:
        return self.page.evaluate("window.__cspViolations || []")

    def problems(self) -> list[str]:
        """Everything that went wrong, for `assert not watched.problems()`."""
        return [
            *(f"console error: {m}" for m in self.console_errors),
            *(f"uncaught exception: {m}" for m in self.page_errors),
            *(f"CSP violation: {v}" for v in self.csp_violations()),
            *(f"request failed: {r}" for r in self.failed_requests),
            *(f"request off this machine (blocked): {r}" for r in self.off_host_requests),
        ]


@pytest.fixture
def browser_page(browser: Browser) -> Iterator[WatchedPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light", locale="en-US")
    page = context.new_page()
    watched = WatchedPage(page)
    page.add_init_script(_WATCH_CSP)
    page.on("console", lambda m: watched.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: watched.page_errors.append(str(exc)))
    page.on("requestfailed", lambda r: watched.failed_requests.append(f"{r.method} {r.url}: {r.failure}"))
    page.on("request", lambda r: watched.requests.append(r.url))

    def only_local(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).scheme in ("http", "https") and urlsplit(url).hostname not in LOCAL_HOSTS:
            watched.off_host_requests.append(url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", only_local)
    try:
        yield watched
    finally:
        context.close()
