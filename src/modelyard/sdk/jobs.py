"""client.jobs: submit, list, inspect, follow, cancel and resume jobs; register their outputs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

FINISHED = ("succeeded", "failed", "cancelled")


class API:
    def __init__(self, client):
        self.c = client

    # --- submit ------------------------------------------------------------------------------
    def submit(self, **body: Any) -> dict:
        """POST /jobs with a JobSubmit body (kind, roles, command, model, dataset, strategy, config ...)."""
        return self.c.post("jobs", json={k: v for k, v in body.items() if v is not None})

    def run(self, command: str | list[str], *, cpu: float = 1, memory_mib: int = 1024, replicas: int = 1,
            image: str | None = None, name: str | None = None, **kw: Any) -> dict:
        """A custom job running command (a shell line or an argv list)."""
        roles = [{"role": "master", "replicas": 1, "cpu": cpu, "memory_mib": memory_mib}]
        if replicas > 1:
            roles.append({"role": "worker", "replicas": replicas - 1, "cpu": cpu, "memory_mib": memory_mib})
        return self.submit(kind="custom", command=command, roles=roles, image=image, name=name, **kw)

    def finetune(self, model: str, dataset: str | None = None, *, strategy: str = "lora",
                 config: dict | None = None, pretrain: bool = False, input_dir: str | None = None,
                 hyperparameters: dict | None = None, lora: dict | None = None, cpu: float | None = None,
                 memory_mib: int | None = None, gpus: int = 0, name: str | None = None, **kw: Any) -> dict:
        """Fine-tune (or pre-train) a registry model on a dataset (or on Data/ in your files).
        strategy: lora | full | qlora | pretrain; the output model is `<base>-<strategy>` unless
        output_model_name= is given."""
        if strategy == "pretrain":
            pretrain = True
        role: dict[str, Any] = {"role": "master", "replicas": 1}
        if cpu is not None:
            role["cpu"] = cpu
        if memory_mib is not None:
            role["memory_mib"] = memory_mib
        if gpus:
            role["gpu"] = {"num": gpus}
        roles = [role] if len(role) > 2 else None
        return self.submit(kind="pretrain" if pretrain else "finetune", model=model, dataset=dataset,
                           input_type="dataset" if dataset else "local", input_dir=input_dir,
                           strategy=strategy, config=config, common_hyperparameters=hyperparameters,
                           finetune_hyperparameters=lora, roles=roles, name=name, **kw)

    # --- read --------------------------------------------------------------------------------
    def list(self, *, state: str | None = None, kind: str | None = None, q: str | None = None,
             page: int = 1, page_size: int = 20) -> dict:
        params = {k: v for k, v in dict(state=state, kind=kind, q=q, page=page, page_size=page_size).items()
                  if v is not None}
        return self.c.get("jobs", params=params)

    def get(self, job_id: str) -> dict:
        return self.c.get(f"jobs/{job_id}")

    def metrics(self, job_id: str, names: list[str] | None = None, since_step: int | None = None) -> dict:
        params: dict[str, Any] = {}
        if names:
            params["name"] = ",".join(names)
        if since_step is not None:
            params["since_step"] = since_step
        return self.c.get(f"jobs/{job_id}/metrics", params=params)

    def logs(self, job_id: str, *, follow: bool = False, replica: str | None = None,
             offset: int = 0) -> Iterator[str]:
        """Chunks of a replica's log; with follow=True until the job ends."""
        yield from self.c.stream_log(f"jobs/{job_id}/logs", follow=follow, replica=replica, offset=offset)

    # --- change ------------------------------------------------------------------------------
    def delete(self, job_id: str) -> None:
        """Delete a finished job and its files (409 job_active while it runs, in_use while a model
        version's lineage needs it)."""
        self.c.delete(f"jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self.c.post(f"jobs/{job_id}/cancel")

    def resume(self, job_id: str) -> dict:
        return self.c.post(f"jobs/{job_id}/resume")

    def register(self, job_id: str, model_name: str, *, description: str = "", path: str | None = None) -> dict:
        body = {"model_name": model_name, "description": description}
        if path:
            body["path"] = path
        return self.c.post(f"jobs/{job_id}/register", json=body)

    def wait(self, job_id: str, *, timeout: float | None = None, interval: float = 0.5,
             states: tuple[str, ...] = FINISHED) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] in states:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout}s")
            time.sleep(interval)
