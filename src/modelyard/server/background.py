"""Background components (scheduler, reconcilers, autoscaler) started with the app.

Each is registered as name -> factory(ctx) returning an object with start() and stop(). Loops
must be idempotent reconcilers that survive restarts and never die on one bad iteration."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Component(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


# "module:function" strings so importing this module stays cheap; the function takes the
# AppContext and returns a Component (or None when it does not apply).
COMPONENTS: list[str] = [
    "modelyard.server.services.models:reconcile_component",  # registry: imports cut short by a crash
    "modelyard.server.scheduler.loop:component",  # jobs: recover, reconcile, schedule
    "modelyard.server.services.searches:component",  # hyperparameter searches: ask, prune, tell
    "modelyard.server.services.serving:component",  # inference services: replicas to desired, probes
    "modelyard.server.gateway:component",  # serving gateway: route table refresh, invocation counts
]


def start_all(ctx: Any) -> list[Component]:
    started = []
    for spec in COMPONENTS:
        mod, fn = spec.split(":")
        factory: Callable = getattr(importlib.import_module(mod), fn)
        comp = factory(ctx)
        if comp is not None:
            comp.start()
            started.append(comp)
            ctx.components[spec] = comp
    return started


def stop_all(components: list[Component]) -> None:
    for comp in reversed(components):
        try:
            comp.stop()
        except Exception:  # pragma: no cover - shutdown must go on
            log.exception("stopping %r failed", comp)
