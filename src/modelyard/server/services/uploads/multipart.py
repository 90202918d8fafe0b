"""Uploads: streaming multipart/form-data (small files, the seed's §1.1/§1.2): parsing the body as
it arrives, files straight to temp files, then placed atomically. Re-exported by
services/uploads.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from modelyard.core.errors import BadRequest, InvalidPath, QuotaExceeded
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.services import files as fs
from modelyard.server.services.uploads.io import _IO, PIECE, _guard, tmp_dir

MAX_FIELD_BYTES = 64 * 1024


# --- streaming multipart ------------------------------------------------------------------------

@dataclass
class Received:
    field: str
    filename: str
    tmp: Path
    size: int = 0
    sha256: str = ""


@dataclass
class _FilePart:
    rec: Received
    fd: int
    h: object = field(default_factory=hashlib.sha256)
    buf: bytearray = field(default_factory=bytearray)


def _decode(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


class _Multipart:
    """python-multipart callbacks queue the work; the async loop does the disk writes in the I/O
    pool between parser.write() calls, so memory per file stays under ~1 MiB."""

    def __init__(self, tmp: Path, on_field: Callable[[str, str], None] | None,
                 on_file: Callable[[str, str], None] | None, max_bytes: int | None, max_files: int | None):
        self.tmp, self.on_field, self.on_file = tmp, on_field, on_file
        self.max_bytes, self.max_files = max_bytes, max_files
        self.fields: dict[str, str] = {}
        self.files: list[Received] = []
        self.created: list[Path] = []
        self.open_fds: list[int] = []
        self.actions: list[tuple] = []
        self.total = 0
        self._hname = self._hval = b""
        self._disp = b""
        self._cur: _FilePart | None = None
        self._field: tuple[str, bytearray] | None = None

    # callbacks
    def on_part_begin(self) -> None:
        self._hname = self._hval = self._disp = b""
        self._cur, self._field = None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hval += data[start:end]

    def on_header_end(self) -> None:
        if self._hname.lower() == b"content-disposition":
            self._disp = self._hval
        self._hname = self._hval = b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._disp)
        if b"name" not in opts:
            raise BadRequest('a multipart part has no Content-Disposition "name"', code="invalid_multipart")
        name = _decode(opts[b"name"])
        filename = None
        if b"filename*" in opts:
            raw = _decode(opts[b"filename*"])
            filename = urllib.parse.unquote(raw.split("''", 1)[1] if "''" in raw else raw)
        elif b"filename" in opts:
            filename = _decode(opts[b"filename"])
        if filename is None:
            self._field = (name, bytearray())
            return
        if self.max_files is not None and len(self.files) + 1 > self.max_files:
            raise QuotaExceeded(f"file count quota exceeded: {self.max_files} more files allowed",
                                details={"files_left": self.max_files})
        if self.on_file:
            self.on_file(name, filename)
        path = self.tmp / f"{fs.SCRATCH_PREFIX}{new_id()}.part"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        self.created.append(path)
        self.open_fds.append(fd)
        rec = Received(name, filename, path)
        self._cur = _FilePart(rec, fd)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._cur is not None:
            n = end - start
            self.total += n
            self._cur.rec.size += n
            if self.max_bytes is not None and self.total > self.max_bytes:
                raise QuotaExceeded(f"storage quota exceeded: only {max(self.max_bytes, 0)} more bytes allowed",
                                    details={"bytes_left": max(self.max_bytes, 0)})
            self._cur.buf += data[start:end]
            if len(self._cur.buf) >= PIECE:
                self.actions.append(("write", self._cur, self._cur.buf))
                self._cur.buf = bytearray()
        elif self._field is not None:
            if len(self._field[1]) + end - start > MAX_FIELD_BYTES:
                raise BadRequest(f"form field {self._field[0]!r} longer than {MAX_FIELD_BYTES} bytes",
                                 code="invalid_multipart")
            self._field[1].extend(data[start:end])

    def on_part_end(self) -> None:
        if self._cur is not None:
            self.actions.append(("write", self._cur, self._cur.buf))
            self.actions.append(("end", self._cur, None))
            self._cur = None
        elif self._field is not None:
            name, value = self._field[0], _decode(bytes(self._field[1]))
            self.fields[name] = value
            self._field = None
            if self.on_field:
                self.on_field(name, value)

    def on_end(self) -> None:
        pass

    # disk side
    @staticmethod
    def _write(part: _FilePart, data: bytearray) -> None:
        mv = memoryview(data)
        done = 0
        while done < len(mv):
            done += os.write(part.fd, mv[done:])
        part.h.update(data)

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        actions, self.actions = self.actions, []
        for kind, part, data in actions:
            if kind == "write":
                if data:
                    await loop.run_in_executor(_IO, self._write, part, data)
            else:
                await loop.run_in_executor(_IO, os.fsync, part.fd)
                os.close(part.fd)
                self.open_fds.remove(part.fd)
                part.rec.sha256 = part.h.hexdigest()
                self.files.append(part.rec)

    def cleanup(self) -> None:
        for fd in self.open_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.open_fds.clear()
        for p in self.created:
            p.unlink(missing_ok=True)


async def receive_multipart(content_type: str, stream: AsyncIterator[bytes], tmp: Path, *,
                            on_field: Callable[[str, str], None] | None = None,
                            on_file: Callable[[str, str], None] | None = None,
                            max_bytes: int | None = None, max_files: int | None = None
                            ) -> tuple[dict[str, str], list[Received], Callable[[], None]]:
    """Parse a multipart/form-data body as it streams: fields in memory (<= 64 KiB each), files
    straight to temp files under `tmp` with their SHA-256. on_field/on_file are called as soon as a
    field's value / a file's name is known and may raise to refuse the request before more is
    written; max_bytes/max_files stop the stream once passed (403 quota_exceeded).
    Returns (fields, files, cleanup); cleanup() removes whatever temp file is left."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest("expected a multipart/form-data body", code="invalid_multipart")
    sink = _Multipart(tmp, on_field, on_file, max_bytes, max_files)
    callbacks = {k: getattr(sink, k) for k in ("on_part_begin", "on_part_data", "on_part_end", "on_header_field",
                                               "on_header_value", "on_header_end", "on_headers_finished", "on_end")}
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in stream:
            if chunk:
                parser.write(chunk)
                await sink.drain()
        parser.finalize()
        await sink.drain()
    except FormParserError as exc:
        sink.cleanup()
        raise BadRequest(f"malformed multipart body: {exc}", code="invalid_multipart") from exc
    except BaseException:
        sink.cleanup()
        raise
    if sink.open_fds:
        sink.cleanup()
        raise BadRequest("multipart body ended inside a part", code="invalid_multipart")
    return sink.fields, sink.files, sink.cleanup


