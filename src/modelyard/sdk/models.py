"""client.models: the model registry (/api/v1/models)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote


def _q(part: str) -> str:
    return quote(str(part), safe="")


class API:
    def __init__(self, client):
        self.c = client

    # models
    def list(self, *, page: int = 1, page_size: int = 20, q: str | None = None, mine: bool = False,
             public: bool | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "page_size": page_size, "mine": mine}
        if q:
            params["q"] = q
        if public is not None:
            params["public"] = public
        return self.c.get("models", params=params)

    def get(self, model: str) -> dict[str, Any]:
        return self.c.get(f"models/{_q(model)}")

    def create(self, name: str, path: str | None = None, *, version: str | None = None, description: str = "",
               type: str = "LLM", developer: str = "", is_public: bool = False,
               owner_id: str | None = None) -> dict[str, Any]:
        """Create a model; with `path` (relative to your file root) its first version is imported."""
        body = {"name": name, "path": path, "version": version, "description": description, "type": type,
                "developer": developer, "is_public": is_public, "owner_id": owner_id}
        return self.c.post("models", json={k: v for k, v in body.items() if v is not None})

    def update(self, model: str, **changes: Any) -> dict[str, Any]:
        return self.c.patch(f"models/{_q(model)}", json=changes)

    def delete(self, model: str) -> None:
        self.c.delete(f"models/{_q(model)}")

    # versions
    def versions(self, model: str) -> list[dict[str, Any]]:
        return self.c.get(f"models/{_q(model)}/versions")

    def version(self, model: str, version: str) -> dict[str, Any]:
        return self.c.get(f"models/{_q(model)}/versions/{_q(version)}")

    def import_version(self, model: str, path: str, *, version: str | None = None,
                       description: str = "") -> dict[str, Any]:
        body = {"path": path, "version": version, "description": description}
        return self.c.post(f"models/{_q(model)}/versions", json={k: v for k, v in body.items() if v is not None})

    def delete_version(self, model: str, version: str) -> None:
        self.c.delete(f"models/{_q(model)}/versions/{_q(version)}")

    def resolve(self, ref: str, *, ready: bool = True) -> dict[str, Any]:
        """'<model>', '<model>:<version|alias>' or a version id -> the version's detail."""
        return self.c.get("model-versions/resolve", params={"ref": ref, "ready": ready})

    def wait(self, model: str, version: str, *, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll a version until it is no longer importing; returns its detail."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.version(model, version)
            if v["status"] != "importing" or time.monotonic() > deadline:
                return v
            time.sleep(poll)

    # aliases and metrics
    def aliases(self, model: str) -> list[dict[str, Any]]:
        return self.c.get(f"models/{_q(model)}/aliases")

    def set_alias(self, model: str, alias: str, version: str) -> dict[str, Any]:
        return self.c.request("PUT", f"models/{_q(model)}/aliases/{_q(alias)}", json={"version": version}).json()

    def delete_alias(self, model: str, alias: str) -> None:
        self.c.delete(f"models/{_q(model)}/aliases/{_q(alias)}")

    def metrics(self, model: str, version: str, name: str | None = None) -> list[dict[str, Any]]:
        return self.c.get(f"models/{_q(model)}/versions/{_q(version)}/metrics",
                          params={"name": name} if name else None)

    def add_metrics(self, model: str, version: str, metrics: dict[str, float], step: int | None = None
                    ) -> list[dict[str, Any]]:
        return self.c.post(f"models/{_q(model)}/versions/{_q(version)}/metrics",
                           json={"metrics": metrics, "step": step})
