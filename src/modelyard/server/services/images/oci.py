"""Container image archives, parsed for real, and the content-addressed blob store.

Two archive kinds are read (as a tar, optionally gzip/xz/bzip2-compressed, or as an extracted
folder):

- docker-save: `manifest.json` ([{"Config", "RepoTags", "Layers"}]), the config JSON and one tar
  per layer (`<id>/layer.tar` in the classic format, `blobs/sha256/<hex>` since Docker 25).
  Layer digests are checked against the config's `rootfs.diff_ids`; the registry manifest
  (schema 2) is synthesised deterministically, so re-importing the same archive gives the same
  manifest digest.
- OCI image layout: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`. index -> manifest; an image
  index (or a docker manifest list) picks linux/amd64, else the first image manifest.

Every blob is streamed (1 MiB at a time, never whole in memory) while its SHA-256 is computed;
a blob whose content does not hash to its name/descriptor is refused. gzip layers are also
inflated on the fly to check their diff_id. Blobs land in `<blobs_dir>/sha256/<hex>` (the layout
of an OCI layout's `blobs/` folder) through a temp file + os.replace; one already stored is only
verified, never copied again (deduplication by digest).

Whatever is wrong with an archive raises ArchiveError (400) saying what."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from modelyard.core.errors import BadRequest
from modelyard.core.ids import new_id

CHUNK = 1024 * 1024
MAX_JSON_BYTES = 64 * 1024 * 1024  # manifests/configs/indexes are small; anything bigger is not one

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX_TYPES = {MT_OCI_INDEX, MT_DOCKER_LIST}
MANIFEST_TYPES = {MT_OCI_MANIFEST, MT_DOCKER_MANIFEST}

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HEX_NAME = re.compile(r"(?:^|/)(?:blobs/sha256/)?([0-9a-f]{64})(?:\.json)?$")
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class ArchiveError(BadRequest):
    code = "invalid_image_archive"


# --- the blob store ----------------------------------------------------------------------------

@dataclass
class Ingested:
    digest: str
    size: int
    diff_id: str | None  # sha256 of the uncompressed content (layers), when it could be computed
    uncompressed_size: int | None
    stored_new: bool  # False: the blob was already there (only verified)
    compression: str | None  # "gzip" | "zstd" | None (plain)


class BlobStore:
    """`<root>/sha256/<hex>`; temp files in `<root>/.tmp`, deletions staged in `<root>/.trash`."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not _DIGEST.match(digest or ""):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / "sha256" / digest.split(":", 1)[1]

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def tmp_dir(self) -> Path:
        d = self.root / ".tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def ingest(self, src: IO[bytes], *, what: str, expected: str | None = None,
               expected_size: int | None = None, inflate: str | None = None,
               expected_if_plain: str | None = None) -> Ingested:
        """Stream src into the store, verifying its digest.

        expected: the digest the content must have (its name in the archive or its descriptor).
        expected_if_plain: the digest to expect when the content turns out not to be compressed
          (docker-save layers: the diff_id), used to skip the copy of a blob already stored.
        inflate: "gzip" to inflate and hash the uncompressed stream (diff_id), "auto" to do so
          when the content starts with the gzip magic."""
        first = src.read(CHUNK)
        compression = "gzip" if first[:2] == GZIP_MAGIC else "zstd" if first[:4] == ZSTD_MAGIC else None
        if inflate == "auto":
            inflate = "gzip" if compression == "gzip" else None
        if expected is None and expected_if_plain and compression is None:
            expected = expected_if_plain
        write = not (expected and self.exists(expected))
        h = hashlib.sha256()
        uh = hashlib.sha256() if inflate == "gzip" else None
        usize = 0
        size = 0
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if uh is not None else None
        tmp_path: Path | None = None
        out: IO[bytes] | None = None
        try:
            if write:
                tmp_path = self.tmp_dir() / new_id()
                out = open(tmp_path, "wb")
            chunk = first
            while chunk:
                h.update(chunk)
                size += len(chunk)
                if out is not None:
                    out.write(chunk)
                if inflater is not None:
                    inflater, n = _inflate(inflater, chunk, uh, what)
                    usize += n
                chunk = src.read(CHUNK)
            if inflater is not None:
                if not inflater.eof:
                    raise ArchiveError(f"{what}: truncated gzip data")
            if out is not None:
                out.flush()
                os.fsync(out.fileno())
                out.close()
                out = None
            digest = "sha256:" + h.hexdigest()
            if expected and digest != expected:
                raise ArchiveError(f"digest mismatch for {what}: content is {digest}, expected {expected}",
                                   code="digest_mismatch")
            if expected_size is not None and size != expected_size:
                raise ArchiveError(f"size mismatch for {what}: {size} bytes, descriptor says {expected_size}",
                                   code="digest_mismatch")
            stored_new = False
            if tmp_path is not None:
                target = self.path(digest)
                if target.is_file():
                    tmp_path.unlink()
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.chmod(tmp_path, 0o444)
                    os.replace(tmp_path, target)
                    stored_new = True
                tmp_path = None
            if uh is not None:
                diff_id, usize_out = "sha256:" + uh.hexdigest(), usize
            elif compression is None:
                diff_id, usize_out = digest, size
            else:
                diff_id, usize_out = None, None
            return Ingested(digest, size, diff_id, usize_out, stored_new, compression)
        finally:
            if out is not None:
                out.close()
            if tmp_path is not None:
                tmp_path.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, *, what: str, expected: str | None = None) -> Ingested:
        return self.ingest(io.BytesIO(data), what=what, expected=expected)

    def trash(self, digest: str) -> Path | None:
        """Move a blob aside (undoable with restore) before the deletion commits."""
        p = self.path(digest)
        if not p.exists():
            return None
        d = self.root / ".trash"
        d.mkdir(parents=True, exist_ok=True)
        t = d / f"{digest.split(':', 1)[1]}.{new_id()[:8]}"
        os.replace(p, t)
        return t

    def restore(self, digest: str, trashed: Path) -> None:
        if trashed.exists() and not self.exists(digest):
            os.replace(trashed, self.path(digest))

    def sweep_tmp(self, older_than_s: float = 3600) -> int:
        """Remove temp/trash files left by crashed imports or deletions."""
        n = 0
        now = time.time()
        for d in (self.root / ".tmp", self.root / ".trash"):
            if d.is_dir():
                for p in d.iterdir():
                    with contextlib.suppress(OSError):
                        if now - p.stat().st_mtime > older_than_s:
                            p.unlink()
                            n += 1
        return n

    def iter_digests(self) -> Iterator[str]:
        d = self.root / "sha256"
        if d.is_dir():
            for p in d.iterdir():
                if re.fullmatch(r"[0-9a-f]{64}", p.name):
                    yield "sha256:" + p.name


