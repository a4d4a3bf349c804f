"""The API's own description: the OpenAPI document and Swagger UI, served by the app itself.

Swagger UI's files come from the pinned `swagger-ui-py` package (Swagger UI 5, which renders
OpenAPI 3.1), installed with the app: no CDN, so the page works offline and in Azure alike.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import shared.dashboard  # noqa: F401 - registers the dashboard's routes: the document lists every route
import shared.flow.routes  # noqa: F401 - and flow control's
import shared.schedules.routes  # noqa: F401 - and the schedules'
from shared.api import ApiRequest, ApiResponse, Problem, Reply, canonical, endpoint, problems
from shared.apidocs.openapi import document

if TYPE_CHECKING:
    from shared.app import Services

HERE = Path(__file__).parent
# The page and its script are ours; the rest is Swagger UI's, from the package.
ASSETS = {
    "init.js": "application/javascript; charset=utf-8",
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
# Scripts and styles from the app only; Swagger UI sets style attributes, and its icons are data: URLs.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ASSET_TYPES = tuple(sorted({t.split(";")[0] for t in ASSETS.values()}))


@endpoint(
    "GET", "openapi.json", "This document", "service",
    {200: Reply("The OpenAPI 3.1 document.", content_type="application/json"), **problems()}, anonymous=True,
)  # fmt: skip
async def openapi(app: Services, request: ApiRequest) -> ApiResponse:
    return ApiResponse(200, _document(tuple(app.registry.types)), {"Cache-Control": "no-cache"})


@cache
def _document(job_types: tuple[str, ...]) -> bytes:
    return json.dumps(document(list(job_types)), separators=(",", ":")).encode()


@endpoint(
    "GET", "docs", "Swagger UI for this API", "service",
    {200: Reply("An HTML page.", content_type="text/html"), **problems()}, anonymous=True, any_query=True,
)  # fmt: skip
async def docs(app: Services, request: ApiRequest) -> ApiResponse:
    if redirect := canonical(request):  # /api/docs/: its relative URLs would not resolve
        return redirect
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return ApiResponse(200, _read("page.html"), headers, content_type="text/html")


@endpoint(
    "GET", "docs/{file}", "A file of the Swagger UI page", "service",
    {200: Reply("The file.", content_type=ASSET_TYPES), **problems(404)}, anonymous=True, any_query=True,
    path_values={"file": {"enum": sorted(ASSETS)}},
)  # fmt: skip
async def docs_asset(app: Services, request: ApiRequest) -> ApiResponse:
    name = request.route.get("file", "")
    if name not in ASSETS:
        raise Problem(404, "not_found", f"no file {name!r} here")
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return ApiResponse(200, _read(name), headers, content_type=ASSETS[name])


@cache
def _read(name: str) -> bytes:
    if (HERE / name).is_file():
        return (HERE / name).read_bytes()
    return (_swagger_ui_static() / name).read_bytes()


def _swagger_ui_static() -> Path:
    # Found without importing the package (its __init__ pulls in web-framework glue we do not use).
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (it is in requirements.txt)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"
