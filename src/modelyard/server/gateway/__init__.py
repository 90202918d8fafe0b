"""The serving gateway: the platform's own port as the way in to inference services.

`<platform>/v1/*` is OpenAI's API (the body's `model` names a service, `service:N` or an adapter a
replica serves); `<platform>/serving/{service}/...` reaches template services by path. Routed
from an in-memory route table (table.py) refreshed by a background component, authenticated
through a token cache (tokens.py): no database query per request. Sits beside the routers: it
imports services and core, and nothing but the app and the background wiring imports it."""

from __future__ import annotations

from typing import Any

from modelyard.server.gateway.proxy import Gateway, openai_error
from modelyard.server.gateway.table import RouteRefresher, RouteTable

__all__ = ["Gateway", "RouteRefresher", "RouteTable", "component", "install", "openai_error"]

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def install(app, ctx: Any, registry=None) -> Gateway:
    """Mount the proxy's routes on the app (plain Starlette routes: no dependency injection or
    body validation on the hot path, and no OpenAPI entries: the API is OpenAI's)."""
    gateway = Gateway(ctx, registry)
    ctx.components["gateway"] = gateway
    app.add_route("/v1/models", gateway.list_models, methods=["GET"], include_in_schema=False)
    app.add_route("/v1/models/{model:path}", gateway.get_model, methods=["GET"], include_in_schema=False)
    app.add_route("/v1/{path:path}", gateway.openai, methods=["POST"], include_in_schema=False)
    app.add_route("/serving/{service}", gateway.serving, methods=ALL_METHODS, include_in_schema=False)
    app.add_route("/serving/{service}/{path:path}", gateway.serving, methods=ALL_METHODS, include_in_schema=False)
    return gateway


def component(ctx: Any) -> RouteRefresher | None:
    """The background refresher of the route table (server/background.py COMPONENTS)."""
    gateway = ctx.components.get("gateway")
    return RouteRefresher(ctx, gateway) if gateway is not None else None
