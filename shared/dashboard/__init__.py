"""The dashboard: a page served by the app itself, a thin client of the public HTTP API.

Plain ES modules and one stylesheet, no build step and no CDN: every file is in this folder and
served from `GET /api/dashboard/{file}`. The page and its files need no function key (they hold no
data); the data comes from the API, which in Azure needs the key: the page asks for it when the
API answers 401, keeps it in sessionStorage and sends it as `x-functions-key`. README.md says more.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from shared.api import ApiRequest, ApiResponse, Problem, Reply, canonical, endpoint, problems

if TYPE_CHECKING:
    from shared.app import Services

HERE = Path(__file__).parent
JS = "text/javascript"  # the type HTML defines for scripts, modules included (the worker adds the charset)
# Every file the page may load, and what it is served as: anything else here (this module, the
# README, the page itself under another name) is a 404.
ASSETS = {
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
    "main.js": JS,
    "api.js": JS,
    "dom.js": JS,
    "format.js": JS,
    "live.js": JS,
    "chart.js": JS,
    "overview.js": JS,
    "jobs.js": JS,
    "job.js": JS,
    "bulk.js": JS,
    "forms.js": JS,
    "types.js": JS,
    "schedules.js": JS,
    "schedule.js": JS,
}
ASSET_TYPES = tuple(sorted({t.split(";")[0] for t in ASSETS.values()}))
# Nothing from anywhere but the app, no inline script or style, no plugins, no framing; Trusted
# Types with no policy make every HTML-string sink (innerHTML and the like) throw, so data can
# only reach the page as text.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "manifest-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@endpoint(
    "GET", "dashboard", "The dashboard (an HTML page)", "service",
    {200: Reply("An HTML page; its data comes from this API.", content_type="text/html"), **problems()},
    anonymous=True, any_query=True,
)  # fmt: skip
async def dashboard(app: Services, request: ApiRequest) -> ApiResponse:
    if redirect := canonical(request):  # /api/dashboard/: its relative URLs would not resolve
        return redirect
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
    return ApiResponse(200, _read("index.html"), headers, content_type="text/html")


@endpoint(
    "GET", "dashboard/{file}", "A file of the dashboard", "service",
    {200: Reply("The file.", content_type=ASSET_TYPES), **problems(404)}, anonymous=True, any_query=True,
    path_values={"file": {"enum": sorted(ASSETS)}},
)  # fmt: skip
async def dashboard_asset(app: Services, request: ApiRequest) -> ApiResponse:
    name = request.route.get("file", "")
    if name not in ASSETS:
        raise Problem(404, "not_found", f"no file {name!r} here")
    # no-cache: the files are small, and a deployment is seen at once (modules of two versions never mix).
    # The icon has no such tie, and the browser asks for it again on every in-page navigation.
    cache_control = "public, max-age=86400" if name == "favicon.svg" else "no-cache"
    headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    return ApiResponse(200, _read(name), headers, content_type=ASSETS[name])


@cache
def _read(name: str) -> bytes:
    return (HERE / name).read_bytes()
