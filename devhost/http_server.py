"""HTTP triggers behind an aiohttp server, under the routePrefix of host.json."""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func
from aiohttp import web

from devhost.app_loader import Function
from devhost.invoker import Invoker
from devhost.routes import Router

log = logging.getLogger("devhost.http")


def build_router(functions: list[Function]) -> Router:
    router = Router()
    for f in functions:
        if f.trigger_type == "httpTrigger":
            methods = [str(getattr(m, "value", m)) for m in f.trigger.methods] if f.trigger.methods else None
            router.add(f.trigger.route or f.name, methods, f)
    return router


def make_app(functions: list[Function], route_prefix: str, invoke: Invoker) -> web.Application:
    router = build_router(functions)
    prefix = f"/{route_prefix}" if route_prefix else ""

    async def handle(request: web.Request) -> web.StreamResponse:
        path = request.path
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return web.Response(status=404)
        route, params, path_matched = router.resolve(request.method, path[len(prefix) :])
        if route is None:
            return web.Response(status=405 if path_matched else 404)
        function: Function = route.target
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers),
            params=dict(request.query),
            route_params=params,
            body=await request.read(),
        )
        try:
            result = await invoke(function, req)
        except Exception:
            log.exception("Executed 'Functions.%s' (Failed)", function.name)
            return web.Response(status=500)
        return to_response(result)

    app = web.Application(client_max_size=100 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def to_response(result: Any) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str | bytes):
        body = result.encode() if isinstance(result, str) else result
        return web.Response(status=200, body=body, content_type="text/plain")
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"an HTTP function returned {type(result).__name__}, not an HttpResponse")
    headers = {k: v for k, v in result.headers.items()}
    if not any(k.lower() == "content-type" for k in headers):
        mimetype = result.mimetype or "text/plain"
        charset = result.charset or "utf-8"
        headers["Content-Type"] = mimetype if "charset=" in mimetype else f"{mimetype}; charset={charset}"
    return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
