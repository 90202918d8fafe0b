"""The jobs loop: one background thread that recovers at start, then reconciles running jobs and
runs a scheduling pass whenever something happened, and at least every
settings.scheduler.poll_interval_s as a safety net.

"Something happened" = a threading.Event set by transitions.wake_all(): after the commit of any
job state change (a submit, a cancel, a job ending), and by the executors' watcher threads the
moment a replica process exits. So a job that ends frees its resources and the next queued job
starts within milliseconds, without polling delays.

Registered in server/background.py COMPONENTS as "modelyard.server.scheduler.loop:component".
One bad iteration is logged and the loop goes on; every step is an idempotent reconcile, so a
restart (or a kill -9) at any point converges.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from modelyard.server.scheduler import queue, runner
from modelyard.server.scheduler.transitions import add_waker, remove_waker

log = logging.getLogger(__name__)


class JobsLoop:
    def __init__(self, ctx: Any):
        self.ctx = ctx
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.iterations = 0
        self.recovered: dict[str, int] | None = None

    def start(self) -> None:
        add_waker(self.wake)
        self._thread = threading.Thread(target=self._run, name="modelyard-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        remove_waker(self.wake)
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            self.recovered = runner.recover(self.ctx)
            if any(self.recovered.values()):
                log.info("jobs recovered after restart: %s", self.recovered)
        except Exception:
            log.exception("job recovery failed; the periodic reconcile will retry")
        interval = float(self.ctx.settings.scheduler.poll_interval_s)
        while not self._stop.is_set():
            self.wake.clear()
            self.step()
            self.wake.wait(interval)

    def step(self) -> None:
        self.iterations += 1
        try:
            runner.reconcile(self.ctx)
        except Exception:
            log.exception("reconcile pass failed")
        try:
            queue.schedule_pass(self.ctx)
        except Exception:
            log.exception("scheduling pass failed")
            time.sleep(0.05)


def component(ctx: Any) -> JobsLoop:
    return JobsLoop(ctx)
