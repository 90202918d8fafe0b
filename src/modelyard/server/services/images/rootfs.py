"""An image version's root filesystem, unpacked once from its stored layers and cached.

`<data>/rootfs/<manifest hex>/` holds the merged layers (the cache is per manifest digest: two
tags of the same image share it). Layers are applied in order, as the OCI image spec says:
- `.wh.<name>` deletes <name> from the layers below; `.wh..wh..opq` empties its folder of what
  the layers below put there;
- nothing lands outside the root: absolute and `..` member names are refused, a member is never
  written through a symlink (every parent is checked with lstat, so a layer that made `/x` a link
  to `/etc` cannot make a later `/x/passwd` land on the host), hard links must point inside;
- device nodes and FIFOs are skipped (an unprivileged sandbox cannot use them), set-uid bits and
  ownership are dropped (inside the sandbox everything belongs to the one mapped user).
Unpacking goes to a temp folder renamed into place, so a half-unpacked rootfs is never used.
`collect` removes the caches of manifests no version uses any more (called with the blob GC)."""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import threading
import uuid
from pathlib import Path, PurePosixPath

from modelyard.core.errors import BadRequest
from modelyard.server.settings import Settings

COMPLETE = ".modelyard-rootfs-complete"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class RootfsError(BadRequest):
    """A layer cannot be unpacked safely (the message says which member and why)."""

    def __init__(self, message: str):
        super().__init__(message, code="invalid_image_layer")


def rootfs_root(settings: Settings) -> Path:
    return settings.data_dir / "rootfs"


def rootfs_dir(settings: Settings, manifest_digest: str) -> Path:
    return rootfs_root(settings) / manifest_digest.split(":", 1)[-1]