def _inflate(d, chunk: bytes, uh, what: str):
    """Feed chunk to a gzip inflater (bounded output per step; multi-member gzip); returns
    (inflater, bytes produced)."""
    n = 0
    data = chunk
    while data:
        try:
            out = d.decompress(data, 8 * CHUNK)
        except zlib.error as exc:
            raise ArchiveError(f"{what}: not valid gzip data ({exc})") from None
        uh.update(out)
        n += len(out)
        if d.unconsumed_tail:
            data = d.unconsumed_tail
            continue
        if d.eof and d.unused_data:
            rest = d.unused_data
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = rest
            continue
        data = b""
    return d, n


# --- archive sources ---------------------------------------------------------------------------

class Source:
    """Read access to the files of an archive (tar or folder), by normalised relative name."""

    label: str

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def open(self, name: str) -> IO[bytes]:
        raise NotImplementedError

    def size(self, name: str) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _norm(name: str) -> str:
    parts = [p for p in PurePosixPath(name).parts if p not in ("", ".", "/")]
    return "/".join(parts)


class TarSource(Source):
    def __init__(self, path: Path, label: str):
        self.label = label
        try:
            self.tf = tarfile.open(path, "r:")
            members = self.tf.getmembers()
        except (tarfile.TarError, EOFError) as exc:
            raise ArchiveError(f"{label} is not a tar archive ({exc})", code="not_a_tar") from None
        if not members:
            self.tf.close()
            raise ArchiveError(f"{label} is not a tar archive (no entries)", code="not_a_tar")
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members:
            if m.isfile() or m.issym() or m.islnk():
                self.members[_norm(m.name)] = m

    def has(self, name: str) -> bool:
        return name in self.members

    def _member(self, name: str) -> tarfile.TarInfo:
        m = self.members.get(name)
        if m is None:
            raise ArchiveError(f"missing blob {name}", code="missing_blob")
        return m

    def open(self, name: str) -> IO[bytes]:
        try:
            f = self.tf.extractfile(self._member(name))
        except (KeyError, tarfile.TarError) as exc:
            raise ArchiveError(f"cannot read {name} ({exc})", code="missing_blob") from None
        except RecursionError:
            raise ArchiveError(f"cannot read {name}: its links form a loop", code="missing_blob") from None
        if f is None:
            raise ArchiveError(f"{name} is not a regular file", code="missing_blob")
        return f

    def size(self, name: str) -> int:
        m = self._member(name)
        if m.isfile():
            return m.size
        with self.open(name) as f:  # a link: measure its target
            f.seek(0, io.SEEK_END)
            return f.tell()

    def close(self) -> None:
        self.tf.close()


