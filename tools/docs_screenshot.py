"""Take the README's screenshot of Swagger UI (docs/images/swagger-ui.png) from the app itself:
Azurite in memory, the local host on a free port, Debian's Chromium (`make browser`) at 1280x900.

    .venv/bin/python -m tools.docs_screenshot [--out docs/images/swagger-ui.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tools import chromium
from tools.azurite import REPO_ROOT, Azurite, free_port

OUT = REPO_ROOT / "docs" / "images" / "swagger-ui.png"
EXPANDED = "#operations-jobs-get_job"  # below three collapsed operations, so the list shows too


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    path = chromium.find()
    if path is None:
        print(f"No browser: {chromium.missing_reason()}.", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with Azurite() as azurite:
        port = free_port()
        env = {**os.environ, "AzureWebJobsStorage": azurite.connection_string, "PYTHONUNBUFFERED": "1"}
        host = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app-dir", str(REPO_ROOT), "--port", str(port)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while not _answers(f"{base}/api/health"):
                if host.poll() is not None or time.monotonic() > deadline:
                    print("The local host did not start.", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(path), args=chromium.LAUNCH_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="light")
                page.goto(f"{base}/api/docs")
                page.get_by_text("Submit a job").first.wait_for(timeout=15_000)
                operation = page.locator(EXPANDED)
                operation.locator(".opblock-summary").click()
                operation.locator(".responses-table").first.wait_for()
                page.evaluate("document.activeElement && document.activeElement.blur()")
                page.mouse.move(0, 0)
                top = page.locator("#operations-tag-jobs").evaluate("e => e.getBoundingClientRect().top + scrollY")
                page.evaluate(f"scrollTo(0, {top} - 10)")
                page.wait_for_timeout(300)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            os.killpg(host.pid, signal.SIGTERM)
            host.wait(timeout=15)
    print(f"{args.out} ({args.out.stat().st_size // 1024} KB)")
    return 0


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())
