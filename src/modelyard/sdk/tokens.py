"""client.tokens: your API tokens (list, create, revoke)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class API:
    def __init__(self, client):
        self.c = client

    def list(self) -> list[dict[str, Any]]:
        """Your tokens (id, name, prefix, created/last used/revoked); never the secret."""
        return self.c.get("tokens")

    def create(self, name: str = "default") -> dict[str, Any]:
        """A new token; the answer's `token` is the secret, shown once."""
        return self.c.post("tokens", json={"name": name})

    def revoke(self, token_id: str) -> None:
        self.c.delete(f"tokens/{quote(token_id, safe='')}")
