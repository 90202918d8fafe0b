"""client.datasets: validated, immutable dataset versions (/api/v1/datasets)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def _q(part: str | int) -> str:
    return quote(str(part), safe="")


class API:
    def __init__(self, client):
        self.c = client

    def create(self, name: str, path: str | None = None, *, train: str | None = None,
               validate: str | None = None, test: str | None = None, description: str = "",
               is_public: bool = False) -> dict[str, Any]:
        """Version 1 from your files: `path` (a folder with train/validate/test, or a file), or
        per-split `train` / `validate` / `test` paths (relative to your file root)."""
        body = {"name": name, "path": path, "train": train, "validate": validate, "test": test,
                "description": description, "is_public": is_public}
        return self.c.post("datasets", json={k: v for k, v in body.items() if v is not None})

    def create_version(self, dataset: str, path: str | None = None, *, train: str | None = None,
                       validate: str | None = None, test: str | None = None,
                       description: str = "") -> dict[str, Any]:
        body = {"path": path, "train": train, "validate": validate, "test": test, "description": description}
        return self.c.post(f"datasets/{_q(dataset)}/versions", json={k: v for k, v in body.items() if v is not None})

    def list(self, *, page: int = 1, page_size: int = 20, q: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if q:
            params["q"] = q
        return self.c.get("datasets", params=params)

    def get(self, dataset: str) -> dict[str, Any]:
        return self.c.get(f"datasets/{_q(dataset)}")

    def update(self, dataset: str, **changes: Any) -> dict[str, Any]:
        return self.c.patch(f"datasets/{_q(dataset)}", json=changes)

    def delete(self, dataset: str) -> None:
        self.c.delete(f"datasets/{_q(dataset)}")

    def versions(self, dataset: str) -> list[dict[str, Any]]:
        return self.c.get(f"datasets/{_q(dataset)}/versions")

    def version(self, dataset: str, version: str | int = "latest") -> dict[str, Any]:
        return self.c.get(f"datasets/{_q(dataset)}/versions/{_q(version)}")

    def rows(self, dataset: str, version: str | int = "latest", *, split: str = "train", offset: int = 0,
             limit: int = 20) -> dict[str, Any]:
        return self.c.get(f"datasets/{_q(dataset)}/versions/{_q(version)}/rows",
                          params={"split": split, "offset": offset, "limit": limit})

    def delete_version(self, dataset: str, version: str | int) -> None:
        self.c.delete(f"datasets/{_q(dataset)}/versions/{_q(version)}")
