"""Extracting tar, tar.gz (also .bz2/.xz) and zip archives from a user's files into a folder.

Guards (an archive that trips one is refused whole with 400 naming the member; nothing is placed):
- member names: absolute, '..', backslash, NUL, reserved scratch names -> unsafe_archive
  (tar members also go through tarfile.data_filter, which refuses the same and more);
- links: symlinks and hard links are refused (even ones pointing inside), as are device files,
  FIFOs and anything that is not a regular file or directory -> unsafe_archive;
- bombs: total uncompressed size capped (EXTRACT_MAX_BYTES), uncompressed/compressed ratio capped
  (EXTRACT_MAX_RATIO, per zip entry and for the whole archive, once past EXTRACT_RATIO_FLOOR bytes),
  member count capped (EXTRACT_MAX_MEMBERS) -> 400 archive_too_large; zip sizes are checked from the
  central directory before anything is written and the bytes really produced are counted too;
- quota: the destination owner's remaining bytes/files bound the extraction as it runs, and the
  placement is checked again under the quota lock -> 403 quota_exceeded.
Members are written to a staging folder under settings.uploads_dir (outside every root) and moved
into the destination (os.replace, same filesystem) with their index rows in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat as statmod
import tarfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modelyard.core.errors import BadRequest, Conflict, NotFound, QuotaExceeded
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.orm.files import MAX_PATH_BYTES
from modelyard.server.services import events
from modelyard.server.services.files import index as fs_index
from modelyard.server.services.files import layout as fs_layout
from modelyard.server.services.files import service as fs

EXTRACT_MAX_BYTES = 64 * 1024**3
EXTRACT_MAX_RATIO = 200
EXTRACT_RATIO_FLOOR = 16 * 1024**2
EXTRACT_MAX_MEMBERS = 200_000
PIECE = 1 << 20


class UnsafeArchive(BadRequest):
    code = "unsafe_archive"


class ArchiveTooLarge(BadRequest):
    code = "archive_too_large"


def _limit(settings, name: str, default):
    return getattr(settings, name, None) or default


def clean_member(name: str) -> str:
    """A member name as a safe relative path, or UnsafeArchive naming it."""
    def refuse(why: str):
        raise UnsafeArchive(f"archive member {name!r} refused: {why}", details={"member": name, "reason": why})

    if "\x00" in name:
        refuse("NUL byte in name")
    if "\\" in name:
        refuse("backslash in name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        refuse("absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        refuse("'..' in path (would escape the destination)")
    if any(p.startswith(fs.SCRATCH_PREFIX) for p in parts):
        refuse("reserved name")
    if any(len(p.encode()) > 255 for p in parts):
        refuse("name component longer than 255 bytes")
    return "/".join(parts)


@dataclass
class _Budget:
    archive_size: int
    max_bytes: int
    max_files: int | None
    quota_bytes: int | None
    max_ratio: float
    ratio_floor: int
    max_members: int
    bytes: int = 0
    files: int = 0
    members: int = 0

    def member(self, name: str) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveTooLarge(f"archive has more than {self.max_members} members", details={"member": name})

    def add_file(self, name: str) -> None:
        self.files += 1
        if self.max_files is not None and self.files > self.max_files:
            raise QuotaExceeded(f"file count quota exceeded extracting {name!r}: {max(self.max_files, 0)} files left",
                                details={"member": name, "files_left": max(self.max_files, 0)})

    def add_bytes(self, name: str, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise ArchiveTooLarge(f"archive expands past {self.max_bytes} bytes (at member {name!r})",
                                  details={"member": name, "limit": self.max_bytes})
        if self.bytes > self.ratio_floor and self.bytes > self.max_ratio * max(self.archive_size, 1):
            raise ArchiveTooLarge(
                f"archive expands more than {self.max_ratio:g}x its size (at member {name!r}): refused as a bomb",
                details={"member": name, "ratio_limit": self.max_ratio})
        if self.quota_bytes is not None and self.bytes > self.quota_bytes:
            raise QuotaExceeded(f"storage quota exceeded extracting {name!r}: {max(self.quota_bytes, 0)} bytes left",
                                details={"member": name, "bytes_left": max(self.quota_bytes, 0)})


def _copy(src, dst: Path, name: str, budget: _Budget, declared: int | None = None) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with open(dst, "wb") as out:
        while True:
            data = src.read(PIECE)
            if not data:
                break
            n += len(data)
            if declared is not None and n > declared:
                raise UnsafeArchive(f"archive member {name!r} is larger than its header says",
                                    details={"member": name, "reason": "size mismatch"})
            budget.add_bytes(name, len(data))
            out.write(data)
            h.update(data)
        out.flush()
        os.fsync(out.fileno())
    return n, h.hexdigest()


def _target(staging: Path, rel: str, name: str) -> Path:
    t = staging / rel
    for anc in list(t.parents):
        if anc == staging:
            break
        if anc.exists() and not anc.is_dir():
            raise UnsafeArchive(f"archive member {name!r} is under a member that is a file",
                                details={"member": name, "reason": "file/directory clash"})
    return t


@dataclass
class _Member:
    """One archive entry, already past its format's own checks (link and device types, tar's data
    filter, zip's central directory): what the shared writing loop needs."""

    name: str
    is_dir: bool
    declared_size: int
    open: Callable[[], IO[bytes] | None]


