from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx


class APIError(Exception):
    """A 4xx/5xx answer: status, the server's error code and message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.details = status, code, message, details


class Client:
    """`Client(url, token)`; url/token default to MODELYARD_URL / MODELYARD_TOKEN.

    Domain helpers hang off it: client.users, client.files, client.images, client.datasets,
    client.models, client.jobs, client.searches, client.resources."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = (url or os.environ.get("MODELYARD_URL") or "http://127.0.0.1:8600").rstrip("/")
        self.token = token or os.environ.get("MODELYARD_TOKEN") or os.environ.get("MODELYARD_ADMIN_TOKEN") \
            or _local_admin_token()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        """Native API call (path relative to /api/v1 unless absolute); raises APIError on 4xx/5xx."""
        if not path.startswith("/"):
            path = "/api/v1/" + path
        resp = self.http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise_for(resp)
        return resp

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw).json()

    def post(self, path: str, **kw) -> Any:
        resp = self.request("POST", path, **kw)
        return resp.json() if resp.content else None

    def patch(self, path: str, **kw) -> Any:
        resp = self.request("PATCH", path, **kw)
        return resp.json() if resp.content else None

    def delete(self, path: str, **kw) -> Any:
        resp = self.request("DELETE", path, **kw)
        return resp.json() if resp.content else None

    # domain helpers, imported lazily so `import modelyard.sdk` stays light
    def __getattr__(self, name: str) -> Any:
        import importlib

        if name.startswith("_"):
            raise AttributeError(name)
        try:
            mod = importlib.import_module(f"modelyard.sdk.{name}")
        except ModuleNotFoundError:
            raise AttributeError(name) from None
        api = mod.API(self)
        setattr(self, name, api)
        return api


def _local_admin_token() -> str | None:
    """On the server's own machine, the generated admin token saved at first start."""
    home = Path(os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard")
    try:
        return (home / "admin.token").read_text().strip() or None
    except OSError:
        return None


def raise_for(resp: httpx.Response) -> None:
    try:
        err = resp.json().get("error", {})
    except ValueError:
        err = {}
    raise APIError(resp.status_code, err.get("code", "http_error"), err.get("message", resp.text[:500]),
                   err.get("details"))
