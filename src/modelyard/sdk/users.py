"""client.users: users (admin) and who you are."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class API:
    def __init__(self, client):
        self.c = client

    def create(self, name: str, role: str = "user") -> dict[str, Any]:
        """Admin: a new user; the answer carries its first token (shown once)."""
        return self.c.post("users", json={"name": name, "role": role})

    def list(self) -> list[dict]:
        return self.c.get("users")

    def me(self) -> dict:
        return self.c.get("users/me")

    def delete(self, user: str, *, force: bool = False) -> None:
        """Admin: delete a user (id, id prefix or name). Refused (409 user_busy) while the user has
        running work, unless force=True, which cancels it first."""
        self.c.delete(f"users/{quote(user, safe='')}", params={"force": str(force).lower()})