async def multipart_upload(ctx, principal: Principal, content_type: str, stream: AsyncIterator[bytes], *,
                           public: bool, dir_text: str | None = None, dir_field: str | None = None,
                           user_field: str | None = None, user_id: str | None = None, strict: bool = True,
                           overwrite: bool = False) -> list[dict]:
    """Receive a multipart body's files into the directory dir_text (or the form field dir_field)
    of the caller's private root or the public root; user_field (the seed's publicUserId) / user_id
    name who the files belong to (the caller unless admin). Paths are checked as soon as they are
    known; on any refusal nothing stays anywhere.

    Each file streams into a temp file under settings.uploads_dir/tmp — the roots' filesystem,
    outside every root, because the target folder may only be known after the file (currentPath
    can follow the file part) and a half-received file must never be visible in a user's tree —
    and is then renamed into place atomically (services/files.place_files; a different
    filesystem falls back to a synced temp file next to the target)."""
    settings = ctx.settings
    state = {"dir": dir_text, "user": user_id}

    def prepare():
        with fs.transaction(ctx.sessions) as s:  # may index the root / create the usage row
            scope = fs.scope_for(s, settings, principal, public=public, user_id=user_id)
            if dir_text is not None:
                fs.resolve(scope, dir_text, strict=strict)
            room = fs.headroom(s, settings, scope.owner_id)
            return scope, room

    scope, room = await run_in_threadpool(prepare)

    def on_field(name: str, value: str) -> None:
        if dir_field and name == dir_field:
            fs.resolve(scope, value, strict=strict)
            state["dir"] = value
        elif user_field and name == user_field:
            principal.ensure_acting_as(value or None)
            state["user"] = value or None

    def on_file(_name: str, filename: str) -> None:
        _check_filename(filename)
        if state["dir"] is not None or dir_field is None:
            fs.resolve(scope, fs.join(state["dir"] or "", filename), strict=False)

    fields, received, cleanup = await receive_multipart(content_type, _guard(stream), tmp_dir(settings),
                                                        on_field=on_field,
                                                        on_file=on_file, max_bytes=room.bytes_left,
                                                        max_files=room.files_left)
    try:
        if not received:
            raise BadRequest("no file in the request (multipart field `file`)", code="missing_file")
        if user_field and not fields.get(user_field):
            raise BadRequest(f"form field `{user_field}` is required", code="missing_field")

        def place():
            with fs.transaction(ctx.sessions) as s:
                final = fs.scope_for(s, settings, principal, public=public, user_id=state["user"])
                base = state["dir"] or ""
                items = [fs.plan_placement(final, fs.join(base, r.filename), r.tmp, r.size, r.sha256, strict=False)
                         for r in received]
                rows = fs.place_files(s, settings, final, items, overwrite=overwrite)
                s.flush()
                return [fs.entry(r, public=public) for r in rows]

        return await run_in_threadpool(place)
    finally:
        cleanup()


def _check_filename(filename: str) -> None:
    fs.check_text(filename, strict=True)
    parts = [p for p in filename.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidPath(f"invalid file name {filename!r}")