def _lock(key: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def ensure(settings: Settings, manifest_digest: str, layer_paths: list[Path]) -> Path:
    """The unpacked rootfs of a manifest (its layer blobs in order), unpacking it when not cached."""
    final = rootfs_dir(settings, manifest_digest)
    if (final / COMPLETE).exists():
        return final
    with _lock(manifest_digest):
        if (final / COMPLETE).exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = final.parent / f".tmp-{final.name[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(mode=0o755)
        try:
            for i, layer in enumerate(layer_paths):
                apply_layer(tmp, layer, what=f"layer {i + 1} of {len(layer_paths)}")
            (tmp / COMPLETE).write_text(manifest_digest + "\n")
            if final.exists():  # a stale incomplete one from a crash
                shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _member_path(name: str, what: str) -> PurePosixPath | None:
    """The member's path relative to the root; None for the root itself."""
    if "\x00" in name:
        raise RootfsError(f"{what}: a member name holds a NUL byte")
    if name.startswith("/"):
        # docker and buildkit never write absolute names; a crafted layer might
        raise RootfsError(f"{what}: member {name!r} has an absolute path")
    parts = [x for x in name.split("/") if x not in ("", ".")]
    if ".." in parts:
        raise RootfsError(f"{what}: member {name!r} climbs out of the root (..)")
    return PurePosixPath(*parts) if parts else None


def _parent_inside(root: Path, rel: PurePosixPath, what: str, *, create: bool) -> Path:
    """root/<rel's parent>, each component a real folder (created when missing), never a link."""
    cur = root
    for part in rel.parts[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            if not create:
                return cur
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise RootfsError(f"{what}: {rel} would be written through the link /{cur.relative_to(root)}")
        if not stat.S_ISDIR(st.st_mode):
            raise RootfsError(f"{what}: /{cur.relative_to(root)} is a file but {rel} needs it as a folder")
    return cur


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def apply_layer(root: Path, layer: Path, *, what: str) -> None:
    with open(layer, "rb") as fh:
        magic = fh.read(4)
    if magic == b"\x28\xb5\x2f\xfd":
        raise RootfsError(f"{what}: zstd-compressed layers cannot be unpacked here (Python has no zstd); "
                          "re-export the image with gzip or uncompressed layers")
    try:
        tf = tarfile.open(layer, mode="r:*")
    except tarfile.TarError as exc:
        raise RootfsError(f"{what}: not a tar archive ({exc})") from None
    with tf:
        members = tf.getmembers()
        # whiteouts first: they delete what the layers *below* hold, never this layer's own files
        for m in members:
            rel = _member_path(m.name, what)
            if rel is None or not rel.name.startswith(WHITEOUT):
                continue
            try:
                parent = _parent_inside(root, rel, what, create=False)
            except RootfsError:  # under a link or a file: nothing of the layers below to delete
                continue
            if not parent.is_dir() or parent.is_symlink():
                continue
            if rel.name == OPAQUE:
                for child in list(parent.iterdir()):
                    _remove(child)
            else:
                _remove(parent / rel.name[len(WHITEOUT):])
        for m in members:
            rel = _member_path(m.name, what)
            if rel is None or rel.name.startswith(WHITEOUT):
                continue
            _extract(tf, m, root, rel, what)


def _extract(tf: tarfile.TarFile, m: tarfile.TarInfo, root: Path, rel: PurePosixPath, what: str) -> None:
    parent = _parent_inside(root, rel, what, create=True)
    dest = parent / rel.name
    if m.isdir():
        try:
            st = os.lstat(dest)
            if not stat.S_ISDIR(st.st_mode):
                _remove(dest)
                os.mkdir(dest, 0o755)
        except FileNotFoundError:
            os.mkdir(dest, 0o755)
        os.chmod(dest, (m.mode & 0o777) | 0o700)
        return
    if not (m.isfile() or m.issym() or m.islnk()):
        return  # device nodes, FIFOs: unusable without privileges
    if os.path.lexists(dest):
        _remove(dest)  # a later layer replaces the file (or a folder) of an earlier one
    if m.issym():
        os.symlink(m.linkname, dest)  # resolved inside the sandbox, where / is this root
        return
    if m.islnk():
        target_rel = _member_path(m.linkname, what)
        if target_rel is None:
            raise RootfsError(f"{what}: hard link {rel} points at the root")
        target_parent = _parent_inside(root, target_rel, what, create=False)
        target = target_parent / target_rel.name
        if not os.path.isfile(target) or os.path.islink(target):
            raise RootfsError(f"{what}: hard link {rel} -> {m.linkname} has no regular file to link to")
        os.link(target, dest)
        return
    src = tf.extractfile(m)
    if src is None:
        raise RootfsError(f"{what}: cannot read {rel}")
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with src, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.chmod(dest, m.mode & 0o777)  # no set-uid / set-gid / sticky


def collect(settings: Settings, live_manifests: set[str]) -> int:
    """Remove the cached rootfs of every manifest not in live_manifests (and stale temp folders);
    returns how many were removed."""
    base = rootfs_root(settings)
    if not base.is_dir():
        return 0
    live = {d.split(":", 1)[-1] for d in live_manifests}
    removed = 0
    for d in base.iterdir():
        if d.name in live:
            continue
        if d.name.startswith(".tmp-") and _lock_held_for(d.name):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


def _lock_held_for(tmp_name: str) -> bool:
    """Is an unpack running that may own this temp folder (same digest prefix)?"""
    prefix = tmp_name[len(".tmp-"):].split("-", 1)[0]
    with _LOCKS_GUARD:
        return any(k.split(":", 1)[-1].startswith(prefix) and lk.locked() for k, lk in _LOCKS.items())


def resolve_user(root: Path, user: str) -> tuple[int, int]:
    """The image config's `User` ("name", "uid", "uid:gid", "name:group") as numbers, looked up
    in the rootfs's /etc/passwd and /etc/group; empty: root (0:0), as docker does."""
    user = (user or "").strip()
    if not user:
        return 0, 0
    name, _, group = user.partition(":")

    def table(fname: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        p = root / "etc" / fname
        try:
            if p.is_symlink():
                return out
            for line in p.read_text(errors="replace").splitlines():
                f = line.split(":")
                if len(f) >= 4:
                    out[f[0]] = f
        except OSError:
            pass
        return out

    passwd = table("passwd")
    if name.isdigit():
        uid = int(name)
        gid = next((int(f[3]) for f in passwd.values() if f[2] == name and f[3].isdigit()), uid)
    elif name in passwd and passwd[name][2].isdigit():
        uid = int(passwd[name][2])
        gid = int(passwd[name][3]) if passwd[name][3].isdigit() else uid
    else:
        raise BadRequest(f"the image's User {user!r} is not in its /etc/passwd", code="invalid_image_user")
    if group:
        groups = table("group")
        if group.isdigit():
            gid = int(group)
        elif group in groups and groups[group][2].isdigit():
            gid = int(groups[group][2])
        else:
            raise BadRequest(f"the image's group {group!r} is not in its /etc/group", code="invalid_image_user")
    if not (0 <= uid < 2**31 and 0 <= gid < 2**31):
        raise BadRequest(f"the image's User {user!r} is out of range", code="invalid_image_user")
    return uid, gid
