"""client.images: container images (/api/v1/images, seed §2).

`image` arguments take an image id or name; names containing '/' (docker style) are looked up
through the list endpoint."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

_ID = re.compile(r"^[0-9a-f]{32}$")


class API:
    def __init__(self, client):
        self.c = client

    def _ref(self, image: str) -> str:
        if _ID.match(image) or "/" not in image:
            return quote(image, safe="")
        items = self.list(name=image, page_size=100)["items"]
        if not items:
            from modelyard.sdk import APIError

            raise APIError(404, "not_found", f"image {image} not found")
        if len(items) > 1:
            me = self.c.get("users/me")["id"]
            items = [i for i in items if i["owner_id"] == me] or items
        return items[0]["id"]

    def create(self, name: str, *, description: str = "", labels: list | None = None, icon: str = "",
               overview: str = "", is_public: bool = False) -> dict[str, Any]:
        return self.c.post("images", json={"name": name, "description": description, "labels": labels or [],
                                           "icon": icon, "overview": overview, "is_public": is_public})

    def list(self, *, page: int = 1, page_size: int = 20, q: str | None = None, name: str | None = None
             ) -> dict[str, Any]:
        params: dict[str, Any] = {"page": page, "page_size": page_size}
        if q:
            params["q"] = q
        if name:
            params["name"] = name
        return self.c.get("images", params=params)

    def get(self, image: str) -> dict[str, Any]:
        return self.c.get(f"images/{self._ref(image)}")

    def update(self, image: str, **changes: Any) -> dict[str, Any]:
        return self.c.patch(f"images/{self._ref(image)}", json=changes)

    def delete(self, image: str) -> None:
        self.c.delete(f"images/{self._ref(image)}")

    def import_version(self, image: str, path: str, *, tag: str | None = None) -> dict[str, Any]:
        """Import a docker-save / OCI archive lying in your files (path relative to your root)."""
        body: dict[str, Any] = {"path": path}
        if tag:
            body["tag"] = tag
        return self.c.post(f"images/{self._ref(image)}/versions", json=body)

    def versions(self, image: str) -> list[dict[str, Any]]:
        return self.c.get(f"images/{self._ref(image)}/versions")

    def version(self, image: str, version: str) -> dict[str, Any]:
        """version: a tag or a version id."""
        return self.c.get(f"images/{self._ref(image)}/versions/{quote(version, safe='')}")

    def delete_version(self, image: str, version: str) -> None:
        self.c.delete(f"images/{self._ref(image)}/versions/{quote(version, safe='')}")

    def gc(self, grace_s: float = 3600) -> dict[str, Any]:
        """Admin: collect unreferenced blobs."""
        return self.c.post("images/gc", params={"grace_s": grace_s})