class DirSource(Source):
    """An extracted archive (an OCI layout folder). Names never leave the folder."""

    def __init__(self, root: Path, label: str):
        self.root = root.resolve()
        self.label = label

    def _path(self, name: str) -> Path:
        p = (self.root / name).resolve()
        if self.root not in p.parents or not p.is_file():
            raise ArchiveError(f"missing blob {name}", code="missing_blob")
        return p

    def has(self, name: str) -> bool:
        try:
            self._path(name)
            return True
        except ArchiveError:
            return False

    def open(self, name: str) -> IO[bytes]:
        return open(self._path(name), "rb")

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size


@contextlib.contextmanager
def open_source(path: Path, *, label: str, tmp_dir: Path) -> Iterator[Source]:
    """A tar (plain, or gzip/xz/bzip2 compressed: inflated once to a temp tar) or a folder."""
    if path.is_dir():
        yield DirSource(path, label)
        return
    with open(path, "rb") as f:
        head = f.read(6)
    opener = None
    if head[:2] == GZIP_MAGIC:
        opener = gzip.open
    elif head[:6] == b"\xfd7zXZ\x00":
        opener = lzma.open
    elif head[:3] == b"BZh":
        opener = bz2.open
    elif head[:4] == ZSTD_MAGIC:
        raise ArchiveError(f"{label} is zstd-compressed; decompress it (zstd -d) and import the .tar",
                           code="not_a_tar")
    tmp: Path | None = None
    try:
        if opener is not None:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            tmp = tmp_dir / (new_id() + ".tar")
            # inflated once to a temp tar (tar members are then read by offset), never past the
            # free disk space (a compression bomb fails here, not the disk)
            room = shutil.disk_usage(tmp_dir).free - (256 << 20)
            try:
                with opener(path, "rb") as src, open(tmp, "wb") as dst:
                    written = 0
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > room:
                            raise ArchiveError(f"{label} inflates to more than the free disk space",
                                               code="archive_too_large")
                        dst.write(chunk)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                raise ArchiveError(f"{label} is not a valid compressed archive ({exc})", code="not_a_tar") from None
        src = TarSource(tmp or path, label)
        try:
            yield src
        finally:
            src.close()
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


# --- parsing -----------------------------------------------------------------------------------

@dataclass
class Layer:
    digest: str
    size: int
    media_type: str
    diff_id: str | None = None
    uncompressed_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "mediaType": self.media_type,
                "diff_id": self.diff_id, "uncompressed_size": self.uncompressed_size}


@dataclass
class ImageInfo:
    archive_format: str  # docker | oci
    manifest_digest: str
    manifest_media_type: str
    manifest_size: int
    config_digest: str
    config_size: int
    config_media_type: str
    layers: list[Layer]
    os: str = ""
    architecture: str = ""
    variant: str = ""
    env: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    created: str = ""
    repo_tags: list[str] = field(default_factory=list)
    tag: str | None = None  # the tag the archive names (RepoTags / ref.name annotation)

    @property
    def size_bytes(self) -> int:
        return self.config_size + sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size_bytes(self) -> int:
        return self.config_size + sum((layer.uncompressed_size or layer.size) for layer in self.layers)

    def blobs(self) -> list[tuple[str, int, str, str]]:
        """(digest, size, media type, role) for every blob of the version, first occurrence only."""
        out, seen = [], set()
        for d, s, mt, role in [(self.manifest_digest, self.manifest_size, self.manifest_media_type, "manifest"),
                               (self.config_digest, self.config_size, self.config_media_type, "config")] + \
                [(la.digest, la.size, la.media_type, "layer") for la in self.layers]:
            if d not in seen:
                seen.add(d)
                out.append((d, s, mt, role))
        return out