def _write_members(members: Iterable[_Member], staging: Path, budget: _Budget) -> dict[str, str]:
    """Write every member under staging (clashes refused, quota and bomb limits counted as the bytes
    are produced); rel path -> SHA-256 of each file written."""
    sums: dict[str, str] = {}
    for m in members:
        rel = clean_member(m.name)
        if not rel:
            continue
        t = _target(staging, rel, m.name)
        if m.is_dir:
            if t.exists() and not t.is_dir():
                raise UnsafeArchive(f"archive member {m.name!r} clashes with a file",
                                    details={"member": m.name, "reason": "file/directory clash"})
            t.mkdir(parents=True, exist_ok=True)
            continue
        if t.is_dir():
            raise UnsafeArchive(f"archive member {m.name!r} clashes with a directory",
                                details={"member": m.name, "reason": "file/directory clash"})
        budget.add_file(m.name)
        t.parent.mkdir(parents=True, exist_ok=True)
        src = m.open()
        if src is None:
            raise UnsafeArchive(f"archive member {m.name!r} cannot be read", details={"member": m.name})
        with src:
            _, sums[rel] = _copy(src, t, m.name, budget, declared=m.declared_size)
    return sums


def _tar_members(tar: tarfile.TarFile, staging: Path, budget: _Budget) -> Iterator[_Member]:
    for m in tar:
        budget.member(m.name)
        clean_member(m.name)
        if m.issym() or m.islnk():
            kind = "symlink" if m.issym() else "hard link"
            raise UnsafeArchive(f"archive member {m.name!r} is a {kind} (to {m.linkname!r}); links are refused",
                                details={"member": m.name, "reason": kind})
        if m.ischr() or m.isblk() or m.isfifo():
            kind = "character device" if m.ischr() else "block device" if m.isblk() else "FIFO"
            raise UnsafeArchive(f"archive member {m.name!r} is a {kind}; special files are refused",
                                details={"member": m.name, "reason": kind})
        if not (m.isreg() or m.isdir()):
            raise UnsafeArchive(f"archive member {m.name!r} has an unsupported type",
                                details={"member": m.name, "reason": "type"})
        try:
            tarfile.data_filter(m, str(staging))
        except tarfile.FilterError as exc:
            raise UnsafeArchive(f"archive member {m.name!r} refused: {exc}",
                                details={"member": m.name, "reason": type(exc).__name__}) from exc
        yield _Member(m.name, m.isdir(), m.size, lambda m=m: tar.extractfile(m))


def _extract_tar(path: Path, staging: Path, budget: _Budget) -> dict[str, str]:
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise BadRequest(f"not a readable tar archive: {exc}", code="invalid_archive") from exc
    with tar:
        try:
            return _write_members(_tar_members(tar, staging, budget), staging, budget)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BadRequest(f"corrupt tar archive: {exc}", code="invalid_archive") from exc


