"""Background components (scheduler, reconcilers, autoscaler) started with the app.

Each is registered as name -> factory(ctx) returning an object with start() and stop(). Loops
must be idempotent reconcilers that survive restarts and never die on one bad iteration."""

from __future__ import annotations

import importlib
import logging
import threading
import time
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


class WakeableLoop:
    """A reconcile loop on its own thread: runs `step()` whenever it is woken (every job state
    change sets the wake event, see scheduler/transitions.wake_all) and at least every
    `interval_s` as a safety net. A failing step is logged (once per distinct error) and retried
    on the next pass, so the loop never dies; subclasses keep every step idempotent."""

    thread_name = "modelyard-loop"

    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.interval_s = max(0.2, float(ctx.settings.scheduler.poll_interval_s))

    def on_start(self) -> None:
        """Runs once on the loop's thread before the first step (e.g. recovery after a restart)."""

    def step(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        from modelyard.server.scheduler.transitions import add_waker

        add_waker(self.wake)
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        from modelyard.server.scheduler.transitions import remove_waker

        self._stop.set()
        self.wake.set()
        remove_waker(self.wake)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self.on_start()
        except Exception:
            log.exception("%s: start-up step failed; the periodic passes will retry", self.thread_name)
        last_error = None
        while not self._stop.is_set():
            self.wake.clear()
            try:
                self.step()
                last_error = None
            except Exception as exc:
                if str(exc) != last_error:
                    log.exception("%s: pass failed", self.thread_name)
                last_error = str(exc)
                time.sleep(0.05)
            self.wake.wait(self.interval_s)