def _read_json(src: Source, name: str, *, what: str | None = None) -> tuple[Any, bytes]:
    what = what or name
    if not src.has(name):
        raise ArchiveError(f"missing blob {what}", code="missing_blob")
    if src.size(name) > MAX_JSON_BYTES:
        raise ArchiveError(f"{what} is too large to be image metadata ({src.size(name)} bytes)")
    parts, total = [], 0
    with src.open(name) as f:
        while total <= MAX_JSON_BYTES and (chunk := f.read(CHUNK)):  # never one big read(limit) buffer
            parts.append(chunk)
            total += len(chunk)
    if total > MAX_JSON_BYTES:
        raise ArchiveError(f"{what} is too large to be image metadata")
    raw = b"".join(parts)
    try:
        return json.loads(raw), raw
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"invalid JSON in {what}: {exc}", code="invalid_json") from None


def _blob_name(digest: str) -> str:
    if not isinstance(digest, str) or ":" not in digest:
        raise ArchiveError(f"invalid digest {digest!r}")
    alg, hexd = digest.split(":", 1)
    if alg != "sha256":
        raise ArchiveError(f"unsupported digest algorithm {alg!r} in {digest} (only sha256)")
    if not re.fullmatch(r"[0-9a-f]{64}", hexd):
        raise ArchiveError(f"invalid digest {digest!r}")
    return f"blobs/sha256/{hexd}"


def _str_list(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [str(x) for x in v]
    return None


def _apply_config(info: ImageInfo, cfg: Any, what: str) -> list[str]:
    """Fill os/arch/env/... from an image config; returns its rootfs.diff_ids."""
    if not isinstance(cfg, dict):
        raise ArchiveError(f"{what}: an image config must be a JSON object")
    c = cfg.get("config") or cfg.get("container_config") or {}
    if not isinstance(c, dict):
        c = {}
    info.os = str(cfg.get("os") or "")
    info.architecture = str(cfg.get("architecture") or "")
    info.variant = str(cfg.get("variant") or "")
    info.env = [str(e) for e in (c.get("Env") or [])]
    info.entrypoint = _str_list(c.get("Entrypoint"))
    info.cmd = _str_list(c.get("Cmd"))
    info.working_dir = str(c.get("WorkingDir") or "")
    info.user = str(c.get("User") or "")
    info.labels = {str(k): str(v) for k, v in (c.get("Labels") or {}).items()}
    info.exposed_ports = sorted(str(p) for p in (c.get("ExposedPorts") or {}))
    info.created = str(cfg.get("created") or "")
    rootfs = cfg.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list):
        raise ArchiveError(f"{what}: image config has no rootfs.diff_ids")
    return [str(d) for d in diff_ids]


def _store_layer(store: BlobStore, src: Source, name: str, *, what: str, new_blobs: list[str],
                 expected: str | None, expected_size: int | None, media_type: str,
                 diff_id: str | None, index: int) -> Layer:
    with src.open(name) as f:
        got = store.ingest(f, what=what, expected=expected, expected_size=expected_size, inflate="auto",
                           expected_if_plain=diff_id if expected is None else None)
    if got.stored_new:
        new_blobs.append(got.digest)
    if media_type:
        says = "gzip" if "gzip" in media_type else "zstd" if "zstd" in media_type else None
        if says != got.compression:
            raise ArchiveError(f"{what}: media type {media_type} does not match its content "
                               f"({got.compression or 'uncompressed'} tar)")
    else:
        media_type = {"gzip": MT_DOCKER_LAYER_GZIP, None: MT_DOCKER_LAYER}.get(
            got.compression, "application/vnd.oci.image.layer.v1.tar+zstd")
    if diff_id is not None and got.diff_id is not None and got.diff_id != diff_id:
        raise ArchiveError(f"digest mismatch for {what}: its uncompressed content is {got.diff_id}, "
                           f"the config's rootfs.diff_ids[{index}] says {diff_id}", code="digest_mismatch")
    return Layer(got.digest, got.size, media_type, got.diff_id, got.uncompressed_size)


