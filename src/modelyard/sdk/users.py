from __future__ import annotations

from typing import Any


class API:
    def __init__(self, client):
        self.c = client

    def create(self, name: str, role: str = "user") -> dict[str, Any]:
        return self.c.post("users", json={"name": name, "role": role})

    def list(self) -> list[dict]:
        return self.c.get("users")

    def me(self) -> dict:
        return self.c.get("users/me")