def _check_zip_directory(infos: list[zipfile.ZipInfo], budget: _Budget) -> None:
    """Everything the central directory says is checked before a byte is written."""
    declared = 0
    for info in infos:
        budget.member(info.filename)
        clean_member(info.filename)
        mode = info.external_attr >> 16
        kind = statmod.S_IFMT(mode)
        if kind == statmod.S_IFLNK:
            raise UnsafeArchive(f"archive member {info.filename!r} is a symlink; links are refused",
                                details={"member": info.filename, "reason": "symlink"})
        if kind and kind not in (statmod.S_IFREG, statmod.S_IFDIR):
            raise UnsafeArchive(f"archive member {info.filename!r} is a special file; refused",
                                details={"member": info.filename, "reason": "special file"})
        if info.flag_bits & 0x1:
            raise UnsafeArchive(f"archive member {info.filename!r} is encrypted", details={"member": info.filename})
        if (info.file_size > budget.ratio_floor
                and info.file_size > budget.max_ratio * max(info.compress_size, 1)):
            raise ArchiveTooLarge(
                f"archive member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                f"(limit {budget.max_ratio:g}x): refused as a bomb",
                details={"member": info.filename, "ratio_limit": budget.max_ratio})
        declared += info.file_size
    if declared > budget.max_bytes:
        raise ArchiveTooLarge(f"archive declares {declared} bytes uncompressed, limit {budget.max_bytes}",
                              details={"declared": declared, "limit": budget.max_bytes})
    if declared > budget.ratio_floor and declared > budget.max_ratio * max(budget.archive_size, 1):
        raise ArchiveTooLarge(f"archive declares {declared} bytes uncompressed, more than {budget.max_ratio:g}x "
                              f"its size: refused as a bomb", details={"declared": declared})
    if budget.quota_bytes is not None and declared > budget.quota_bytes:
        raise QuotaExceeded(f"storage quota exceeded: archive holds {declared} bytes, "
                            f"{max(budget.quota_bytes, 0)} left",
                            details={"declared": declared, "bytes_left": max(budget.quota_bytes, 0)})


def _extract_zip(path: Path, staging: Path, budget: _Budget) -> dict[str, str]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadRequest(f"not a readable zip archive: {exc}", code="invalid_archive") from exc
    with zf:
        infos = zf.infolist()
        _check_zip_directory(infos, budget)
        members = (_Member(i.filename, i.is_dir(), i.file_size, lambda i=i: zf.open(i)) for i in infos)
        try:
            return _write_members(members, staging, budget)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError) as exc:
            raise BadRequest(f"corrupt zip archive: {exc}", code="invalid_archive") from exc


def detect(path: Path) -> str:
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, tarfile.TarError):
        pass
    raise BadRequest(f"{path.name!r} is not a tar, tar.gz or zip archive", code="not_an_archive")


def default_dest(rel: str) -> str:
    name = fs.name_of(rel)
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = name + ".d"
    return fs_layout.join(fs.parent_of(rel), name)


