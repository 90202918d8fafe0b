"""The replica's Prometheus metrics (GET /metrics), one registry per process.

Names (stable; the serving service and monitoring read them):
  modelyard_replica_ready                       1 once weights are loaded and the warm-up ran
  modelyard_replica_info{model,dtype,device,runtime}
  modelyard_replica_startup_seconds{phase}      import | load_weights | warmup
  modelyard_replica_queue_depth                 requests accepted that have no token yet
  modelyard_replica_running_requests            requests generating (past their first token)
  modelyard_replica_batch_rows                  histogram: requests advanced per generation step
  modelyard_replica_batch_rows_max              the largest running batch seen
  modelyard_replica_requests_total{endpoint,status}
  modelyard_replica_prompt_tokens_total / modelyard_replica_generated_tokens_total
  modelyard_replica_tokens_per_second           generated tokens/s over the last 10 s
  modelyard_replica_time_to_first_token_seconds histogram
  modelyard_replica_request_latency_seconds     histogram
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128)
RATE_WINDOW_S = 10.0


class ReplicaMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "modelyard_replica_"
        self.ready = Gauge(p + "ready", "1 once weights are loaded and the warm-up ran", registry=r)
        self.info = Info(p + "info", "what this replica runs", registry=r)
        self.startup = Gauge(p + "startup_seconds", "startup time by phase", ["phase"], registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "requests accepted that have no token yet", registry=r)
        self.running = Gauge(p + "running_requests", "requests past their first token", registry=r)
        self.batch_rows = Histogram(p + "batch_rows", "requests advanced per generation step",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_rows_max = Gauge(p + "batch_rows_max", "largest running batch seen", registry=r)
        self.requests = Counter(p + "requests", "requests by endpoint and HTTP status", ["endpoint", "status"],
                                registry=r)
        self.prompt_tokens = Counter(p + "prompt_tokens", "prompt tokens processed", registry=r)
        self.generated_tokens = Counter(p + "generated_tokens", "tokens generated", registry=r)
        self.ttft = Histogram(p + "time_to_first_token_seconds", "request arrival to first token",
                              buckets=TTFT_BUCKETS, registry=r)
        self.latency = Histogram(p + "request_latency_seconds", "request arrival to last token",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self._recent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self._max_rows = 0
        tps = Gauge(p + "tokens_per_second", f"generated tokens/s over the last {RATE_WINDOW_S:.0f} s", registry=r)
        tps.set_function(self.tokens_per_second)

    def observe_step(self, rows: int) -> None:
        """Called by the generation thread once per step with the number of requests it advanced."""
        if rows <= 0:
            return
        self.batch_rows.observe(rows)
        if rows > self._max_rows:
            self._max_rows = rows
            self.batch_rows_max.set(rows)

    def add_generated(self, n: int) -> None:
        if n <= 0:
            return
        self.generated_tokens.inc(n)
        now = time.monotonic()
        with self._lock:
            self._recent.append((now, n))

    def tokens_per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            total = sum(n for _, n in self._recent)
        return total / RATE_WINDOW_S
