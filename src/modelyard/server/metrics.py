"""Prometheus metrics at /metrics, on a registry of the app's own (several apps can live in one
process, as the tests do): process/platform/GC collectors, HTTP latency per route template, and
gauges read from the database at scrape time (jobs by state, live allocations per resource), so
they are right after a restart and need no bookkeeping on the hot paths.

A scrape needs a token (Authorization: Bearer): an admin's, or settings.metrics_token (a
metrics-only token for the scraper; unset: admin tokens only). None -> 401, a user's -> 403."""

from __future__ import annotations

import hmac
import time

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    make_asgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.core.errors import Forbidden, ModelyardError
from modelyard.server.auth import authenticate
from modelyard.server.context import AppContext
from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel, UserModel
from modelyard.server.orm.jobs import JobModel

_DIMS = ("cpu", "memory_mib", "gpu", "vgpu", "mig")


class _DatabaseCollector:
    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    def collect(self):
        jobs = GaugeMetricFamily("modelyard_jobs", "Jobs by state", labels=["state"])
        alloc = GaugeMetricFamily("modelyard_allocated", "Live allocations in the ledger", labels=["resource"])
        users = GaugeMetricFamily("modelyard_users", "Users")
        try:
            with session_scope(self.ctx.sessions, readonly=True) as s:
                for state, n in s.execute(select(JobModel.state, func.count()).group_by(JobModel.state)):
                    jobs.add_metric([str(state)], n)
                sums = s.execute(select(*[func.coalesce(func.sum(getattr(AllocationModel, d)), 0) for d in _DIMS])
                                 .where(AllocationModel.released_at.is_(None))).one()
                for dim, v in zip(_DIMS, sums, strict=True):
                    alloc.add_metric([dim], float(v))
                users.add_metric([], s.scalar(select(func.count()).select_from(UserModel)) or 0)
        except Exception:  # a scrape must not fail because the database is busy or not migrated yet
            return
        yield from (jobs, alloc, users)


class _HttpMetrics:
    """ASGI middleware timing every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.histogram.labels(scope["method"], _template(scope), str(status["code"])).observe(
                time.perf_counter() - start)


def _template(scope: Scope) -> str:
    """The matched route as a template ('/api/v1/jobs/{job_id}'), so ids never become label
    values; requests that matched no route share one label."""
    if scope.get("route") is None:
        return "unmatched"
    path = scope.get("root_path", "") + scope["path"]
    for name, value in (scope.get("path_params") or {}).items():
        if value:
            path = path.replace(f"/{value}", f"/{{{name}}}", 1)
    return path


class _TokenGate:
    """The scrape endpoint behind an admin or metrics-only token."""

    def __init__(self, app: ASGIApp, ctx: AppContext):
        self.app, self.ctx = app, ctx

    def _check(self, token: str | None) -> None:
        expected = self.ctx.settings.metrics_token
        if expected and token and hmac.compare_digest(token.encode(), str(expected).encode()):
            return
        with session_scope(self.ctx.sessions, readonly=True) as s:
            principal = authenticate(s, token)
        if not principal.is_admin:
            raise Forbidden("metrics need an admin token or the metrics token")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            try:
                await run_in_threadpool(self._check, token)
            except ModelyardError as exc:
                await JSONResponse({"error": exc.to_dict()}, status_code=exc.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install(app, ctx: AppContext) -> CollectorRegistry:
    """Returns the app's registry, for the metrics of other parts (the gateway's)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(_DatabaseCollector(ctx))
    histogram = Histogram("modelyard_http_request_duration_seconds", "HTTP request latency",
                          ["method", "route", "status"], registry=registry)
    app.add_middleware(_HttpMetrics, histogram=histogram)
    app.mount("/metrics", _TokenGate(make_asgi_app(registry=registry), ctx))
    return registry