def extract(ctx, principal: Principal, *, path: str, dest: str | None = None, public: bool = False,
            dest_public: bool | None = None, user_id: str | None = None, overwrite: bool = False) -> dict:
    """Extract the archive at path into dest (default: a folder named after the archive next to it)."""
    settings = ctx.settings
    dest_public = public if dest_public is None else dest_public
    with fs.transaction(ctx.sessions) as s:  # short; may index a root on first use
        src_scope = fs.scope_for(s, settings, principal, public=public, user_id=None if public else user_id)
        src_abs, src_rel = fs.resolve(src_scope, path)
        dst_scope = fs.scope_for(s, settings, principal, public=dest_public, user_id=user_id)
        dest_abs, dest_rel = fs.resolve(dst_scope, dest if dest is not None else default_dest(src_rel))
        if not src_rel or not src_abs.is_file():
            if src_abs.is_dir():
                raise BadRequest(f"{src_rel or '/'!r} is a directory", code="is_a_directory")
            raise NotFound(f"{src_rel!r} not found")
        if dest_abs.exists() and not dest_abs.is_dir():
            raise Conflict(f"destination {dest_rel!r} is a file", code="not_a_directory")
        fs.check_can_create(s, dst_scope, dest_rel if dest_abs.is_dir() else fs.parent_of(dest_rel))
        room = fs_index.headroom(s, settings, dst_scope.owner_id)
    kind = detect(src_abs)
    budget = _Budget(archive_size=src_abs.stat().st_size,
                     max_bytes=_limit(settings, "extract_max_bytes", EXTRACT_MAX_BYTES),
                     max_files=room.files_left, quota_bytes=room.bytes_left,
                     max_ratio=_limit(settings, "extract_max_ratio", EXTRACT_MAX_RATIO),
                     ratio_floor=_limit(settings, "extract_ratio_floor", EXTRACT_RATIO_FLOOR),
                     max_members=_limit(settings, "extract_max_members", EXTRACT_MAX_MEMBERS))
    staging = settings.uploads_dir / f"{fs.SCRATCH_PREFIX}extract-{new_id()}"
    staging.mkdir(parents=True)
    try:
        sums = (_extract_zip if kind == "zip" else _extract_tar)(src_abs, staging, budget)
        files: list[tuple[str, Path, int]] = []
        dirs: list[str] = []
        for cur, dnames, fnames in os.walk(staging):
            rel_cur = Path(cur).relative_to(staging).as_posix()
            rel_cur = "" if rel_cur == "." else rel_cur
            for d in dnames:
                dirs.append(fs_layout.join(rel_cur, d))
            for f in fnames:
                p = Path(cur) / f
                files.append((fs_layout.join(rel_cur, f), p, p.stat().st_size))
        for rel, *_ in files:
            if len(fs_layout.join(dest_rel, rel).encode()) > MAX_PATH_BYTES:
                raise UnsafeArchive(f"archive member {rel!r} makes a path longer than {MAX_PATH_BYTES} bytes",
                                    details={"member": rel, "reason": "path too long"})
        with fs.transaction(ctx.sessions) as s:
            dst_scope = fs.scope_for(s, settings, principal, public=dest_public, user_id=user_id)
            fs.check_can_create(s, dst_scope, dest_rel if dest_abs.is_dir() else fs.parent_of(dest_rel))
            created = fs.make_dirs(s, dst_scope, dest_rel)
            s.info.setdefault("on_rollback", []).append(lambda: fs_index.undo_dirs(dst_scope, created))
            for d in sorted(dirs):
                target = fs_layout.join(dest_rel, d)
                if (dst_scope.root / target).exists() and not (dst_scope.root / target).is_dir():
                    raise Conflict(f"{target!r} exists and is a file", code="exists")
                made = fs.make_dirs(s, dst_scope, target)
                s.info["on_rollback"].append(lambda m=made: fs_index.undo_dirs(dst_scope, m))
            items = [fs.plan_placement(dst_scope, fs_layout.join(dest_rel, rel), p, size, sums.get(rel))
                     for rel, p, size in files]
            rows = fs.place_files(s, settings, dst_scope, items, overwrite=overwrite, event_per_file=False)
            row = fs.get_row(s, dst_scope.key, dest_rel)
            events.record(s, actor_id=principal.id, kind="file.extracted", object_type="file",
                          object_id=str(row.id) if row else dst_scope.key,
                          message=f"extracted {src_rel} into {dest_rel or '/'} ({len(rows)} files, {budget.bytes} bytes)",
                          data={"root": dst_scope.key, "path": dest_rel, "archive": src_rel, "archive_root": src_scope.key,
                                "format": kind, "files": len(rows), "bytes": budget.bytes})
            s.flush()
            return {"path": src_rel, "dest": dest_rel, "public": dest_public, "format": kind, "files": len(rows),
                    "directories": len(dirs), "bytes": budget.bytes}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
