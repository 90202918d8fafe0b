"""Datasets: validated, immutable versions of training data.

A version is made from files in the owner's root: a folder holding `train/ validate/ test/`
sub-folders (the seed's `Data/`), or split-named files (`train.jsonl`, `validation.csv`, ...), or
just data files (all `train`), or a single file (`train`), or explicit per-split paths.
Formats and shapes are modelyard.core.formats' (the one reader the trainer and job resolution
use too): jsonl, json, csv, tsv, parquet, txt/md (one text per line); alpaca (instruction/output or
prompt/response), chat (messages, or sharegpt conversations), text.

On creation the files are first copied (with their SHA-256) into a private folder, then every row
of the copies is validated: the first malformed one is refused (400) naming the file and its
1-based line (jsonl, csv, txt, json syntax errors) or row (json arrays, parquet) and what is
wrong. Rows per split and a preview (first 5 rows of each split) are recorded; the folder becomes
settings.datasets_dir/<dataset_id>/<version>/<split>/<file>, read-only. Changing the sources
afterwards changes nothing: new data means a new version.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelyard.core import formats
from modelyard.core.digests import copy_hashing
from modelyard.core.errors import BadRequest, Conflict, InvalidPath, NotFound
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.db import advisory_lock, paginate, session_scope
from modelyard.server.orm.datasets import SPLITS, DatasetModel, DatasetVersionModel
from modelyard.server.services import events
from modelyard.server.services.common import references
from modelyard.server.services.common.access import get_owned, get_visible, visible
from modelyard.server.services.common.paths import resolve_user_path, user_root
from modelyard.server.services.common.refs import pick_by_name, resolve_ref
from modelyard.server.settings import Settings

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
FORMATS = formats.SUPPORTED
SPLIT_NAMES = {"train": "train", "training": "train",
               "validate": "validate", "validation": "validate", "valid": "validate", "val": "validate",
               "dev": "validate", "eval": "validate",
               "test": "test", "testing": "test"}
CHAT_ROLES = formats.CHAT_ROLES
SHAREGPT_FROM = formats.SHAREGPT_FROM
PREVIEW_ROWS = 5
PREVIEW_MAX_CHARS = 2000
CHUNK = 1024 * 1024


class DatasetError(formats.FormatError):
    """A dataset that cannot be made (rows are refused with core.formats.FormatError, the same 400)."""

    code = "invalid_dataset"


# --- reading rows: modelyard.core.formats, THE reader (the trainer and job resolution use it too) ---

def file_format(path: str | Path) -> str:
    return formats.file_format(path)


def iter_located(path: str | Path, label: str | None = None) -> Iterator[tuple[str, dict]]:
    """(location, row) for every row of a data file; location is "line N" or "row N" (1-based)."""
    return formats.iter_located(path, label)


def read_rows(path: str | Path) -> Iterator[dict]:
    """Every row of a data file, as dicts (txt/md: {"text": line})."""
    return formats.read_rows(path)


def detect_shape(row: dict) -> tuple[str, str] | None:
    """(shape, chat_format) from one row, or None."""
    return formats.detect_shape(row)


def validate_row(row: dict, shape: str, chat_format: str) -> str | None:
    """What is wrong with a row of the given shape, or None."""
    return formats.validate_row(row, shape, chat_format)


def validate_file(path: str | Path, label: str | None = None, shape: str | None = None,
                  chat_format: str | None = None) -> Iterator[tuple[str, dict, str, str]]:
    """(location, row, shape, chat_format) for every row of a file, validated: what a version's
    creation runs on each copied file. DatasetError-compatible FormatError (400) on the first bad row."""
    return formats.validate_file(path, label, shape, chat_format)


def _clip(v: Any) -> Any:
    if isinstance(v, str):
        return v if len(v) <= PREVIEW_MAX_CHARS else v[:PREVIEW_MAX_CHARS] + "…"
    if isinstance(v, dict):
        return {str(k): _clip(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clip(x) for x in v]
    if isinstance(v, int | float | bool) or v is None:
        return v
    return str(v)


# --- building a version ------------------------------------------------------------------------

@dataclass
class Source:
    """Where a version's data comes from (paths relative to the owner's root)."""

    path: str | None = None
    train: str | None = None
    validate: str | None = None
    test: str | None = None

    def describe(self) -> str:
        if self.path:
            return self.path
        return ", ".join(f"{s}={getattr(self, s)}" for s in SPLITS if getattr(self, s))


@dataclass
class Built:
    tmp: Path
    shape: str
    chat_format: str
    format: str
    files: list[dict]  # relative "path" inside the version folder until finished
    rows: dict[str, int]
    preview: dict[str, list]
    size_bytes: int
    source: str
    ignored: list[str] = field(default_factory=list)


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and formats.is_data_file(p))


def _rel(root: Path, p: Path) -> str:
    try:
        return str(p.relative_to(root))
    except ValueError:
        return p.name


def _collect(settings: Settings, owner_id: str, src: Source) -> dict[str, list[tuple[Path, str]]]:
    """split -> [(absolute file, label relative to the owner's root)]. Only files inside the root."""
    root = user_root(settings, owner_id).resolve()
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}

    def resolve(rel: str) -> Path:
        p = resolve_user_path(settings, owner_id, rel)
        if not p.exists():
            raise BadRequest(f"{rel!r} not found in your files", code="path_not_found")
        return p

    def add_folder_or_file(split: str, p: Path, rel: str) -> None:
        if p.is_file():
            file_format(p)
            out[split].append(p)
        else:
            files = _data_files(p)
            if not files:
                raise DatasetError(f"no data files in {rel} (supported: {', '.join(sorted(FORMATS))})",
                                   code="no_data")
            out[split].extend(files)

    if src.path and any(getattr(src, s) for s in SPLITS):
        raise BadRequest("give either 'path' or per-split paths (train/validate/test), not both")
    if src.path:
        p = resolve(src.path)
        if p.is_file():
            file_format(p)
            out["train"].append(p)
        else:
            split_dirs = [c for c in sorted(p.iterdir()) if c.is_dir() and c.name.lower() in SPLIT_NAMES]
            loose = _data_files(p)
            named = [f for f in loose if f.stem.lower() in SPLIT_NAMES]
            for d in split_dirs:
                out[SPLIT_NAMES[d.name.lower()]].extend(_data_files(d))
            for f in named:
                out[SPLIT_NAMES[f.stem.lower()]].append(f)
            if not any(out.values()):
                out["train"].extend(loose)  # a folder of plain data files: all training data
    else:
        if not src.train:
            raise BadRequest("give 'path' (a folder or file) or at least 'train'", code="no_data")
        for s in SPLITS:
            rel = getattr(src, s)
            if rel:
                add_folder_or_file(s, resolve(rel), rel)
    if not out["train"]:
        where = src.path or src.train
        raise DatasetError(f"no training data found in {where!r}: expected train/ validate/ test/ folders, "
                           f"split-named files (train.jsonl, ...) or data files "
                           f"({', '.join(sorted(FORMATS))})", code="no_data")
    result: dict[str, list[tuple[Path, str]]] = {}
    for s, files in out.items():
        result[s] = []
        for f in files:
            real = f.resolve()
            if real != root and root not in real.parents:
                raise InvalidPath(f"{_rel(root, f)} points outside your files")
            result[s].append((real, _rel(root, f)))
    return result


def build_version(settings: Settings, owner_id: str, dataset_id: str, src: Source) -> Built:
    """Copy, hash and validate into a temp folder under the dataset's folder (no database work)."""
    sources = _collect(settings, owner_id, src)
    base = settings.datasets_dir / dataset_id
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{new_id()}"
    tmp.mkdir()
    try:
        files: list[dict] = []
        for split, items in sources.items():
            used: set[str] = set()
            for path, label in items:
                name = path.name
                stem, suffix = os.path.splitext(name)
                i = 1
                while name.lower() in used:
                    i += 1
                    name = f"{stem}-{i}{suffix}"
                used.add(name.lower())
                (tmp / split).mkdir(exist_ok=True)
                size, digest = copy_hashing(path, tmp / split / name, fsync=True)
                files.append({"split": split, "name": name, "path": f"{split}/{name}", "size": size,
                              "sha256": digest, "rows": 0, "format": file_format(name), "source": label})
        shape = chat_format = None
        rows = {s: 0 for s in SPLITS}
        preview: dict[str, list] = {s: [] for s in SPLITS}
        for f in files:
            n = 0
            for _loc, row, row_shape, row_format in validate_file(tmp / f["path"], f["source"], shape,
                                                                  chat_format):
                shape, chat_format = row_shape, row_format  # the first row's, then every file's
                n += 1
                if len(preview[f["split"]]) < PREVIEW_ROWS:
                    preview[f["split"]].append(_clip(row))
            f["rows"] = n
            rows[f["split"]] += n
            os.chmod(tmp / f["path"], 0o444)
        if rows["train"] == 0:
            raise DatasetError("the training split has no rows", code="no_data")
        fmts = {f["format"] for f in files}
        return Built(tmp=tmp, shape=shape, chat_format=chat_format or "",
                     format=fmts.pop() if len(fmts) == 1 else "mixed", files=files, rows=rows,
                     preview={s: p for s, p in preview.items()}, size_bytes=sum(f["size"] for f in files),
                     source=src.describe())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            base.rmdir()  # only when empty: a new dataset's folder
        raise


def _finish(s: Session, settings: Settings, ds: DatasetModel, built: Built, version: int, principal: Principal,
            description: str) -> DatasetVersionModel:
    final = settings.datasets_dir / ds.id / str(version)
    if final.exists():  # left by a crash between rename and commit
        shutil.rmtree(final)
    os.replace(built.tmp, final)
    built.tmp = final  # so a failed commit removes it
    files = [{**f, "path": str(final / f["path"])} for f in built.files]
    splits = {sp: {"rows": built.rows[sp], "files": [f["path"] for f in files if f["split"] == sp]}
              for sp in SPLITS}
    v = DatasetVersionModel(dataset_id=ds.id, version=version, shape=built.shape, chat_format=built.chat_format,
                            format=built.format, splits=splits, files=files, preview=built.preview,
                            total_rows=sum(built.rows.values()), size_bytes=built.size_bytes, source=built.source,
                            description=description or "", path=str(final), created_by=principal.id)
    s.add(v)
    s.flush()
    events.record(s, actor_id=principal.id, kind="dataset.version_created", object_type="dataset", object_id=ds.id,
                  message=f"version {version}: {built.shape}, {v.total_rows} rows",
                  data={"version_id": v.id, "version": version, "shape": built.shape, "rows": built.rows,
                        "source": built.source})
    return v


def validate_name(name: str | None) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise BadRequest("dataset name must be 1-128 letters, digits, '_', '.', '-' and start with a letter or digit",
                         code="invalid_name")
    return name


def create_dataset(sessions: sessionmaker[Session], settings: Settings, principal: Principal, *, name: str,
                   source: Source, description: str = "", is_public: bool = False
                   ) -> tuple[DatasetModel, DatasetVersionModel]:
    name = validate_name(name)
    with session_scope(sessions, readonly=True) as s:
        if s.scalar(select(DatasetModel.id).where(DatasetModel.owner_id == principal.id, DatasetModel.name == name)):
            raise Conflict(f"dataset {name!r} already exists", code="dataset_exists")
    dataset_id = new_id()
    built = build_version(settings, principal.id, dataset_id, source)
    try:
        with session_scope(sessions) as s:
            ds = DatasetModel(id=dataset_id, owner_id=principal.id, name=name, description=description or "",
                              is_public=bool(is_public))
            s.add(ds)
            try:
                s.flush()
            except IntegrityError:
                raise Conflict(f"dataset {name!r} already exists", code="dataset_exists") from None
            events.record(s, actor_id=principal.id, kind="dataset.created", object_type="dataset",
                          object_id=ds.id, message=f"dataset {name} created", data={"name": name})
            v = _finish(s, settings, ds, built, 1, principal, description)
        return ds, v
    except BaseException:
        shutil.rmtree(built.tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            (settings.datasets_dir / dataset_id).rmdir()
        raise


def create_version(sessions: sessionmaker[Session], settings: Settings, principal: Principal, dataset_ref: str,
                   source: Source, description: str = "") -> DatasetVersionModel:
    with session_scope(sessions, readonly=True) as s:
        ds = get_owned_dataset(s, principal, dataset_ref)
        dataset_id, owner_id = ds.id, ds.owner_id
    built = build_version(settings, owner_id, dataset_id, source)
    try:
        with session_scope(sessions) as s:
            advisory_lock(s, f"dataset:{dataset_id}")
            ds = s.get(DatasetModel, dataset_id)
            if ds is None:
                raise NotFound(f"dataset {dataset_ref} not found (deleted meanwhile)")
            n = (s.scalar(select(func.max(DatasetVersionModel.version))
                          .where(DatasetVersionModel.dataset_id == dataset_id)) or 0) + 1
            v = _finish(s, settings, ds, built, n, principal, description)
            ds.updated_at = v.created_at
        return v
    except BaseException:
        shutil.rmtree(built.tmp, ignore_errors=True)
        raise


# --- queries -----------------------------------------------------------------------------------

def get_dataset(session: Session, principal: Principal, ref: str) -> DatasetModel:
    """By id, or by name (the caller's own dataset first, then a public one)."""
    return pick_by_name(session, DatasetModel, ref, principal, what="dataset")


def get_owned_dataset(session: Session, principal: Principal, ref: str) -> DatasetModel:
    ds = get_dataset(session, principal, ref)
    return get_owned(session, DatasetModel, ds.id, principal, what="dataset")


def list_datasets(session: Session, principal: Principal, *, page: int = 1, page_size: int = 20,
                  q: str | None = None, name: str | None = None) -> tuple[list[DatasetModel], int]:
    stmt = visible(select(DatasetModel), DatasetModel, principal)
    if q:
        stmt = stmt.where(DatasetModel.name.contains(q, autoescape=True))
    if name:
        stmt = stmt.where(DatasetModel.name == name)
    return paginate(session, stmt.order_by(DatasetModel.created_at.desc(), DatasetModel.id),
                    page=page, page_size=page_size)


def latest_versions(session: Session, dataset_ids: list[str]) -> dict[str, DatasetVersionModel]:
    if not dataset_ids:
        return {}
    latest = (select(DatasetVersionModel.dataset_id, func.max(DatasetVersionModel.version).label("v"))
              .where(DatasetVersionModel.dataset_id.in_(dataset_ids))
              .group_by(DatasetVersionModel.dataset_id).subquery())
    rows = session.scalars(select(DatasetVersionModel).join(
        latest, (DatasetVersionModel.dataset_id == latest.c.dataset_id) & (DatasetVersionModel.version == latest.c.v)))
    return {v.dataset_id: v for v in rows}


def version_counts(session: Session, dataset_ids: list[str]) -> dict[str, int]:
    if not dataset_ids:
        return {}
    rows = session.execute(select(DatasetVersionModel.dataset_id, func.count())
                           .where(DatasetVersionModel.dataset_id.in_(dataset_ids))
                           .group_by(DatasetVersionModel.dataset_id))
    return {d: n for d, n in rows}


def versions_of(session: Session, dataset_id: str) -> list[DatasetVersionModel]:
    return list(session.scalars(select(DatasetVersionModel).where(DatasetVersionModel.dataset_id == dataset_id)
                                .order_by(DatasetVersionModel.version)))


def get_version(session: Session, principal: Principal, dataset_ref: str, version_ref: str | int
                ) -> DatasetVersionModel:
    """version_ref: the version number, a version id, or "latest"."""
    ds = get_dataset(session, principal, dataset_ref)
    ref = str(version_ref)
    stmt = select(DatasetVersionModel).where(DatasetVersionModel.dataset_id == ds.id)
    if ref == "latest":
        v = session.scalar(stmt.order_by(DatasetVersionModel.version.desc()).limit(1))
    elif ref.isascii() and ref.isdigit():  # ASCII digits only ('²' is a digit too); too large: no such version
        v = session.scalar(stmt.where(DatasetVersionModel.version == int(ref))) if len(ref) <= 15 else None
    else:  # a version id or id prefix (services/common/refs.py)
        v = resolve_ref(session, DatasetVersionModel, ref, None, what=f"version of dataset {ds.name}",
                        name_col="id", owned=False, where=DatasetVersionModel.dataset_id == ds.id)
    if v is None:
        raise NotFound(f"dataset {ds.name} has no version {ref}")
    return v


def resolve_dataset_version(session: Session, principal: Principal, ref: str) -> DatasetVersionModel:
    """ref = a version id, or a dataset id / name (its latest version), or "<name or id>:<version>".
    404 if not visible."""
    ref = (ref or "").strip()
    if _ID_RE.match(ref):
        v = session.get(DatasetVersionModel, ref)
        if v is not None:
            get_visible(session, DatasetModel, v.dataset_id, principal, what="dataset")
            return v
    if ":" in ref:
        name, version = ref.rsplit(":", 1)
        return get_version(session, principal, name, version)
    return get_version(session, principal, ref, "latest")


def update_dataset(session: Session, principal: Principal, ref: str, *, description: str | None = None,
                   is_public: bool | None = None) -> DatasetModel:
    ds = get_owned_dataset(session, principal, ref)
    changed = []
    if description is not None and description != ds.description:
        ds.description = description
        changed.append("description")
    if is_public is not None and is_public != ds.is_public:
        ds.is_public = is_public
        changed.append("is_public")
    if changed:
        events.record(session, actor_id=principal.id, kind="dataset.updated", object_type="dataset",
                      object_id=ds.id, data={"changed": changed})
    return ds


def read_split(v: DatasetVersionModel, split: str, *, offset: int = 0, limit: int = 20) -> list[dict]:
    if split not in SPLITS:
        raise BadRequest(f"split must be one of {', '.join(SPLITS)}")
    out: list[dict] = []
    skipped = 0
    for path in v.split_files(split):
        for row in read_rows(path):
            if skipped < offset:
                skipped += 1
                continue
            out.append(_clip(row))
            if len(out) >= limit:
                return out
    return out


# --- deletion ----------------------------------------------------------------------------------

def delete_dataset(sessions: sessionmaker[Session], settings: Settings, principal: Principal, ref: str) -> None:
    """Refused (409) while any version is in use; the files go after the commit."""
    with session_scope(sessions) as s:
        ds = get_owned_dataset(s, principal, ref)
        references.ensure_unused(s, "dataset", ds.id)
        for v in versions_of(s, ds.id):
            references.ensure_unused(s, "dataset_version", v.id)
        dataset_id, name = ds.id, ds.name
        events.record(s, actor_id=principal.id, kind="dataset.deleted", object_type="dataset", object_id=ds.id,
                      message=f"dataset {name} deleted", data={"name": name})
        s.delete(ds)
    _rmtree(settings.datasets_dir / dataset_id)


def delete_version(sessions: sessionmaker[Session], settings: Settings, principal: Principal, ref: str,
                   version_ref: str) -> None:
    with session_scope(sessions) as s:
        ds = get_owned_dataset(s, principal, ref)
        v = get_version(s, principal, ds.id, version_ref)
        references.ensure_unused(s, "dataset_version", v.id)
        folder = settings.datasets_dir / ds.id / str(v.version)
        events.record(s, actor_id=principal.id, kind="dataset.version_deleted", object_type="dataset",
                      object_id=ds.id, message=f"version {v.version} deleted",
                      data={"version_id": v.id, "version": v.version})
        s.delete(v)
    _rmtree(folder)


def _rmtree(path: Path) -> None:
    """The files are read-only but their folders are not, so they can be removed."""
    shutil.rmtree(path, ignore_errors=True)
