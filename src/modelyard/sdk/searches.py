"""client.searches: hyperparameter searches (each trial is a training job)."""

from __future__ import annotations

import time
from typing import Any

FINISHED = ("succeeded", "failed", "cancelled")


class API:
    def __init__(self, client):
        self.c = client

    def create(self, base: dict[str, Any], space: list[dict[str, Any]] | dict[str, Any], *, algorithm: str = "tpe",
               metric: str | None = None, direction: str = "minimize", max_trials: int | None = None,
               parallel_trials: int = 1, early_stopping: bool | dict[str, Any] | None = None,
               algorithm_params: dict[str, Any] | list[dict[str, Any]] | None = None, name: str | None = None,
               description: str = "", seed: int | None = None) -> dict:
        """Start a search. base: a jobs.submit body (kind finetune|pretrain, model, dataset, ...);
        space: [{"name": "learning_rate", "type": "float", "low": 1e-5, "high": 1e-3, "log": True}, ...]."""
        body = {"base": base, "space": space, "algorithm": algorithm, "metric": metric, "direction": direction,
                "max_trials": max_trials, "parallel_trials": parallel_trials, "early_stopping": early_stopping,
                "algorithm_params": algorithm_params, "name": name, "description": description, "seed": seed}
        return self.c.post("searches", json={k: v for k, v in body.items() if v is not None})

    def list(self, *, state: str | None = None, page: int = 1, page_size: int = 20) -> dict:
        params = {k: v for k, v in dict(state=state, page=page, page_size=page_size).items() if v is not None}
        return self.c.get("searches", params=params)

    def get(self, search_id: str) -> dict:
        return self.c.get(f"searches/{search_id}")

    def delete(self, search_id: str) -> None:
        """Delete a finished search (409 while it runs: cancel it first)."""
        self.c.delete(f"searches/{search_id}")

    def cancel(self, search_id: str) -> dict:
        return self.c.post(f"searches/{search_id}/cancel")

    def algorithms(self) -> dict:
        return self.c.get("searches/algorithms")

    def wait(self, search_id: str, *, timeout: float | None = None, interval: float = 1.0) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            s = self.get(search_id)
            if s["state"] in FINISHED:
                return s
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"search {search_id} still {s['state']} after {timeout}s")
            time.sleep(interval)
