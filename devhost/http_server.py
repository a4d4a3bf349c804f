"""HTTP triggers behind an aiohttp server, under the routePrefix of host.json: the request becomes
a func.HttpRequest, the function's return value becomes the response, as the Python worker and
the host convert them."""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import unquote

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devhost.app_loader import Function
from devhost.invoker import Invoker, TraceContext
from devhost.routes import RouteError, Router

log = logging.getLogger("devhost.http")

MAX_BODY = 100 * 1024 * 1024  # the host's request size limit
_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection"}


def methods_of(function: Function) -> list[str] | None:
    """The trigger's methods as upper-case strings; None means every method."""
    methods = function.trigger.methods
    return [str(getattr(m, "value", m)).upper() for m in methods] if methods else None


def build_router(functions: list[Function], errors: dict[str, str] | None = None) -> Router:
    """Routes of the HTTP functions; a template Functions would refuse puts its function in error."""
    router = Router()
    for f in functions:
        if f.trigger_type == "httpTrigger":
            try:
                router.add(f.trigger.route or f.name, methods_of(f), f)
            except RouteError as exc:
                if errors is None:
                    raise
                errors[f.name] = str(exc)
    return router


def decoded_path(raw_path: str) -> str:
    """Percent-decoded path in which an encoded '/' stays encoded, as Kestrel leaves it, so that
    it cannot split a route segment."""
    return "/".join(unquote(segment.replace("%2F", "%252F").replace("%2f", "%252f")) for segment in raw_path.split("/"))


def strip_prefix(path: str, prefix: str) -> str | None:
    """The path below the route prefix ("/api/x" -> "/x"), or None when it is not under it."""
    if not prefix:
        return path
    head = "/" + prefix
    if path.lower() == head.lower():
        return ""
    if path.lower().startswith(head.lower() + "/"):
        return path[len(head) :]
    return None


def _joined(pairs: Any, separator: str) -> dict[str, str]:
    """Repeated headers or query keys arrive as one comma-joined value, as the host passes them."""
    out: dict[str, str] = {}
    for key, value in pairs:
        out[key] = f"{out[key]}{separator}{value}" if key in out else value
    return out


FUNCTION_KEY_VARIABLE = "DEVHOST_FUNCTION_KEY"  # set by --function-key


def key_accepted(function: Function, request: web.Request, function_key: str | None) -> bool:
    """With a key set, a function whose auth level is not anonymous needs it, in the
    `x-functions-key` header or the `code` query parameter, as in Azure. (Core Tools does not
    check keys locally; this host does only when asked, so clients and contract tests can.)"""
    if function_key is None:
        return True
    level = str(getattr(function.trigger, "auth_level", "") or "").rsplit(".", 1)[-1].lower()
    if level == "anonymous":
        return True
    given = request.headers.get("x-functions-key") or request.query.get("code")
    return given is not None and hmac.compare_digest(given.encode(), function_key.encode())


def make_app(router: Router, route_prefix: str, invoke: Invoker, function_key: str | None = None) -> web.Application:

    async def handle(request: web.Request) -> web.StreamResponse:
        path = strip_prefix(decoded_path(request.rel_url.raw_path), route_prefix)
        if path is None:
            return web.Response(status=404)
        resolved = router.resolve(request.method, path)
        if resolved.route is None:
            if resolved.status == 405:
                return web.Response(status=405, headers={"Allow": ", ".join(sorted(resolved.allowed))})
            return web.Response(status=404)
        function: Function = resolved.route.target
        if not key_accepted(function, request, function_key):
            return web.Response(status=401)
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=_joined(request.headers.items(), ", "),
            params=_joined(request.query.items(), ","),
            route_params=resolved.params,
            body=await request.read(),
        )
        try:
            traceparent = request.headers.get("traceparent")
            trace = TraceContext(traceparent, request.headers.get("tracestate", "")) if traceparent else None
            result = await invoke(
                function, req, reason="This function was programmatically called via the host APIs.", trace=trace
            )
            return to_response(result)
        except Exception:  # noqa: BLE001 - the invoker logged the function's traceback
            log.debug("Request to '%s' failed", function.name, exc_info=True)
            return web.Response(status=500)

    app = web.Application(client_max_size=MAX_BODY)
    # [\s\S]: a decoded path may hold a newline (%0A), which "." would not match.
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)
    return app


def to_response(result: Any) -> web.Response:
    """func.HttpResponse -> aiohttp; a str is a 200 text body, bytes a 200 binary one, None a 204."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str):
        return web.Response(status=200, text=result, content_type="text/plain")
    if isinstance(result, bytes | bytearray):
        return web.Response(status=200, body=bytes(result), content_type="application/octet-stream")
    if not isinstance(result, func.HttpResponse):
        log.error("An HTTP function returned %s, which is not an HttpResponse, str, bytes or None",
                  type(result).__name__)  # fmt: skip
        return web.Response(status=500)
    headers: CIMultiDict[str] = CIMultiDict((k, v) for k, v in result.headers.items() if k.lower() not in _HOP_BY_HOP)
    if "Content-Type" not in headers:
        # As the worker does: text types get the charset, others the bare mimetype.
        mimetype = result.mimetype or "text/plain"
        charset = result.charset or "utf-8"
        headers["Content-Type"] = f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype
    return web.Response(status=result.status_code, body=result.get_body() or b"", headers=headers)
