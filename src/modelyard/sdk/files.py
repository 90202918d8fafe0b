"""client.files: your private files and the public root (/api/v1/files, /api/v1/uploads).

Remote paths are relative to the root (a leading '/' is dropped here, so '/Data/train' and
'Data/train' name the same folder); `public=True` works in the public root.

`upload()` uses the resumable protocol: the file's SHA-256 is computed, an open session for the
same path, size and SHA-256 is looked up and continued (after an interrupted upload, even across a
server restart) or a new one opened, the missing chunks are sent (optionally in parallel, each
retried with backoff on network errors and 5xx answers), and the server verifies the SHA-256 on
completion. `download()` resumes a partial `<dest>.part` with an HTTP Range request and checks the
SHA-256 when the server knows it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

PIECE = 1 << 20
DEFAULT_CHUNK = 32 * 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


class UploadInterrupted(Exception):
    """The upload stopped before completing; calling upload() again resumes session `upload_id`."""

    def __init__(self, upload_id: str, message: str):
        super().__init__(f"upload {upload_id} interrupted: {message} (run the upload again to resume)")
        self.upload_id = upload_id


def _rel(path: str) -> str:
    return (path or "").lstrip("/")


def sha256_file(path: str | os.PathLike, progress: Progress | None = None) -> str:
    h = hashlib.sha256()
    size = os.path.getsize(path)
    done = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            data = f.read(4 * PIECE)
            if not data:
                break
            h.update(data)
            done += len(data)
            if progress:
                progress(done, size)
    return h.hexdigest()


def _retryable(exc: Exception) -> bool:
    from modelyard.sdk import APIError

    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, APIError) and (exc.status >= 500 or exc.status in (408, 429))


class API:
    def __init__(self, client):
        self.c = client

    # --- browsing -------------------------------------------------------------------------------

    def list(self, path: str = "", *, public: bool = False, page: int = 1, page_size: int = 100,
             after: str | None = None, user_id: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"path": _rel(path), "public": public, "page": page, "page_size": page_size}
        if after is not None:
            params["after"] = after
        if user_id:
            params["user_id"] = user_id
        return self.c.get("files", params=params)

    def iter(self, path: str = "", *, public: bool = False, page_size: int = 1000) -> Iterator[dict]:
        """Every entry of a directory (keyset paging)."""
        after = None
        while True:
            page = self.list(path, public=public, page_size=page_size, after=after)
            yield from page["items"]
            after = page["next_after"]
            if after is None:
                return

    def stat(self, path: str, *, public: bool = False) -> dict[str, Any]:
        return self.c.get("files/stat", params={"path": _rel(path), "public": public})

    def exists(self, path: str, *, public: bool = False) -> bool:
        from modelyard.sdk import APIError

        try:
            self.stat(path, public=public)
            return True
        except APIError as exc:
            if exc.status == 404:
                return False
            raise

    def usage(self, user_id: str | None = None) -> dict[str, Any]:
        return self.c.get("files/usage", params={"user_id": user_id} if user_id else None)

    # --- changes ----------------------------------------------------------------------------------

    def mkdir(self, path: str, *, public: bool = False, parents: bool = True, exist_ok: bool = True) -> dict:
        return self.c.post("files/mkdir", json={"path": _rel(path), "public": public, "parents": parents,
                                                "exist_ok": exist_ok})

    def move(self, src: str, dst: str, *, public: bool = False, overwrite: bool = False) -> dict:
        return self.c.post("files/move", json={"src": _rel(src), "dst": _rel(dst), "public": public,
                                               "overwrite": overwrite})

    def delete(self, path: str, *, public: bool = False, recursive: bool = True) -> dict:
        return self.c.delete("files", params={"path": _rel(path), "public": public, "recursive": recursive})

    def extract(self, path: str, dest: str | None = None, *, public: bool = False, dest_public: bool | None = None,
                overwrite: bool = False) -> dict:
        body: dict[str, Any] = {"path": _rel(path), "public": public, "overwrite": overwrite}
        if dest is not None:
            body["dest"] = _rel(dest)
        if dest_public is not None:
            body["dest_public"] = dest_public
        return self.c.post("files/extract", json=body, timeout=None)

    def reindex(self, path: str = "", *, public: bool = False) -> dict:
        return self.c.post("files/reindex", params={"path": _rel(path), "public": public})

    # --- small uploads (one request) -----------------------------------------------------------

    def put(self, local_path: str | os.PathLike, remote_dir: str = "", *, public: bool = False,
            overwrite: bool = False, name: str | None = None) -> dict:
        """Upload one small file in a single multipart request into remote_dir."""
        p = Path(local_path)
        with open(p, "rb") as f:
            entries = self.c.post("files/upload", params={"path": _rel(remote_dir), "public": public,
                                                          "overwrite": overwrite},
                                  files={"file": (name or p.name, f, "application/octet-stream")})
        return entries[0]

    # --- resumable uploads --------------------------------------------------------------------

    def uploads(self, *, state: str | None = "live", path: str | None = None, public: bool | None = None) -> list:
        """Your uploads: "live" (open or completing), a state, or None for all."""
        params: dict[str, Any] = {"state": state or ""}
        if path is not None:
            params["path"] = _rel(path)
        if public is not None:
            params["public"] = public
        return self.c.get("uploads", params=params)

    def upload_state(self, upload_id: str) -> dict:
        return self.c.get(f"uploads/{upload_id}")

    def abort(self, upload_id: str) -> None:
        self.c.delete(f"uploads/{upload_id}")

    def find_upload(self, remote_path: str, size: int, sha256: str, *, public: bool = False) -> dict | None:
        """An open (or interrupted while completing) session for the same path and content, to resume."""
        for u in self.uploads(state=None, path=remote_path, public=public):
            if u["size"] == size and u["sha256"] == sha256 and u["state"] in ("open", "completing"):
                return u
        return None

    def upload(self, local_path: str | os.PathLike, remote_path: str, *, public: bool = False,
               overwrite: bool = False, progress: Progress | None = None, hash_progress: Progress | None = None,
               chunk_size: int = DEFAULT_CHUNK, parallel: int = 1, retries: int = 5, backoff: float = 0.5,
               resume: bool = True, sha256: str | None = None,
               on_session: Callable[[dict, bool], None] | None = None) -> dict:
        """Upload local_path to remote_path with the resumable protocol; returns the stored file's
        entry. progress(sent, total) is called as chunks are acknowledged (starting from what the
        server already had when resuming); on_session(session, resumed) once the session is known.
        Raises UploadInterrupted (resume by calling again) when retries run out."""
        from modelyard.sdk import APIError

        local = Path(local_path)
        size = local.stat().st_size
        remote = _rel(remote_path)
        digest = sha256 or sha256_file(local, hash_progress)
        session = self.find_upload(remote, size, digest, public=public) if resume else None
        resumed = session is not None
        if session is None:
            session = self.c.post("uploads", json={"path": remote, "size": size, "sha256": digest, "public": public,
                                                   "overwrite": overwrite, "chunk_size": chunk_size})
        if on_session:
            on_session(session, resumed)
        uid, cs = session["id"], session["chunk_size"]
        lock = threading.Lock()
        done = [session["received_bytes"]]
        if progress:
            progress(done[0], size)

        def send(fd: int, index: int) -> None:
            offset = index * cs
            length = min(cs, size - offset)

            def body() -> Iterator[bytes]:
                pos, end = offset, offset + length
                while pos < end:
                    data = os.pread(fd, min(PIECE, end - pos), pos)
                    if not data:
                        raise OSError(f"{local} shrank while uploading")
                    pos += len(data)
                    yield data

            attempt = 0
            while True:
                try:
                    self.c.request("PUT", f"uploads/{uid}/chunks/{index}", content=body(),
                                   headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"})
                    break
                except (httpx.TransportError, APIError) as exc:
                    attempt += 1
                    if not _retryable(exc) or attempt > retries:
                        if isinstance(exc, APIError) and not _retryable(exc):
                            raise
                        raise UploadInterrupted(uid, f"chunk {index}: {exc}") from exc
                    time.sleep(min(backoff * 2 ** (attempt - 1), 15))
            with lock:
                done[0] += length
                if progress:
                    progress(done[0], size)

        for _round in range(3):
            missing = session["missing"]
            if missing:
                fd = os.open(local, os.O_RDONLY)
                try:
                    if parallel > 1:
                        with ThreadPoolExecutor(max_workers=parallel) as pool:
                            for f in [pool.submit(send, fd, i) for i in missing]:
                                f.result()
                    else:
                        for i in missing:
                            send(fd, i)
                finally:
                    os.close(fd)
            attempt = 0
            while True:
                try:
                    result = self.c.post(f"uploads/{uid}/complete", timeout=max(120.0, size / (50 * 2**20)))
                    return result["file"]
                except (httpx.TransportError, APIError) as exc:
                    if isinstance(exc, APIError) and exc.code == "upload_incomplete":
                        session = self.upload_state(uid)  # send what is missing, then complete again
                        break
                    attempt += 1
                    if not _retryable(exc) or attempt > retries:
                        if isinstance(exc, APIError) and not _retryable(exc):
                            raise
                        raise UploadInterrupted(uid, f"complete: {exc}") from exc
                    time.sleep(min(backoff * 2 ** (attempt - 1), 15))
        raise UploadInterrupted(uid, "chunks kept going missing")

    # --- download -------------------------------------------------------------------------------

    def download(self, path: str, dest: str | os.PathLike, *, public: bool = False, progress: Progress | None = None,
                 resume: bool = True, retries: int = 5, backoff: float = 0.5) -> Path:
        """Download a remote file to dest (a file path, or an existing directory). A partial
        <dest>.part left by an interrupted download is continued with a Range request."""
        from modelyard.sdk import APIError
        from modelyard.sdk._client import raise_for

        info = self.stat(path, public=public)
        if info["is_dir"]:
            raise APIError(400, "is_a_directory", f"{path} is a directory")
        target = Path(dest)
        if target.is_dir():
            target = target / info["name"]
        part = target.with_name(target.name + ".part")
        size = info["size"]
        if not resume:
            part.unlink(missing_ok=True)
        attempt = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            if have > size:
                part.unlink()
                have = 0
            if have == size:
                break
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with self.c.http.stream("GET", "/api/v1/files/download", headers=headers,
                                        params={"path": _rel(path), "public": public}) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise_for(resp)
                    if have and resp.status_code != 206:
                        have = 0  # the server sent everything: start over
                    with open(part, "r+b" if have else "wb") as out:
                        out.seek(have)
                        for data in resp.iter_bytes(PIECE):
                            out.write(data)
                            have += len(data)
                            if progress:
                                progress(have, size)
                break
            except (httpx.TransportError, APIError) as exc:
                attempt += 1
                if not _retryable(exc) or attempt > retries:
                    raise
                time.sleep(min(backoff * 2 ** (attempt - 1), 15))
        if part.stat().st_size != size:
            raise APIError(500, "download_incomplete", f"got {part.stat().st_size} of {size} bytes; run again")
        if info.get("sha256"):
            actual = sha256_file(part)
            if actual != info["sha256"]:
                part.unlink()
                raise APIError(500, "sha256_mismatch", f"downloaded data has SHA-256 {actual}, expected {info['sha256']}")
        os.replace(part, target)
        return target
