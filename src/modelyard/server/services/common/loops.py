"""The base of every background reconcile loop (the jobs scheduler, the search driver, ...)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from modelyard.server.services.common.wake import add_waker, remove_waker

log = logging.getLogger(__name__)


class WakeableLoop:
    """A reconcile loop on its own thread: runs `step()` whenever it is woken (every job state
    change sets the wake event, see services/common/wake.py) and at least every
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
        add_waker(self.wake)
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
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
