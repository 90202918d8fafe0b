"""create_app(): the FastAPI application with native (/api/v1) and seed-compatible routes."""

from __future__ import annotations

import contextlib
import importlib
import logging

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from modelyard import __version__
from modelyard.core.errors import ModelyardError
from modelyard.server import background, docs, gateway, guards, metrics
from modelyard.server.context import AppContext
from modelyard.server.db import make_engine, make_sessionmaker, session_scope, upgrade_schema
from modelyard.server.orm import Base
from modelyard.server.routers.compat.envelope import unstorable
from modelyard.server.services.resources.nodes import register_local_node
from modelyard.server.services.users import bootstrap_admin
from modelyard.server.settings import Settings

log = logging.getLogger("modelyard")

# Each module exposes `router`. Native routes are mounted under /api/v1; seed routes at the exact
# paths the seed shows (they declare them in full).
NATIVE_ROUTERS = ["users", "resources", "events", "files", "images", "datasets", "models", "jobs", "searches", "runtimes",
                  "templates", "services"]
COMPAT_ROUTERS = ["files", "images", "models", "finetune", "resources", "zstack", "serving", "modelarts"]


def _summarise(router) -> None:
    """A handler without an explicit summary documents itself: its docstring's first paragraph is
    the operation's summary, the rest its description (the whole docstring when there is no rest)."""
    from fastapi.routing import APIRoute

    for route in router.routes:
        if isinstance(route, APIRoute) and route.summary is None and route.description:
            first, _, rest = route.description.partition("\n\n")
            route.summary = " ".join(first.split())
            route.description = rest.strip() or route.summary


def _include(app: FastAPI, package: str, names: list[str], prefix: str = "") -> list:
    routers = []
    for name in names:
        mod = importlib.import_module(f"{package}.{name}")
        _summarise(mod.router)
        app.include_router(mod.router, prefix=prefix)
        routers.append(mod.router)
    return routers


def init_database(ctx: AppContext) -> str | None:
    """Schema, bootstrap admin, this node. Returns an admin token to print once, if generated."""
    if ctx.settings.schema_mode == "create_all":
        Base.metadata.create_all(ctx.engine)
    else:
        upgrade_schema(ctx.settings.db_url)
    with session_scope(ctx.sessions) as session:
        token = bootstrap_admin(session, ctx.settings)
        register_local_node(session)
    if token:
        # Laptop convenience: the CLI and `make up` read it from here (owner-only permissions).
        path = ctx.settings.home / "admin.token"
        path.touch(mode=0o600, exist_ok=True)
        path.write_text(token + "\n")
    return token


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    settings.ensure_dirs()
    engine = make_engine(settings.db_url)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine, settings=settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        token = init_database(ctx)
        if token:
            # printed once, on the first start only: the only time the plaintext exists
            print(f"Modelyard admin token (shown once): {token}", flush=True)
            ctx.components["generated_admin_token"] = token
        started = background.start_all(ctx) if settings.background else []
        try:
            yield
        finally:
            background.stop_all(started)
            await app.state.gateway.aclose()
            engine.dispose()

    app = FastAPI(title="Modelyard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Self-hosted LLM lifecycle platform. Native API under /api/v1; "
                              "seed-compatible routes at the paths of the specification.")
    app.state.ctx = ctx

    @app.exception_handler(ModelyardError)
    async def _domain_error(_request: Request, exc: ModelyardError) -> JSONResponse:
        return JSONResponse({"error": exc.to_dict()}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return JSONResponse({"error": {"code": "validation_error", "message": f"{loc}: {first.get('msg', 'invalid')}",
                                       "details": jsonable(errs)}}, status_code=422)

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _unstorable(_request: Request, exc: Exception) -> JSONResponse:
        # a backstop: schemas bound what clients send (schemas/common.py), the database refuses the rest
        code, message = unstorable(exc)
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=422)

    @app.get("/healthz", tags=["system"], summary="Liveness check (no token needed)",
             description="Answers 200 with the server's version while the process serves requests.")
    def healthz() -> dict:
        return {"status": "ok", "version": __version__}

    docs.install(app)  # /docs and /redoc with assets from the package (offline)
    registry = metrics.install(app, ctx)
    app.state.gateway = gateway.install(app, ctx, registry)  # /v1 (OpenAI) and /serving/{service}
    _include(app, "modelyard.server.routers", NATIVE_ROUTERS, prefix="/api/v1")
    seed = _include(app, "modelyard.server.routers.compat", COMPAT_ROUTERS)
    app.add_middleware(guards.RequestGuard, envelopes=guards.envelope_styles(seed), max_body_bytes=settings.request_body_max_bytes)
    return app


def jsonable(obj):
    return jsonable_encoder(obj, custom_encoder={Exception: str})
