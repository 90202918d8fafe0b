"""client.services: deploy models as OpenAI-compatible services; list, inspect, scale, stop, delete;
their events, monitor data and replica logs. A service is named by id, id prefix or name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote


def _q(ref: str) -> str:
    return quote(str(ref), safe="")


class API:
    def __init__(self, client):
        self.c = client

    def create(self, name: str, versions: list[dict[str, Any]], *, description: str = "", start: bool = True) -> dict:
        """POST /services: versions are VersionSpec bodies (model, runtime, cpu, memory_mib, replicas...)."""
        return self.c.post("services", json={"name": name, "description": description, "versions": versions,
                                             "start": start})

    def deploy(self, model: str, *, name: str, runtime: str = "auto", replicas: int | None = None,
               min_replicas: int | None = None, max_replicas: int | None = None, cpu: float | None = None,
               memory_mib: int | None = None, gpu: int = 0, adapters: dict[str, str] | None = None,
               env: dict[str, str] | None = None, start: bool = True) -> dict:
        """One-version service of a registry model (`MODEL[:VERSION]` or a version id)."""
        v: dict[str, Any] = {"model": model, "runtime": runtime, "gpu": gpu}
        for k, val in dict(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas, cpu=cpu,
                           memory_mib=memory_mib, adapters=adapters, env=env).items():
            if val is not None:
                v[k] = val
        return self.create(name, [v], start=start)

    def list(self, *, q: str | None = None, state: str | None = None, page: int = 1, page_size: int = 20) -> dict:
        params = {k: v for k, v in dict(q=q, state=state, page=page, page_size=page_size).items() if v is not None}
        return self.c.get("services", params=params)

    def get(self, ref: str) -> dict:
        return self.c.get(f"services/{_q(ref)}")

    def start(self, ref: str) -> dict:
        return self.c.post(f"services/{_q(ref)}/start")

    def stop(self, ref: str) -> dict:
        return self.c.post(f"services/{_q(ref)}/stop")

    def scale(self, ref: str, *, replicas: int | None = None, min_replicas: int | None = None,
              max_replicas: int | None = None, version: int | None = None) -> dict:
        body = {k: v for k, v in dict(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                                      version=version).items() if v is not None}
        return self.c.post(f"services/{_q(ref)}/scale", json=body)

    def add_version(self, ref: str, **version: Any) -> dict:
        return self.c.post(f"services/{_q(ref)}/versions", json=version)

    def remove_version(self, ref: str, number: int) -> dict:
        return self.c.delete(f"services/{_q(ref)}/versions/{int(number)}")

    def set_rates(self, ref: str, rates: dict[int, int]) -> dict:
        return self.c.request("PUT", f"services/{_q(ref)}/rates", json={"rates": rates}).json()

    def delete(self, ref: str) -> None:
        self.c.delete(f"services/{_q(ref)}")

    def events(self, ref: str) -> list[dict]:
        return self.c.get(f"services/{_q(ref)}/events")["events"]

    def monitor(self, ref: str) -> dict:
        return self.c.get(f"services/{_q(ref)}/monitor")

    def logs(self, ref: str, *, replica: str | None = None, follow: bool = False, offset: int = 0) -> Iterator[str]:
        yield from self.c.stream_log(f"services/{_q(ref)}/logs", follow=follow, replica=replica, offset=offset)

    def wait(self, ref: str, states: tuple[str, ...] = ("running",), *, timeout: float = 600.0,
             poll_s: float = 1.0) -> dict:
        """Poll until the service is in one of states (or failed); returns its detail."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.get(ref)
            if d["state"] in states or d["state"] == "failed":
                return d
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {ref} is {d['state']} after {timeout:g}s")
            time.sleep(poll_s)
