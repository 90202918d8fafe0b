"""The jobs loop: one background thread that recovers at start, then reconciles running jobs and
runs a scheduling pass whenever something happened, and at least every
settings.scheduler.poll_interval_s as a safety net.

"Something happened" = a threading.Event set by services.common.wake.wake_all(): after the commit of any
job state change (a submit, a cancel, a job ending), and by the executors' watcher threads the
moment a replica process exits. So a job that ends frees its resources and the next queued job
starts within milliseconds, without polling delays.

Registered in server/background.py COMPONENTS as "modelyard.server.scheduler.loop:component".
One bad iteration is logged and the loop goes on; every step is an idempotent reconcile, so a
restart (or a kill -9) at any point converges.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from modelyard.server.scheduler import queue, runner
from modelyard.server.services.common.loops import WakeableLoop

log = logging.getLogger(__name__)


class JobsLoop(WakeableLoop):
    thread_name = "modelyard-jobs"

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.interval_s = float(ctx.settings.scheduler.poll_interval_s)
        self.iterations = 0
        self.recovered: dict[str, int] | None = None

    def on_start(self) -> None:
        self.recovered = runner.recover(self.ctx)
        if any(self.recovered.values()):
            log.info("jobs recovered after restart: %s", self.recovered)

    def step(self) -> None:
        # reconcile and schedule fail independently: a broken reconcile must not stop admissions
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