def parse_docker_save(src: Source, store: BlobStore, new_blobs: list[str], *,
                      want_tag: str | None = None) -> ImageInfo:
    manifest, _ = _read_json(src, "manifest.json")
    if not isinstance(manifest, list) or not manifest or not all(isinstance(e, dict) for e in manifest):
        raise ArchiveError("manifest.json must be a non-empty list of image entries")
    entry = manifest[0]
    if want_tag:
        for e in manifest:
            if any(str(t).rsplit(":", 1)[-1] == want_tag for t in e.get("RepoTags") or []):
                entry = e
                break
    config_name = entry.get("Config")
    layer_names = entry.get("Layers")
    if not isinstance(config_name, str) or not isinstance(layer_names, list):
        raise ArchiveError("manifest.json: an entry needs 'Config' (string) and 'Layers' (list)")
    config_name = _norm(config_name)
    repo_tags = [str(t) for t in entry.get("RepoTags") or []]
    cfg, raw = _read_json(src, config_name)
    config_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    m = _HEX_NAME.search(config_name)
    if m and m.group(1) != config_digest.split(":")[1]:
        raise ArchiveError(f"digest mismatch for {config_name}: content is {config_digest}", code="digest_mismatch")
    info = ImageInfo("docker", "", MT_DOCKER_MANIFEST, 0, config_digest, len(raw), MT_DOCKER_CONFIG, [],
                     repo_tags=repo_tags)
    diff_ids = _apply_config(info, cfg, config_name)
    if len(diff_ids) != len(layer_names):
        raise ArchiveError(f"{config_name} lists {len(diff_ids)} rootfs.diff_ids but manifest.json lists "
                           f"{len(layer_names)} layers")
    for i, lname in enumerate(layer_names):
        lname = _norm(str(lname))
        if not src.has(lname):
            raise ArchiveError(f"missing blob {lname} (layer {i + 1} of manifest.json)", code="missing_blob")
    got = store.put_bytes(raw, what=config_name, expected=config_digest)
    if got.stored_new:
        new_blobs.append(got.digest)
    for i, lname in enumerate(layer_names):
        lname = _norm(str(lname))
        m = re.search(r"(?:^|/)blobs/sha256/([0-9a-f]{64})$", lname)
        expected = "sha256:" + m.group(1) if m else None
        info.layers.append(_store_layer(store, src, lname, what=lname, new_blobs=new_blobs, expected=expected,
                                        expected_size=None, media_type="", diff_id=diff_ids[i], index=i))
    # the registry manifest `docker push` would send for these blobs, made deterministically
    mf = {"schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
          "config": {"mediaType": MT_DOCKER_CONFIG, "size": info.config_size, "digest": config_digest},
          "layers": [{"mediaType": la.media_type, "size": la.size, "digest": la.digest} for la in info.layers]}
    mraw = json.dumps(mf, indent=3).encode()
    got = store.put_bytes(mraw, what="manifest")
    if got.stored_new:
        new_blobs.append(got.digest)
    info.manifest_digest, info.manifest_size = got.digest, got.size
    if repo_tags:
        info.tag = _tag_of(repo_tags[0]) or "latest"
    return info


def _tag_of(ref: str | None) -> str | None:
    """'latest' -> 'latest'; 'docker.io/library/busybox:1.36' -> '1.36'; a bare name -> None."""
    if not ref:
        return None
    last = ref.rsplit("/", 1)[-1]
    if "@" in last:
        return None
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return None if "/" in ref else ref


def _platform_ok(desc: dict) -> bool:
    p = desc.get("platform") or {}
    ann = desc.get("annotations") or {}
    if ann.get("vnd.docker.reference.type") == "attestation-manifest":
        return False
    return not p or (p.get("os") in (None, "linux") and p.get("architecture") in (None, "amd64"))


