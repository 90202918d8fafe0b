"""`client.runtimes`: the runtimes a service can run on and their prepared environments."""

from __future__ import annotations


class API:
    def __init__(self, client):
        self.c = client

    def list(self) -> list[dict]:
        """name, kind, ready, status (absent | preparing | ready | failed), size_bytes, progress, prepare."""
        return self.c.get("runtimes")["items"]

    def get(self, name: str) -> dict:
        return self.c.get(f"runtimes/{name}")

    def install(self, name: str) -> dict:
        """Admin: start preparing a runtime's environment; poll get() for progress."""
        return self.c.post(f"runtimes/{name}/install")
