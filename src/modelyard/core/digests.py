"""SHA-256 while reading or copying: the one copy-while-hashing loop (datasets, model import)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def copy_hashing(src: str | os.PathLike, dst: str | os.PathLike, *, exclusive: bool = False,
                 fsync: bool = False) -> tuple[int, str]:
    """Copy src to dst in one pass, hashing what was copied: (size, sha256 hex). exclusive refuses
    an existing dst; fsync makes the copy durable before returning."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fi, open(Path(dst), "xb" if exclusive else "wb") as fo:
        while chunk := fi.read(CHUNK):
            h.update(chunk)
            fo.write(chunk)
            size += len(chunk)
        if fsync:
            fo.flush()
            os.fsync(fo.fileno())
    return size, h.hexdigest()
