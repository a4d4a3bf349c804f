"""The dashboard (/api/dashboard) in a real browser (Debian's Chromium driven by Playwright), against
the app under the local host on a real Azurite: jobs submitted through the API appear without a
reload, dead letters are filtered, opened and retried, a filter is redriven in bulk with a
confirmation and a progress bar, data shows as text, the key is asked for and kept out of URLs,
polling pauses in a hidden tab, the keyboard reaches the controls. The screenshots in docs/images
come from here."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from shared.flow.settings import CACHE_SECONDS
from tests.conftest import WatchedPage
from tools.azurite import REPO_ROOT

pytestmark = pytest.mark.e2e

IMAGES = REPO_ROOT / "docs" / "images"
MAX_SCREENSHOT_BYTES = 250 * 1024
XSS = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"


def submit_batch(host, jobs: list[dict[str, Any]]) -> list[str]:
    ids = []
    for start in range(0, len(jobs), 100):
        r = requests.post(host.url("/api/jobs/batch"), json={"jobs": jobs[start : start + 100]}, timeout=15)
        assert r.status_code == 202, r.text
        ids += [j["id"] for j in r.json()["jobs"]]
    return ids


def listed(host, **query: Any) -> list[dict[str, Any]]:
    jobs, continuation = [], None
    while True:
        params = {**query, "limit": 200, **({"continuation": continuation} if continuation else {})}
        page = requests.get(host.url("/api/jobs"), params=params, timeout=10).json()
        jobs += page["jobs"]
        continuation = page["continuation"]
        if not continuation:
            return jobs


def wait_until(predicate, timeout: float = 20, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def until(page, expression: str, timeout: float = 15) -> None:
    """Wait until a JavaScript expression is true in the page. (Playwright's wait_for_function
    evaluates a string with eval, which the page's CSP forbids, as it should.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {expression}")
        time.sleep(0.1)


def open_dashboard(watched: WatchedPage, host, view: str = "#/") -> None:
    response = watched.page.goto(host.url(f"/api/dashboard{view}"))
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]


def rows(page) -> int:
    return page.locator("#jobs-table tbody tr").count()