def _pick(descs: list, what: str) -> dict:
    descs = [d for d in descs if isinstance(d, dict)]
    usable = [d for d in descs if (d.get("mediaType") in INDEX_TYPES | MANIFEST_TYPES or not d.get("mediaType"))
              and (d.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"]
    if not usable:
        raise ArchiveError(f"{what} lists no image manifest")
    for d in usable:
        if _platform_ok(d):
            return d
    return usable[0]


def _read_blob_json(src: Source, store: BlobStore, desc: dict, what: str) -> tuple[Any, bytes, str]:
    digest = desc.get("digest")
    name = _blob_name(digest)
    if not src.has(name):
        raise ArchiveError(f"missing blob {digest} ({what})", code="missing_blob")
    obj, raw = _read_json(src, name, what=f"{what} {digest}")
    actual = "sha256:" + hashlib.sha256(raw).hexdigest()
    if actual != digest:
        raise ArchiveError(f"digest mismatch for {digest} ({what}): content is {actual}", code="digest_mismatch")
    size = desc.get("size")
    if isinstance(size, int) and size != len(raw):
        raise ArchiveError(f"size mismatch for {digest} ({what}): {len(raw)} bytes, descriptor says {size}",
                           code="digest_mismatch")
    return obj, raw, digest


def parse_oci_layout(src: Source, store: BlobStore, new_blobs: list[str], *,
                     want_tag: str | None = None) -> ImageInfo:
    if src.has("oci-layout"):
        layout, _ = _read_json(src, "oci-layout")
        if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
            raise ArchiveError("oci-layout has no imageLayoutVersion")
    index, _ = _read_json(src, "index.json")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list) or not index["manifests"]:
        raise ArchiveError("index.json lists no manifests")
    descs = index["manifests"]
    desc = None
    if want_tag:
        desc = next((d for d in descs if isinstance(d, dict) and
                     (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") == want_tag), None)
    desc = desc or _pick(descs, "index.json")
    tag = (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")
    repo = (desc.get("annotations") or {}).get("io.containerd.image.name")
    what = "manifest"
    for _depth in range(4):
        obj, raw, digest = _read_blob_json(src, store, desc, what)
        mt = obj.get("mediaType") if isinstance(obj, dict) else None
        mt = mt or desc.get("mediaType") or ""
        if isinstance(obj, dict) and (mt in INDEX_TYPES or ("manifests" in obj and "layers" not in obj)):
            desc = _pick(obj.get("manifests") or [], f"image index {digest}")
            what = "manifest"
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("config"), dict) or \
                not isinstance(obj.get("layers"), list):
            raise ArchiveError(f"manifest {digest} has no config/layers")
        break
    else:
        raise ArchiveError("image indexes nested too deep")
    manifest, mraw, mdigest = obj, raw, digest
    mtype = manifest.get("mediaType") or desc.get("mediaType") or MT_OCI_MANIFEST
    cdesc = manifest["config"]
    cfg, craw, cdigest = _read_blob_json(src, store, cdesc, "config")
    info = ImageInfo("oci", mdigest, mtype, len(mraw), cdigest, len(craw),
                     cdesc.get("mediaType") or MT_OCI_CONFIG, [], tag=_tag_of(tag),
                     repo_tags=[repo] if repo else [])
    diff_ids = _apply_config(info, cfg, f"config {cdigest}")
    layers = manifest["layers"]
    if len(diff_ids) != len(layers):
        raise ArchiveError(f"config {cdigest} lists {len(diff_ids)} rootfs.diff_ids but manifest {mdigest} "
                           f"lists {len(layers)} layers")
    for i, ld in enumerate(layers):
        if not isinstance(ld, dict):
            raise ArchiveError(f"manifest {mdigest}: layer {i + 1} is not a descriptor")
        name = _blob_name(ld.get("digest"))
        if not src.has(name):
            raise ArchiveError(f"missing blob {ld.get('digest')} (layer {i + 1})", code="missing_blob")
    for digest, data in ((mdigest, mraw), (cdigest, craw)):
        got = store.put_bytes(data, what=digest, expected=digest)
        if got.stored_new:
            new_blobs.append(got.digest)
    for i, ld in enumerate(layers):
        digest = ld["digest"]
        info.layers.append(_store_layer(
            store, src, _blob_name(digest), what=f"{digest} (layer {i + 1})", new_blobs=new_blobs, expected=digest,
            expected_size=ld.get("size") if isinstance(ld.get("size"), int) else None,
            media_type=str(ld.get("mediaType") or ""), diff_id=diff_ids[i], index=i))
    return info


def import_archive(src: Source, store: BlobStore, new_blobs: list[str], *,
                   want_tag: str | None = None) -> ImageInfo:
    """Parse src (the OCI layout when both are present, as Docker >= 25 writes) and store its
    blobs. new_blobs collects the digests this call stored for the first time, so a caller can
    remove them again when the import fails."""
    try:
        if src.has("index.json"):
            return parse_oci_layout(src, store, new_blobs, want_tag=want_tag)
        if src.has("manifest.json"):
            return parse_docker_save(src, store, new_blobs, want_tag=want_tag)
        raise ArchiveError(f"{src.label} is not an image archive: no manifest.json (docker save) "
                           f"or index.json (OCI layout) in it", code="not_an_image")
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"cannot read {src.label}: {exc}") from None
