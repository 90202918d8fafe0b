"""/docs (Swagger UI) and /redoc served entirely from this server: the JavaScript, CSS and favicon
come from the fastapi-offline package's copies, so the pages render on a machine without internet
(FastAPI's defaults load them from a CDN). The pages reference only relative paths."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def _truthful_errors(app: FastAPI) -> None:
    """FastAPI documents request-validation failures (422) as its own {"detail": [...]} shape; this
    server answers them, like every error, as {"error": {code, message, details}} (app.py). The
    document says so: every 422 refers to ErrorResponse, and FastAPI's shapes are dropped."""
    from fastapi.openapi.utils import get_openapi

    from modelyard.server.schemas.common import ErrorResponse

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for name, sub in ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}").get(
                "$defs", {}).items():
            schemas[name] = sub
        err = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        err.pop("$defs", None)
        schemas["ErrorResponse"] = err
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for item in spec.get("paths", {}).values():
            for op in item.values():
                bad = op.get("responses", {}).get("422")
                if bad is not None:
                    bad["description"] = "the request is malformed (a field missing, of the wrong type or out of range)"
                    bad["content"] = {"application/json": {"schema": ref}}
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi


def install(app: FastAPI) -> None:
    """Call on an app created with docs_url=None, redoc_url=None."""
    _truthful_errors(app)
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{title} - API",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_ui_parameters={"persistAuthorization": True})

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{title} - API reference",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{ASSETS}/favicon.png",
                              with_google_fonts=False)
