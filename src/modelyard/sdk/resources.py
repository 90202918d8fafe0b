"""`client.resources`: nodes, resource groups, flavors, pool statistics, tags and events."""

from __future__ import annotations

from typing import Any


class API:
    def __init__(self, client):
        self.c = client

    def _put(self, path: str, **kw) -> Any:
        resp = self.c.request("PUT", path, **kw)
        return resp.json() if resp.content else None

    # nodes
    def nodes(self, *, group: str | None = None, status: str | None = None,
              tags: list[str] | None = None) -> list[dict]:
        """Nodes with capacity / allocated / free. tags: ["key", "key=value", ...] (AND)."""
        params: dict[str, Any] = {k: v for k, v in {"group": group, "status": status}.items() if v}
        if tags:
            params["tag"] = tags
        return self.c.get("nodes", params=params)

    def node(self, ref: str) -> dict:
        return self.c.get(f"nodes/{ref}")

    def cordon(self, ref: str) -> dict:
        return self.c.post(f"nodes/{ref}/cordon")

    def uncordon(self, ref: str) -> dict:
        return self.c.post(f"nodes/{ref}/uncordon")

    def move_node(self, ref: str, group: str | None) -> dict:
        return self._put(f"nodes/{ref}/group", json={"group_id": group})

    def set_labels(self, ref: str, labels: dict[str, str], *, replace: bool = False) -> dict[str, str]:
        return self._put(f"nodes/{ref}/labels", json={"labels": labels}, params={"replace": replace})

    def remove_label(self, ref: str, key: str) -> dict[str, str]:
        return self.c.delete(f"nodes/{ref}/labels/{key}")

    # resource groups
    def groups(self, *, tags: list[str] | None = None) -> list[dict]:
        return self.c.get("resource-groups", params={"tag": tags} if tags else None)

    def group(self, ref: str) -> dict:
        return self.c.get(f"resource-groups/{ref}")

    def create_group(self, name: str, key: str, description: str = "") -> dict:
        return self.c.post("resource-groups", json={"name": name, "key": key, "description": description})

    def update_group(self, ref: str, **changes) -> dict:
        return self.c.patch(f"resource-groups/{ref}", json=changes)

    def delete_group(self, ref: str) -> None:
        self.c.delete(f"resource-groups/{ref}")

    def statistics(self, group: str | None = None) -> dict:
        """Per group and per node: capacity, allocated, free and live allocation counts."""
        return self.c.get(f"resource-groups/{group}/statistics" if group else "resource-groups/statistics")

    def pool_metrics(self) -> dict:
        return self.c.get("pools/metrics")

    # flavors
    def flavors(self, *, category: str | None = None, tags: list[str] | None = None) -> list[dict]:
        params: dict[str, Any] = {}
        if category:
            params["category"] = category
        if tags:
            params["tag"] = tags
        return self.c.get("flavors", params=params)["specifications"]

    def flavor(self, ref: str) -> dict:
        return self.c.get(f"flavors/{ref}")

    def create_flavor(self, name: str, *, cpu: float, memory_mib: int, gpu: int = 0, gpu_memory_mib: int = 0,
                      vgpu: int = 0, mig: int = 0, description: str = "") -> dict:
        return self.c.post("flavors", json={"name": name, "cpu": cpu, "memory_mib": memory_mib, "gpu": gpu,
                                            "gpu_memory_mib": gpu_memory_mib, "vgpu": vgpu, "mig": mig,
                                            "description": description})

    def update_flavor(self, ref: str, **changes) -> dict:
        return self.c.patch(f"flavors/{ref}", json=changes)

    def delete_flavor(self, ref: str) -> None:
        self.c.delete(f"flavors/{ref}")

    # tags: kind is "nodes", "resource-groups" or "flavors"
    def tags(self, kind: str, ref: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.c.get(f"{kind}/{ref}/tags")["tags"]}

    def set_tags(self, kind: str, ref: str, tags: dict[str, str], *, replace: bool = False) -> dict[str, str]:
        body = {"tags": [{"key": k, "value": v} for k, v in tags.items()]}
        out = self._put(f"{kind}/{ref}/tags", json=body, params={"replace": replace})
        return {t["key"]: t["value"] for t in out["tags"]}

    def delete_tags(self, kind: str, ref: str, keys: list[str] | None = None) -> dict[str, str]:
        out = self.c.delete(f"{kind}/{ref}/tags", params={"key": keys} if keys else None)
        return {t["key"]: t["value"] for t in out["tags"]}

    def tagged(self, tags: list[str], resource_type: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"tag": tags}
        if resource_type:
            params["resource_type"] = resource_type
        return self.c.get("tags/resources", params=params)["resources"]

    # events
    def events(self, *, object_type: str | None = None, object_id: str | None = None, kind: str | None = None,
               page: int = 1, page_size: int = 50) -> dict:
        params = {k: v for k, v in {"object_type": object_type, "object_id": object_id, "kind": kind,
                                    "page": page, "page_size": page_size}.items() if v is not None}
        return self.c.get("events", params=params)

    def history(self, object_type: str, object_id: str) -> list[dict]:
        return self.c.get(f"events/{object_type}/{object_id}", params={"page_size": 1000})["items"]
