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
    """`Client(url, token)`; url/token default to MODELYARD_URL / MODELYARD_TOKEN. Without either,
    requests go out with no token (the server answers 401): the local admin token is only used
    when asked for, with `Client.local_admin()`.

    Domain helpers hang off it: client.users, client.tokens, client.files, client.images,
    client.datasets, client.models, client.jobs, client.searches, client.resources, client.quota.
    Every `{ref}` argument takes a full id, a unique id prefix (>= 4 characters) or a name (your
    own first); versions as `name:version` or `name:alias` — the server resolves them."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None):
        self.url = (url or os.environ.get("MODELYARD_URL") or "http://127.0.0.1:8600").rstrip("/")
        self.token = token or os.environ.get("MODELYARD_TOKEN") or None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    @classmethod
    def local_admin(cls, url: str | None = None, *, home: str | os.PathLike | None = None,
                    missing_ok: bool = False, **kw: Any) -> Client:
        """A client acting as admin with the token the server saved at first start
        ($MODELYARD_HOME/admin.token, default ~/.modelyard) — only on the server's own machine.
        missing_ok: no file -> a client without a token instead of FileNotFoundError."""
        token = local_admin_token(home)
        if token is None and not missing_ok:
            raise FileNotFoundError(f"no admin token at {admin_token_file(home)}")
        return cls(url, token, **kw)

    def whoami(self) -> dict[str, Any]:
        """The user the token belongs to (GET /users/me)."""
        return self.get("users/me")

    def hparams(self, strategy: str | None = None) -> dict[str, Any]:
        """GET /hparams: {"strategies": [{name, description}], "hyperparameters": [{name, type,
        default, range|choices, strategies, description}]}; `strategy` keeps only its own."""
        return self.get("hparams", params={"strategy": strategy} if strategy else None)

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

    def stream_log(self, path: str, *, follow: bool = False, replica: str | None = None,
                   offset: int = 0):
        """Chunks of a replica log route (jobs, services); with follow=True until it ends."""
        params: dict[str, Any] = {"follow": str(follow).lower(), "offset": offset}
        if replica:
            params["replica"] = replica
        with self.http.stream("GET", "/api/v1/" + path, params=params,
                              timeout=None if follow else self.http.timeout) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise_for(resp)
            yield from resp.iter_text()

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


def admin_token_file(home: str | os.PathLike | None = None) -> Path:
    return Path(home or os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard") / "admin.token"


def local_admin_token(home: str | os.PathLike | None = None) -> str | None:
    """On the server's own machine, the generated admin token saved at first start."""
    try:
        return admin_token_file(home).read_text().strip() or None
    except OSError:
        return None


def raise_for(resp: httpx.Response) -> None:
    try:
        err = resp.json().get("error", {})
    except ValueError:
        err = {}
    raise APIError(resp.status_code, err.get("code", "http_error"), err.get("message", resp.text[:500]),
                   err.get("details"))