def set_hidden(page, hidden: bool) -> None:
    """Emulate the tab being hidden or shown again, as the browser tells the page."""
    state = "hidden" if hidden else "visible"
    page.evaluate(
        """([state, hidden]) => {
            Object.defineProperty(document, "visibilityState", {configurable: true, get: () => state});
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        [state, hidden],
    )


def api_requests(watched: WatchedPage, host) -> list[str]:
    return [u for u in watched.requests if u.startswith(host.url("/api/")) and "/api/dashboard" not in u]


# Chromium fetches the tab's icon again on every in-page navigation (a hash change) and drops the
# fetch under way when the next one comes: the browser's own doing, not a request of the page.
ICON_DROPPED = r"favicon\.svg: net::ERR_ABORTED$"


def assert_no_problems(watched: WatchedPage, allowed: str | None = None) -> None:
    problems = [
        p for p in watched.problems() if not re.search(ICON_DROPPED, p) and not (allowed and re.search(allowed, p))
    ]
    assert not problems, "\n".join(problems)


# --- the jobs view ------------------------------------------------------------------------------


def test_jobs_appear_without_a_reload_page_by_page_and_the_view_is_live_keyboard_usable_and_pausable(
    host, browser_page
):
    page = browser_page.page
    first = submit_batch(host, [{"type": "echo", "payload": {"n": n}} for n in range(3)])
    wait_until(lambda: len(listed(host, status="succeeded")) == 3, what="3 jobs to succeed")

    started = time.monotonic()
    open_dashboard(browser_page, host, "#/jobs")
    page.locator("#jobs-table tbody tr").first.wait_for()
    seen = time.monotonic() - started
    mark = page.evaluate("performance.getEntriesByName('dashboard:jobs-rendered')[0].startTime")
    print(f"\ndashboard: navigation to the first render of the jobs table: {seen * 1000:.0f} ms "
          f"(the page's own mark: {mark:.0f} ms after navigation start)")  # fmt: skip
    assert rows(page) == 3
    page.evaluate("window.__sameDocument = true")

    # New jobs show up by themselves, newest first.
    more = submit_batch(host, [{"type": "echo", "payload": {"n": n}} for n in range(5)])
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 8", 15)
    assert page.locator("#jobs-table tbody tr").first.get_attribute("data-id") in more
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    # A page of 50, then "Load more" with the continuation token.
    submit_batch(host, [{"type": "echo", "payload": {"n": n}} for n in range(60)])
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 50", 15)
    assert page.locator("#load-more").is_visible()
    page.locator("#load-more").click()
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 68", 15)
    assert page.locator("#load-more").is_hidden()
    # Oldest first is the API's order=oldest, paged with its own continuation token the same way.
    page.select_option("#f-order", "oldest")
    assert "order=oldest" in page.url
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 50", 15)
    until(page, f"{first!r}.includes(document.querySelector('#jobs-table tbody tr').dataset.id)")
    assert "from the oldest job kept" in page.locator("#order-note").inner_text()
    page.locator("#load-more").click()
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 68", 15)
    shown = page.evaluate("[...document.querySelectorAll('#jobs-table tbody tr')].map((r) => r.dataset.id)")
    assert shown == [j["id"] for j in listed(host, order="oldest")]
    assert any("order=oldest" in u and "continuation=" in u for u in api_requests(browser_page, host))
    # A relative due time is made absolute once per load: Load more pages on with the same times
    # (a token is only good for the times it was issued for).
    page.select_option("#f-range", "1h")
    until(page, "location.hash.includes('since=1h')")
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 50", 15)
    page.locator("#load-more").click()
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 68", 15)
    assert page.locator("#banner").is_hidden()

    # A refresh keeps the scroll position and what was loaded.
    page.evaluate("window.scrollTo(0, 600)")
    before = page.locator("#live").inner_text()
    until(page, f"document.querySelector('#live').textContent !== {before!r}", 15)
    assert page.evaluate("window.scrollY") == 600 and rows(page) == 68

    # Clear filters; the keyboard reaches every filter control, with a visible focus ring.
    page.locator("#clear-filters").click()
    until(page, "location.hash === '#/jobs'")
    # A reload would abort a request under way: wait for the cleared list, then for quiet.
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 50", 15)
    page.wait_for_load_state("networkidle")
    page.reload()  # from the top of a fresh page
    page.locator("#jobs-table tbody tr").first.wait_for()
    reached, rings = [], {}
    for _ in range(25):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return [e.id, s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2]; })()"
        )
        reached.append(focused[0])
        rings[focused[0]] = focused[1]
    controls = ["f-search", "f-status", "f-type", "f-range", "f-order", "retry-all", "cancel-all"]
    assert set(controls) <= set(reached), reached
    assert all(rings[c] for c in controls), rings
    assert reached.index("f-search") < reached.index("f-status") < reached.index("f-order")

    # Search by id goes straight to the job.
    target = more[2]
    page.locator("#f-search").fill(target)
    page.keyboard.press("Enter")
    until(page, f"location.hash === '#/jobs/{target}'")
    page.locator("#job-status .status").wait_for()
    assert page.locator("#job-id").inner_text() == target
    assert page.locator("#job-status").inner_text() == "Succeeded"

    # A hidden tab asks nothing and says it is paused; it resumes on return.
    set_hidden(page, True)
    page.locator("#live[data-state='paused']").wait_for(timeout=5_000)
    assert "Paused" in page.locator("#live").inner_text()
    asked = len(api_requests(browser_page, host))
    time.sleep(6)  # longer than the 5 s rhythm
    assert len(api_requests(browser_page, host)) == asked, "the page polled while hidden"
    set_hidden(page, False)
    page.locator("#live[data-state='live']").wait_for(timeout=10_000)
    assert len(api_requests(browser_page, host)) > asked

    assert_no_problems(browser_page)


def test_filter_to_dead_letters_open_one_retry_it_and_watch_it_change_state(host, browser_page):
    page = browser_page.page
    doomed = submit_batch(host, [{"type": "fail", "max_attempts": 1, "payload": {"n": n}} for n in range(2)])
    submit_batch(host, [{"type": "echo", "payload": n} for n in range(3)])
    wait_until(lambda: len(listed(host, status="dead_lettered")) == 2, what="2 dead letters")
    wait_until(lambda: len(listed(host, status="succeeded")) == 3, what="3 successes")

    open_dashboard(browser_page, host, "#/jobs")
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 5")
    page.select_option("#f-status", "dead_lettered")
    until(page, "location.hash === '#/jobs?status=dead_lettered'")
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 2")
    statuses = page.locator("#jobs-table tbody tr .status").all_inner_texts()
    assert statuses == ["Dead-lettered", "Dead-lettered"]
    assert page.locator("#cancel-all").is_disabled() and page.locator("#retry-all").is_enabled()

    page.locator("#jobs-table tbody tr a.job-id").first.click()
    page.locator("#job-retry").wait_for()
    job_id = page.locator("#job-id").inner_text()
    assert job_id in doomed and page.locator("#job-cancel").count() == 0
    assert page.locator("#timeline .event-failed").count() == 1
    assert "RuntimeError" in page.locator("#timeline .event-failed").inner_text()

    page.locator("#job-retry").click()
    # The answer shows at once (queued again, attempt 2), then the job runs and fails again.
    page.locator("#action-message").filter(has_text="Queued again: attempt 2 of 2").wait_for(timeout=10_000)
    page.locator("#job-status").filter(has_text="Dead-lettered").wait_for(timeout=20_000)
    until(page, "document.querySelectorAll('#timeline .event-failed').length === 2", 20)
    assert "2 of 2" in page.locator("#job-facts").inner_text()
    assert requests.get(host.url(f"/api/jobs/{job_id}"), timeout=5).json()["attempt"] == 2

    # The view is its URL: a reload shows the same job.
    page.wait_for_load_state("networkidle")
    page.reload()
    page.locator("#job-retry").wait_for()
    assert page.locator("#job-id").inner_text() == job_id

    # Cancel is offered only while a job may still run; then Retry is.
    (later,) = submit_batch(host, [{"type": "sleep", "payload": {"seconds": 1}, "delay_seconds": 900}])
    page.goto(host.url(f"/api/dashboard#/jobs/{later}"))
    page.locator("#job-cancel").wait_for()
    assert page.locator("#job-retry").count() == 0
    page.locator("#job-cancel").click()
    page.locator("#job-status").filter(has_text="Cancelled").wait_for(timeout=10_000)
    page.locator("#job-retry").wait_for()
    assert requests.get(host.url(f"/api/jobs/{later}"), timeout=5).json()["status"] == "cancelled"

    assert_no_problems(browser_page)


def test_bulk_redrive_of_a_filter_with_a_confirmation_that_counts_and_a_progress_bar(host, browser_page):
    page = browser_page.page
    n = 150  # the operation works a page of 100 at a time: two pages
    submit_batch(host, [{"type": "fail", "max_attempts": 1, "payload": {"n": i}} for i in range(n)])
    submit_batch(host, [{"type": "echo", "payload": i} for i in range(5)])
    wait_until(lambda: len(listed(host, status="dead_lettered", type="fail")) == n, what=f"{n} dead letters")

    open_dashboard(browser_page, host, "#/jobs?status=dead_lettered&type=fail")
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 50")
    assert page.locator("#f-type").input_value() == "fail"

    page.locator("#retry-all").click()
    dialog = page.locator("#bulk-dialog")
    dialog.wait_for()
    assert page.evaluate("document.activeElement.id") == "bulk-back", "focus moves into the dialog"
    page.locator("#bulk-count").filter(has_text=f"{n} jobs match.").wait_for(timeout=10_000)
    assert "dead-lettered, of type fail" in dialog.inner_text()
    assert page.locator("#bulk-confirm").inner_text() == f"Retry {n} jobs"
    page.locator("#bulk-confirm").click()

    panel = page.locator("#bulk-panel")
    panel.wait_for()
    progress = []
    deadline = time.monotonic() + 30
    while panel.get_attribute("data-status") == "running" and time.monotonic() < deadline:
        progress.append(page.evaluate("(p => [p.value, p.max])(document.querySelector('#bulk-progress'))"))
        time.sleep(0.05)
    assert panel.get_attribute("data-status") == "succeeded", panel.inner_text()
    assert page.evaluate("(p => [p.value, p.max])(document.querySelector('#bulk-progress'))") == [n, n]
    assert f"{n} redriven, 0 skipped" in page.locator("#bulk-text").inner_text()
    assert all(value <= maximum == n for value, maximum in progress), progress
    print(f"\nbulk progress bar while the operation ran (value, max): {sorted(set(map(tuple, progress)))}")

    # Each ran once more (and failed again): attempt 2 everywhere.
    wait_until(
        lambda: [j["attempt"] for j in listed(host, status="dead_lettered", type="fail")] == [2] * n,
        what="every redriven job to dead-letter again at attempt 2",
    )
    page.locator("#bulk-dismiss").click()
    assert panel.is_hidden()
    assert_no_problems(browser_page)


# --- safety -------------------------------------------------------------------------------------


def test_a_payload_holding_markup_shows_as_text_and_runs_nothing(host, browser_page):
    page = browser_page.page
    (job_id,) = submit_batch(host, [{"type": "echo", "payload": {"html": XSS}}])
    host.wait_for(job_id, lambda j: j["status"] == "succeeded")

    open_dashboard(browser_page, host, f"#/jobs/{job_id}")
    page.locator("#job-payload").wait_for()
    assert XSS in page.locator("#job-payload").inner_text()
    assert XSS in page.locator("#job-result").inner_text()
    page.goto(host.url("/api/dashboard#/jobs"))
    page.locator("#jobs-table tbody tr").first.wait_for()
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("main img, main script").count() == 0
    assert_no_problems(browser_page)


def test_the_function_key_is_asked_for_kept_in_the_session_and_never_put_in_a_url(start_host, browser_page):
    key = "dashboard-test-key-0123456789"
    host = start_host("--function-key", key)
    page = browser_page.page
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("x-functions-key"))))

    open_dashboard(browser_page, host, "#/jobs")  # the page itself needs no key
    page.locator("#key-dialog[open]").wait_for(timeout=10_000)
    assert page.locator("#key-input").get_attribute("type") == "password"
    page.locator("#key-input").fill("not-the-key")
    page.keyboard.press("Enter")
    page.locator("#key-error").filter(has_text="refused").wait_for(timeout=10_000)
    page.locator("#key-input").fill(key)
    page.keyboard.press("Enter")
    page.locator("#jobs-empty").filter(has_text="No jobs yet").wait_for(timeout=10_000)

    assert page.evaluate("sessionStorage.length") == 1
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""
    assert all(key not in url for url, _ in sent) and key not in page.url
    api_calls = [(u, k) for u, k in sent if "/api/jobs" in u]
    assert api_calls and api_calls[-1][1] == key
    assert key not in page.content()

    # "Forget key" drops it; the next answer is a 401, and the dialog comes back.
    page.locator("#forget-key").click()
    page.locator("#key-dialog[open]").wait_for(timeout=10_000)
    assert page.evaluate("sessionStorage.length") == 0
    page.locator("#key-cancel").click()
    page.locator("#banner").filter(has_text="needs a function key").wait_for()
    # The browser logs each refused request as a console error: those are expected here.
    assert_no_problems(browser_page, allowed=r"status of 401")


def test_storage_not_answering_shows_a_banner_and_the_page_recovers(host, browser_page):
    """A 503 from the API (storage down) is simulated by the browser, so the rest of the suite's
    Azurite stays up: the banner says so, the data already shown stays, and it clears itself."""
    page = browser_page.page
    submit_batch(host, [{"type": "echo", "payload": 1}])
    open_dashboard(browser_page, host, "#/jobs")
    page.locator("#jobs-table tbody tr").first.wait_for()

    problem = {"type": "urn:problem:jobs:storage-unavailable", "title": "Service Unavailable", "status": 503,
               "detail": "storage did not answer; try again", "code": "storage_unavailable"}  # fmt: skip
    health = {**problem, "code": "dependency_unavailable", "detail": "not answering: table",
              "checks": {"table": "timeout", "queue": "ok"}}  # fmt: skip
    problem_json = "application/problem+json"
    page.route("**/api/jobs?*", lambda route: route.fulfill(status=503, json=problem, content_type=problem_json))
    page.route("**/api/health", lambda route: route.fulfill(status=503, json=health, content_type=problem_json))
    page.locator("#refresh-now").click()
    banner = page.locator("#banner")
    banner.filter(has_text="Storage is not answering").wait_for(timeout=10_000)
    banner.filter(has_text="table: timeout").wait_for(timeout=10_000)
    assert rows(page) == 1, "the last data received stays on screen"
    assert page.locator("#live").get_attribute("data-state") == "error"

    page.unroute("**/api/jobs?*")
    page.unroute("**/api/health")
    page.locator("#refresh-now").click()
    banner.wait_for(state="hidden", timeout=10_000)
    assert_no_problems(browser_page, allowed=r"status of 503")


# --- the overview and the screenshots -------------------------------------------------------------


def test_overview_from_a_realistic_mix_and_the_screenshots(host, browser, tmp_path):
    mix = (
        [{"type": "echo", "payload": {"order": n, "sku": f"A-{n:04d}"}} for n in range(46)]
        + [{"type": "fail", "max_attempts": 3, "payload": {"invoice": n}} for n in range(5)]
        + [{"type": "fail", "max_attempts": 3, "payload": {"times": 1, "report": n}} for n in range(4)]
        + [{"type": "sleep", "payload": {"seconds": 2}, "delay_seconds": 900} for _ in range(3)]  # queued
        + [{"type": "sleep", "payload": {"seconds": 120}} for _ in range(2)]  # running (stopped with the host)
    )
    # The running sleeps hold the slots of a concurrency limit, for the types view's picture.
    requests.patch(host.url("/api/types/sleep"), json={"max_concurrency": 2}, timeout=10).raise_for_status()
    settle_flow()
    submit_batch(host, mix)
    wait_until(lambda: len(listed(host, status="dead_lettered")) == 5, timeout=30, what="5 dead letters")
    wait_until(lambda: len(listed(host, status="succeeded")) == 50, timeout=30, what="50 successes")

    def counted() -> bool:
        stats = requests.get(host.url("/api/stats"), timeout=5).json()
        hour = stats["last_hour"]
        done = hour["dead_lettered"] == 5 and hour["succeeded"] == 50 and hour["running"] == 2
        return done and len(stats["recent_dead_letters"]) == 5 and stats["queue"]["depth"] >= 3

    wait_until(counted, timeout=30, what="the reconciler to count the mix")

    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light", locale="en-US")
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(host.url("/api/dashboard#/?range=1h"))
        page.locator("#dead-letters tbody tr").first.wait_for()
        tiles = page.locator(".counts").first
        assert tiles.locator("[data-status=dead_lettered]").inner_text() == "5"
        assert tiles.locator("[data-status=succeeded]").inner_text() == "50"
        assert tiles.locator("[data-status=running]").inner_text() == "2"
        assert page.locator("#dead-letters tbody tr").count() == 5
        assert "failing on purpose" in page.locator("#dead-letters").inner_text()
        assert page.locator("svg.chart rect.bar-succeeded").count() >= 1
        assert int(page.locator("#queue-depth").inner_text()) >= 3  # the delayed jobs' messages
        assert page.locator("#as-of").inner_text().startswith("Counts as of")
        page.locator("[aria-pressed='true']").filter(has_text="1h").wait_for()
        page.mouse.move(0, 0)
        shots = {"dashboard-overview.png": page.screenshot()}
        page.locator("#dead-letters tbody tr a").first.click()
        page.locator("#timeline .event-failed").nth(2).wait_for()
        page.mouse.move(0, 0)
        shots["dashboard-job.png"] = page.screenshot()
        # The types view: a type paused, one rate-limited, one at its concurrency limit.
        requests.patch(host.url("/api/types/fail"), json={"paused": True}, timeout=10).raise_for_status()
        rate = {"rate_limit": {"limit": 100, "period_seconds": 60}}
        requests.patch(host.url("/api/types/echo"), json=rate, timeout=10).raise_for_status()
        page.locator("nav a[data-view='types']").click()
        page.locator("#types-table tr[data-type='fail'][data-state='paused']").wait_for()
        assert page.locator("#types-table tr[data-type='sleep'] td.concurrency").inner_text() == "2 running of 2"
        assert page.locator("#types-table tr[data-type='echo'] td.rate").inner_text() == "100 per minute"
        page.mouse.move(0, 0)
        shots["dashboard-types.png"] = page.screenshot()
        assert not errors, errors
    finally:
        context.close()

    # The README's pictures are rewritten only when asked (JOBS_UPDATE_SCREENSHOTS=1), so a test run
    # leaves the working tree as it found it.
    folder = IMAGES if os.environ.get("JOBS_UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for name, png in shots.items():
        assert len(png) < MAX_SCREENSHOT_BYTES, f"{name} is {len(png) // 1024} KB"
        (folder / name).write_bytes(png)
        print(f"\n{folder / name}: {len(png) // 1024} KB")


def test_a_last_hour_tile_lists_the_jobs_it_counts_not_those_due_later(host, browser_page):
    """The overview counts jobs due in the last hour; its tile's link lists those, not also the
    jobs submitted with a start time still ahead."""
    page = browser_page.page
    (later,) = submit_batch(host, [{"type": "echo", "delay_seconds": 600}])
    (now,) = submit_batch(host, [{"type": "echo"}])
    wait_until(lambda: api_job(host, now)["status"] == "succeeded", timeout=20, what="the job to run")
    time.sleep(2.5)  # the reconciler counts every 2 s here
    open_dashboard(browser_page, host, "#/")
    tile = page.locator(".counts").first.locator(".tile-queued a")
    tile.wait_for(timeout=10_000)
    tile.click()
    until(page, "location.hash.includes('status=queued') && location.hash.includes('since=1h')")
    deadline = time.monotonic() + 10
    while not any("status=queued" in u and "until=" in u for u in api_requests(browser_page, host)):
        assert time.monotonic() < deadline, api_requests(browser_page, host)[-3:]  # jobs due until now
        page.wait_for_timeout(200)  # (Playwright reports requests only while it is called)
    page.locator("#jobs-table tbody tr, #jobs-empty").first.wait_for(timeout=10_000)
    shown = page.evaluate("[...document.querySelectorAll('#jobs-table tbody tr')].map((r) => r.dataset.id)")
    assert later not in shown
    page.goto(host.url("/api/dashboard#/jobs?status=queued"))  # with no due-time filter it is listed
    page.locator(f"#jobs-table tbody tr[data-id='{later}']").wait_for(timeout=10_000)
    assert_no_problems(browser_page)


def test_a_filter_the_list_cannot_use_is_said_so_and_lists_or_offers_to_cancel_nothing(host, browser_page):
    """A mistyped status in the URL once listed every job, with "Cancel all matching" aimed at
    every queued and running one; a Find the API refused left the list loading for ever."""
    page = browser_page.page
    open_dashboard(browser_page, host, "#/jobs?status=done&since=yesterday")
    problems = page.locator("#filter-problems")
    problems.wait_for(timeout=10_000)
    assert '"done" is not a status' in problems.inner_text() and 'since "yesterday"' in problems.inner_text()
    assert page.locator("#jobs-table tbody tr").count() == 0
    assert page.locator("#cancel-all").is_disabled() and page.locator("#retry-all").is_disabled()
    assert not [u for u in api_requests(browser_page, host) if "/api/jobs?" in u or u.endswith("/api/jobs")]

    page.locator("#filter-problems + button").click()  # Clear filters
    until(page, "location.hash === '#/jobs'")
    until(page, "document.querySelector('#jobs-summary').textContent !== 'Loading…'")
    for typed in ("since:yesterday", "since:7", "hello world", "status:done"):
        page.locator("#f-search").fill(typed)
        page.locator("#f-search").press("Enter")
        help_text = page.locator("#search-help.error-text")
        help_text.wait_for(timeout=5_000)
        assert page.evaluate("location.hash") == "#/jobs", typed  # nothing applied
        assert page.locator("#f-search").get_attribute("aria-invalid") == "true"
    assert '"done" is not a status' in page.locator("#search-help").inner_text()
    page.locator("#f-search").fill("status:queued since:1h")
    assert page.locator("#search-help.error-text").count() == 0  # typing again clears the complaint
    page.locator("#f-search").press("Enter")
    until(page, "location.hash.includes('status=queued') && location.hash.includes('since=1h')")
    # A time as the "Between…" range writes it (RFC 3339) is taken, and asked of the API.
    page.goto(host.url("/api/dashboard#/jobs?since=2026-01-01T00:00:00.000Z"))
    deadline = time.monotonic() + 10
    while not any("since=2026-01-01" in u for u in api_requests(browser_page, host)):
        assert time.monotonic() < deadline, api_requests(browser_page, host)[-3:]
        page.wait_for_timeout(200)  # (Playwright reports requests only while it is called)
    assert page.locator("#filter-problems").count() == 0
    assert_no_problems(browser_page)


@pytest.mark.parametrize("slashes", ["/", "//"])
def test_the_dashboard_under_a_trailing_slash_redirects_and_renders(host, browser_page, slashes):
    page = browser_page.page
    response = page.goto(host.url(f"/api/dashboard{slashes}#/jobs"))
    assert response is not None and response.status == 200
    assert page.url == host.url("/api/dashboard#/jobs")  # the view (the fragment) survives the redirect
    page.locator("#view-title").wait_for()
    assert page.locator("#view-title").inner_text() == "Jobs"
    assert_no_problems(browser_page)


APPINSIGHTS = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-jobs/providers/"
    "Microsoft.Insights/components/appi-jobs"
)


def test_the_job_page_links_to_application_insights_only_where_the_app_knows_its_resource(start_host, browser_page):
    page = browser_page.page
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    local = start_host()  # as under `make run`: no Application Insights
    job_id = local.submit({"type": "echo"}, headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}).json()["id"]
    local.wait_for(job_id, lambda j: j["status"] == "succeeded")
    open_dashboard(browser_page, local, f"#/jobs/{job_id}")
    page.locator("#job-status .status").wait_for()
    assert page.locator("#job-facts").inner_text().count(trace) == 1
    assert page.locator("#job-trace-link").count() == 0
    assert "Transaction search" in page.locator("#job-traces").inner_text()

    page.goto("about:blank")  # no poll while the host restarts
    os.killpg(local.proc.pid, signal.SIGTERM)  # the same app and storage, now with the setting Azure has
    local.proc.wait(timeout=15)
    azure = start_host(JOBS_APPINSIGHTS_RESOURCE_ID=APPINSIGHTS)
    open_dashboard(browser_page, azure, f"#/jobs/{job_id}")
    link = page.locator("#job-trace-link")
    link.wait_for()
    expected = requests.get(azure.url(f"/api/jobs/{job_id}"), timeout=5).json()["trace_url"]
    assert link.get_attribute("href") == expected
    assert "%2Fcomponents%2Fappi-jobs/source/LogsBlade.AnalyticsShareLinkToQuery/q/" in expected
    assert (link.get_attribute("target"), link.get_attribute("rel")) == ("_blank", "noopener noreferrer")
    assert trace in page.locator("#job-traces").inner_text()
    assert_no_problems(browser_page)


# --- flow control: types, priorities, start times -----------------------------------------------


def api_job(host, job_id: str) -> dict[str, Any]:
    r = requests.get(host.url(f"/api/jobs/{job_id}"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def api_type(host, job_type: str) -> dict[str, Any]:
    r = requests.get(host.url(f"/api/types/{job_type}"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def type_row(page, job_type: str):
    return page.locator(f"#types-table tbody tr[data-type='{job_type}']")


def settle_flow() -> None:
    """Every instance reads the flow settings again within CACHE_SECONDS."""
    time.sleep(CACHE_SECONDS + 0.5)


def test_pause_a_type_from_the_page_its_jobs_stay_queued_and_resume_runs_them_without_a_reload(host, browser_page):
    page = browser_page.page
    open_dashboard(browser_page, host, "#/types")
    row = type_row(page, "echo")
    row.wait_for()
    page.evaluate("window.__sameDocument = true")
    assert row.get_attribute("data-state") == "active" and "Active" in row.inner_text()
    assert page.locator("#paused-all").is_hidden()

    row.locator("button.pause-toggle").click()
    page.locator("#types-message").filter(has_text="Paused echo").wait_for(timeout=10_000)
    assert row.get_attribute("data-state") == "paused"
    assert row.locator("button.pause-toggle").inner_text() == "Resume"
    assert api_type(host, "echo")["paused"] is True
    assert type_row(page, "sleep").get_attribute("data-state") == "active"  # the others run on
    # A change made elsewhere shows by itself.
    requests.patch(host.url("/api/types/fail"), json={"rate_limit": {"limit": 5, "period_seconds": 3600}}, timeout=10)
    until(page, "document.querySelector(\"tr[data-type='fail'] td.rate\").textContent === '5 per hour'", 15)

    settle_flow()
    ids = submit_batch(host, [{"type": "echo", "payload": {"n": n}} for n in range(4)])
    deadline = time.monotonic() + 20
    while not all(host.services.store.get(i).job.parked for i in ids):  # each message taken and parked
        assert time.monotonic() < deadline, "the jobs were not parked"
        time.sleep(0.3)

    # They stay queued, in the list and on a job's page, which says why.
    page.locator("nav a[data-view='jobs']").click()
    page.locator("#f-type").fill("echo")
    page.locator("#f-type").press("Enter")
    until(page, "document.querySelectorAll('#jobs-table tbody tr[data-status=queued]').length === 4")
    page.locator(f"#jobs-table tbody tr[data-id='{ids[0]}'] a.job-id").click()
    page.locator("#job-type-paused").wait_for(timeout=10_000)
    assert "echo, is paused" in page.locator("#job-type-paused").inner_text()
    assert page.locator("#job-status").inner_text() == "Queued"

    # Resume from the page: it says how many parked jobs it released, and they run.
    page.locator("nav a[data-view='types']").click()
    row = type_row(page, "echo")
    row.locator("button.pause-toggle").filter(has_text="Resume").click()
    page.locator("#types-message").filter(has_text="Resumed echo: 4 parked jobs released.").wait_for(timeout=15_000)
    assert row.get_attribute("data-state") == "active"
    assert api_type(host, "echo")["paused"] is False
    page.locator("nav a[data-view='jobs']").click()
    until(page, "document.querySelectorAll('#jobs-table tbody tr[data-status=succeeded]').length === 4", 30)
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    # Everything at once, with a confirmation; the view says so while it lasts.
    page.locator("nav a[data-view='types']").click()
    page.locator("#pause-all").click()
    page.locator("#pause-all-dialog").wait_for()
    assert page.evaluate("document.activeElement.id") == "pause-all-dialog-back", "focus moves into the dialog"
    page.locator("#pause-all-dialog-confirm").click()
    page.locator("#paused-all").filter(has_text="Every job type is paused").wait_for(timeout=10_000)
    assert requests.get(host.url("/api/types"), timeout=10).json()["paused_all"] is True
    assert set(page.locator("#types-table tbody tr").evaluate_all("rs => rs.map((r) => r.dataset.state)")) == {"paused"}
    assert page.locator("#pause-all").is_disabled()
    # A type's own pause is apart from everything's: paused now, it stays paused after Resume all.
    echo = type_row(page, "echo")
    assert "Paused (all)" in echo.locator("td").nth(1).inner_text()
    echo.locator("button.pause-toggle").filter(has_text="Pause").click()
    page.locator("#types-message").filter(has_text="Paused echo").wait_for(timeout=10_000)
    assert "Paused (itself and all)" in echo.inner_text()
    assert api_type(host, "echo")["paused_by"] == ["type", "all"]
    page.locator("#resume-all").click()
    page.locator("#resume-all-dialog-confirm").click()
    page.locator("#types-message").filter(has_text="Every type resumed").wait_for(timeout=15_000)
    page.locator("#paused-all").wait_for(state="hidden")
    assert requests.get(host.url("/api/types"), timeout=10).json()["paused_all"] is False
    assert echo.get_attribute("data-state") == "paused"  # its own pause stays
    assert type_row(page, "sleep").get_attribute("data-state") == "active"
    echo.locator("button.pause-toggle").filter(has_text="Resume").click()
    page.locator("#types-message").filter(has_text="Resumed echo").wait_for(timeout=15_000)
    assert api_type(host, "echo")["paused_by"] == []
    assert_no_problems(browser_page)


def test_limits_are_set_and_cleared_through_the_form_and_the_api_errors_show_beside_their_fields(host, browser_page):
    page = browser_page.page
    open_dashboard(browser_page, host, "#/types")
    row = type_row(page, "sleep")
    row.wait_for()
    assert "No limit" in row.locator("td.concurrency").inner_text()

    # The keyboard opens the form, whose first field takes focus.
    row.locator("button.limits-open").focus()
    page.keyboard.press("Enter")
    page.locator("#limits-dialog[open]").wait_for()
    assert page.evaluate("document.activeElement.id") == "limit-concurrency"
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    page.locator("#limits-dialog").wait_for(state="detached", timeout=10_000)
    assert api_type(host, "sleep")["max_concurrency"] == 2
    page.locator("#types-message").filter(has_text="at most 2 running at once").wait_for()
    until(page, "document.querySelector(\"tr[data-type='sleep'] td.concurrency\").textContent === '0 running of 2'")

    # A rate limit the API refuses: its message beside the field, nothing changed.
    row.locator("button.limits-open").click()
    assert page.locator("#limit-concurrency").input_value() == "2"
    page.locator("#limit-rate").fill("0")
    page.locator("#limit-period").fill("60")
    page.locator("#limits-save").click()
    error = page.locator("#limit-rate-error")
    error.wait_for(timeout=10_000)
    assert "greater than or equal to 1" in error.inner_text()
    assert page.locator("#limit-rate").get_attribute("aria-invalid") == "true"
    assert "limit-rate-error" in page.locator("#limit-rate").get_attribute("aria-describedby")
    assert page.evaluate("document.activeElement.id") == "limit-rate"
    assert page.locator("#limit-period-error").is_hidden()
    assert api_type(host, "sleep")["rate_limit"] is None
    # A period left out: the API says it is required, beside the period.
    page.locator("#limit-rate").fill("10")
    page.locator("#limit-period").fill("")
    page.locator("#limits-save").click()
    page.locator("#limit-period-error").filter(has_text="required").wait_for(timeout=10_000)
    assert page.locator("#limit-rate-error").is_hidden()
    page.locator("#limit-period").fill("60")
    page.locator("#limits-save").click()
    page.locator("#limits-dialog").wait_for(state="detached", timeout=10_000)
    assert api_type(host, "sleep")["rate_limit"] == {"limit": 10, "period_seconds": 60}
    until(page, "document.querySelector(\"tr[data-type='sleep'] td.rate\").textContent === '10 per minute'")

    # Jobs over the limit show as waiting; the limit removed, they start.
    requests.patch(host.url("/api/types/sleep"), json={"max_concurrency": 1}, timeout=10).raise_for_status()
    settle_flow()
    ids = submit_batch(host, [{"type": "sleep", "payload": {"seconds": 20}} for _ in range(3)])
    cell = "document.querySelector(\"tr[data-type='sleep'] td.concurrency\").textContent"
    until(page, f"{cell} === '1 running of 1, 2 waiting'", 20)

    # Back to the code's (which sets none), one limit at a time.
    row.locator("button.limits-open").click()
    with page.expect_response(lambda r: r.request.method == "PATCH") as patched:
        page.locator("#concurrency-default").click()
    woken = patched.value.json()["woken"]
    page.locator("#limits-dialog").wait_for(state="detached", timeout=10_000)
    said = page.locator("#types-message").inner_text()
    # Jobs already on their way back by themselves are not woken: the message counts those that were.
    assert (f"{woken} waiting job" in said) if woken else ("woken" not in said), said
    deadline = time.monotonic() + 20
    while sum(host.services.store.get(i).job.status == "running" for i in ids) < 3:  # at once, no limit now
        assert time.monotonic() < deadline, "the waiting jobs did not start"
        time.sleep(0.2)
    assert api_type(host, "sleep")["max_concurrency"] is None
    until(page, "document.querySelector(\"tr[data-type='sleep'] td.concurrency\").textContent === 'No limit'")
    assert api_type(host, "sleep")["rate_limit"] == {"limit": 10, "period_seconds": 60}
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Limits of sleep…"
    # The browser logs each refused request as a console error: those are expected here.
    assert_no_problems(browser_page, allowed=r"status of 400")


def test_priority_start_time_and_limits_show_on_the_jobs_list_and_the_job_page(host, browser_page):
    page = browser_page.page
    at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    high, normal, low = submit_batch(host, [{"type": "echo", "priority": p} for p in ("high", "normal", "low")])
    (later,) = submit_batch(host, [{"type": "sleep", "payload": {"seconds": 1}, "run_at": at}])
    requests.patch(host.url("/api/types/sleep"), json={"max_concurrency": 3}, timeout=10).raise_for_status()

    open_dashboard(browser_page, host, "#/jobs")
    until(page, "document.querySelectorAll('#jobs-table tbody tr').length === 4")
    assert page.locator(f"tr[data-id='{high}'] .badge").text_content() == "↑ high priority"  # the last word unseen
    assert page.locator(f"tr[data-id='{high}'] .badge.priority-high").count() == 1
    assert page.locator(f"tr[data-id='{low}'] .badge").text_content() == "↓ low priority"
    assert page.locator(f"tr[data-id='{normal}'] .badge").count() == 0  # normal is unmarked

    page.locator(f"tr[data-id='{high}'] a.job-id").click()
    page.locator("#job-status .badge").wait_for()
    assert "High" in page.locator("#job-facts").inner_text()
    assert page.locator("#job-starts").count() == 0

    page.goto(host.url(f"/api/dashboard#/jobs/{later}"))
    starts = page.locator("#job-starts")
    starts.wait_for(timeout=10_000)
    assert "in 59 min" in starts.inner_text() or "in 1 h" in starts.inner_text()
    due = requests.get(host.url(f"/api/jobs/{later}"), timeout=5).json()["due_at"]
    assert starts.locator("time").get_attribute("datetime") == due
    page.locator("#job-type-limits").filter(has_text="at most 3 running at once (0 now)").wait_for(timeout=10_000)
    assert page.locator("#job-type-paused").count() == 0
    assert_no_problems(browser_page)


def test_a_job_held_by_a_rate_limit_shows_its_reserved_start_and_starts_when_the_limit_goes(host, browser_page):
    page = browser_page.page
    requests.patch(host.url("/api/types/echo"), json={"rate_limit": {"limit": 1, "period_seconds": 3600}},
                   timeout=10).raise_for_status()  # fmt: skip
    settle_flow()
    ids = submit_batch(host, [{"type": "echo", "payload": n} for n in range(2)])
    deadline = time.monotonic() + 20
    while not (held := [job for job in (api_job(host, i) for i in ids) if "held_by" in job]):
        assert time.monotonic() < deadline  # one runs, the other holds the start an hour on
        time.sleep(0.3)
    [held] = held
    assert held["held_by"]["reason"] == "rate_limit" and held["status"] == "queued"

    open_dashboard(browser_page, host, f"#/jobs/{held['id']}")
    notice = page.locator("#job-held")
    notice.wait_for(timeout=10_000)
    text = notice.inner_text()
    assert "rate limit" in text and ("in 59 min" in text or "in 1 h" in text), text
    assert notice.locator("time").get_attribute("datetime") == held["held_by"]["until"]
    assert page.locator("#job-starts").count() == 0  # it was due at once: its start time does not hold it

    # Woken by the request, or by the reconciler (every 2 s here) while the request waits 1.5 s
    # for every instance to read the change: either way it runs now, not in an hour.
    requests.patch(host.url("/api/types/echo"), json={"rate_limit": None}, timeout=30).raise_for_status()
    deadline = time.monotonic() + 20
    while api_job(host, held["id"])["status"] != "succeeded":
        assert time.monotonic() < deadline, "the job did not start once its limit was removed"
        time.sleep(0.3)
    page.reload()  # (the page itself looks again within a minute, as Retry-After says)
    until(page, "document.querySelector('#job-status')?.textContent === 'Succeeded'", 20)
    assert page.locator("#job-held").count() == 0
    assert_no_problems(browser_page)


def test_a_type_name_holding_markup_shows_as_text_on_the_types_view(host, browser_page):
    """Type names are registered in code (and the API takes only plain names), so an answer
    holding markup is simulated by the browser: the page must show it as text all the same."""
    page = browser_page.page
    body = {
        "paused_all": False,
        "types": [{"type": XSS, "priority": "high", "max_attempts": 3, "time_limit_seconds": 60, "paused": True,
                   "paused_by": ["type"], "max_concurrency": 2, "running": 1,
                   "rate_limit": {"limit": 5, "period_seconds": 30}}],
    }  # fmt: skip
    page.route("**/api/types", lambda route: route.fulfill(status=200, json=body))
    open_dashboard(browser_page, host, "#/types")
    row = page.locator("#types-table tbody tr")
    row.wait_for()
    assert XSS in row.inner_text()
    assert "1 running of 2" in row.inner_text() and "5 per 30 s" in row.inner_text()
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("main img, main script").count() == 0
    assert_no_problems(browser_page)


# --- schedules ----------------------------------------------------------------------------------------


def api_schedule(host, schedule_id: str) -> requests.Response:
    return requests.get(host.url(f"/api/schedules/{schedule_id}"), timeout=10)


def test_a_schedule_is_created_paused_resumed_edited_and_deleted_from_the_page_and_its_jobs_appear(host, browser_page):
    page = browser_page.page
    open_dashboard(browser_page, host, "#/schedules")
    page.locator("#schedules-empty").filter(has_text="No schedules yet").wait_for()
    page.evaluate("window.__sameDocument = true")

    page.locator("#new-schedule").click()
    page.locator("#schedule-dialog[open]").wait_for()
    assert page.evaluate("document.activeElement.id") == "s-cron"
    page.locator("#s-name").fill(f"every 2 s {XSS}")
    page.locator("#s-type").fill("echo")
    page.locator("#s-priority").select_option("high")
    page.locator("#s-payload").fill('{"html": ' + json.dumps(XSS) + "}")

    # What the API refuses shows beside the field it is about, and nothing is created.
    page.locator("#s-cron").fill("61 * * * *")
    page.locator("#schedule-create").click()
    page.locator("#s-cron-error").wait_for(timeout=10_000)
    assert page.locator("#s-cron").get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "s-cron"
    page.locator("#s-cron").fill("*/2 * * * * *")
    page.locator("#s-zone").fill("Europe/berlin")
    page.locator("#schedule-create").click()
    page.locator("#s-zone-error").filter(has_text="Europe/Berlin").wait_for(timeout=10_000)
    assert page.locator("#s-cron-error").is_hidden()
    page.locator("#s-zone").fill("Europe/Berlin")
    page.locator("#s-payload").fill("{not json")
    page.locator("#schedule-create").click()
    page.locator("#s-payload-error").filter(has_text="Not valid JSON").wait_for()
    assert requests.get(host.url("/api/schedules"), timeout=10).json()["schedules"] == []
    page.locator("#s-payload").fill('{"html": ' + json.dumps(XSS) + "}")
    page.locator("#schedule-create").click()

    # Its page: the definition as text, the next five fire times, and its jobs as they are made.
    until(page, "location.hash.startsWith('#/schedules/')")
    schedule_id = page.evaluate("decodeURIComponent(location.hash.split('/')[2])")
    created = api_schedule(host, schedule_id).json()
    assert created["job"] == {"type": "echo", "payload": {"html": XSS}, "max_attempts": None, "priority": "high"}
    assert (created["cron"], created["time_zone"]) == ("*/2 * * * * *", "Europe/Berlin")
    page.locator("#next-fires tbody tr").first.wait_for()
    assert page.locator("#next-fires tbody tr").count() == 5
    assert page.locator("#schedule-title").inner_text() == f"every 2 s {XSS}"
    assert XSS in page.locator("#schedule-payload-json").inner_text()
    page.locator("#schedule-last-job .status").filter(has_text="Succeeded").wait_for(timeout=20_000)
    first_job = page.locator("#schedule-last-job a").get_attribute("title")
    page.locator("#schedule-fires li").nth(1).wait_for(timeout=20_000)  # more fires, seen without a reload
    assert page.locator(f"#schedule-fires a[title='{first_job}']").count() == 1
    assert re.search(r"\+0[12]:00", page.locator("#next-fires tbody tr").first.inner_text())  # Berlin's wall clock
    assert api_schedule(host, schedule_id).json()["fired"] >= 2

    # Pause: no fire times and no more jobs; resume: fires again.
    page.locator("#schedule-toggle").click()
    page.locator("#schedule-state").filter(has_text="Paused").wait_for(timeout=10_000)
    page.locator("#no-fires").wait_for()
    assert api_schedule(host, schedule_id).json()["paused"] is True
    paused_at = datetime.now(UTC)
    time.sleep(3)
    # A fire due before the pause may still be recorded by a pass that was making it (by design:
    # its job exists); none after the pause is.
    after_pause = api_schedule(host, schedule_id).json()
    assert datetime.fromisoformat(after_pause["last_fire"]["at"]) <= paused_at, after_pause["last_fire"]
    fired = after_pause["fired"]
    page.locator("#schedule-toggle").filter(has_text="Resume").click()
    page.locator("#schedule-state").filter(has_text="Active").wait_for(timeout=10_000)
    page.locator("#next-fires").wait_for()
    wait_until(lambda: api_schedule(host, schedule_id).json()["fired"] > fired, what="a fire after the resume")

    # The last fire's job, opened from the schedule's page, carries the template's priority.
    page.locator("#schedule-last-job a").click()
    page.locator("#job-status .badge.priority-high").wait_for(timeout=10_000)
    assert XSS in page.locator("#job-payload").inner_text()

    # Edit: the create form, filled in; a refusal shows beside its field; only what changed is sent.
    patches: list = []
    page.on("request", lambda r: patches.append(r.post_data_json) if r.method == "PATCH" else None)
    page.evaluate(f"location.hash = '#/schedules/{schedule_id}'")
    page.locator("#schedule-edit").click()
    page.locator("#schedule-dialog[open]").wait_for()
    assert page.locator("#schedule-form-title").inner_text() == "Edit schedule"
    assert (page.locator("#s-cron").input_value(), page.locator("#s-zone").input_value()) == (
        "*/2 * * * * *",
        "Europe/Berlin",
    )
    assert page.locator("#s-priority").input_value() == "high" and XSS in page.locator("#s-payload").input_value()
    assert page.locator("#s-paused").count() == 0  # pausing is the page's own button
    page.locator("#s-cron").fill("61 * * * *")
    page.locator("#schedule-save").click()
    page.locator("#s-cron-error").wait_for(timeout=10_000)
    assert api_schedule(host, schedule_id).json()["cron"] == "*/2 * * * * *"
    page.locator("#s-cron").fill("*/3 * * * * *")
    page.locator("#s-name").fill(f"every 3 s {XSS}")
    page.locator("#s-priority").select_option("")
    page.locator("#s-overlap").select_option("skip")
    page.locator("#schedule-save").click()
    page.locator("#schedule-message").filter(has_text="Saved").wait_for(timeout=10_000)
    assert page.locator("#schedule-dialog").count() == 0
    assert page.locator("#schedule-title").inner_text() == f"every 3 s {XSS}"
    assert page.evaluate("document.activeElement.id") == "schedule-edit"
    assert patches[-1] == {
        "cron": "*/3 * * * * *",
        "overlap": "skip",
        "name": f"every 3 s {XSS}",
        "job": {"priority": None},
    }
    edited = api_schedule(host, schedule_id).json()
    assert (edited["cron"], edited["time_zone"], edited["overlap"], edited["catch_up"]) == (
        "*/3 * * * * *", "Europe/Berlin", "skip", "once")  # fmt: skip
    assert edited["job"] == {"type": "echo", "payload": {"html": XSS}, "max_attempts": None, "priority": None}
    page.locator("#schedule-edit").click()  # saving an unchanged form sends nothing
    page.locator("#schedule-save").click()
    page.locator("#schedule-dialog").wait_for(state="detached")
    assert len(patches) == 2 and patches[0]["cron"] == "61 * * * *"

    # Someone else changes it while the form is open: saving is refused and undoes nothing of theirs.
    page.locator("#schedule-edit").click()
    page.locator("#schedule-dialog[open]").wait_for()
    theirs = {"job": {"max_attempts": 4}}
    requests.patch(host.url(f"/api/schedules/{schedule_id}"), json=theirs, timeout=10).raise_for_status()
    page.locator("#s-name").fill("mine")
    with page.expect_response(lambda r: r.request.method == "PATCH") as refused:
        page.locator("#schedule-save").click()
    assert refused.value.status == 412 and refused.value.request.headers["if-match"] == f'"{edited["revision"]}"'
    page.locator("#schedule-dialog").filter(has_text="Someone changed this schedule").wait_for(timeout=10_000)
    now = api_schedule(host, schedule_id).json()
    assert (now["name"], now["job"]["max_attempts"]) == (f"every 3 s {XSS}", 4)
    page.locator("#schedule-cancel").click()
    page.locator("#schedule-dialog").wait_for(state="detached")

    # The list: one row, its name as text; Delete asks first, then the schedule is gone.
    page.locator("nav a[data-view='schedules']").click()
    row = page.locator(f"#schedules-table tbody tr[data-id='{schedule_id}']")
    row.wait_for()
    assert f"every 3 s {XSS}" in row.inner_text() and "*/3 * * * * *" in row.inner_text()
    assert "Europe/Berlin" in row.inner_text() and "overlap: skip\ncatch-up: once" in row.inner_text()
    row.locator("button.delete-schedule").click()
    page.locator("#delete-schedule-dialog").wait_for()
    assert page.evaluate("document.activeElement.id") == "delete-schedule-dialog-back"
    page.locator("#delete-schedule-dialog-confirm").click()
    page.locator("#schedules-message").filter(has_text="Deleted").wait_for(timeout=10_000)
    row.wait_for(state="detached")
    assert api_schedule(host, schedule_id).status_code == 404
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"

    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("main img, main script").count() == 0
    # The browser logs each refused request as a console error (the 400s and the 412): expected here.
    assert_no_problems(browser_page, allowed=r"status of 4(00|12)")
