"""Jobs: resolving what a job uses (model version, training data, image, command) and the
training hyperparameters (request + the user's config files). Described in services/jobs.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from modelyard.core import formats
from modelyard.core.errors import BadRequest, Conflict
from modelyard.core.hparams import hparam_dict
from modelyard.core.strategies import STRATEGIES, seed_name
from modelyard.runtime import hparams as H
from modelyard.server.auth import Principal
from modelyard.server.orm.models import ModelModel
from modelyard.server.schemas.jobs import JobSubmit
from modelyard.server.services import datasets, images, models
from modelyard.server.services.common.paths import resolve_user_path
from modelyard.server.settings import Settings

DATA_SUFFIXES = formats.SUFFIXES


# --- resolving what a job uses -------------------------------------------------------------------

def resolve_model(session: Session, principal: Principal, ref: str) -> tuple[Any, dict[str, Any]]:
    mv = models.resolve_model_version(session, principal, ref)
    status = mv.status
    if status != "done":
        raise Conflict(f"model version {mv.id} is {status}, not ready for training", code="model_not_ready")
    fmt = getattr(mv, "format", "hf") or "hf"
    if fmt not in ("hf", "peft"):
        raise BadRequest(f"model version {mv.id} is in {fmt} format; training needs Hugging Face weights "
                         "(hf) or a PEFT adapter on one", code="unsupported_model_format")
    info: dict[str, Any] = {"version_id": mv.id, "model_id": getattr(mv, "model_id", None),
                            "version": getattr(mv, "version", None), "format": fmt, "path": mv.path,
                            "architecture": getattr(mv, "architecture", None),
                            "model_name": getattr(session.get(ModelModel, mv.model_id), "name", None)}
    if fmt == "peft":
        base_id = getattr(mv, "base_version_id", None)
        base = session.get(type(mv), base_id) if base_id else None
        if base is None:
            raise BadRequest(f"adapter {mv.id} has no base model version", code="unsupported_model_format")
        info["base_version_id"] = base.id
        info["base_path"] = base.path
    return mv, info


def _data_files(folder: Path) -> list[str]:
    if folder.is_file():
        return [str(folder)]
    if not folder.is_dir():
        return []
    return sorted(str(p) for p in folder.rglob("*") if p.is_file() and formats.is_data_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _first_row(path: str) -> dict | None:
    p = Path(path)
    try:
        return formats.first_row(p)
    except formats.FormatError as exc:
        raise BadRequest(f"cannot read {exc.message}", code="invalid_data", details=exc.details) from None
    except OSError as exc:
        raise BadRequest(f"cannot read {p.name}: {exc}", code="invalid_data") from None


def detect_shape(files: list[str]) -> str:
    """The shape of the training files, from the first row (modelyard.core.formats' rules)."""
    row = _first_row(files[0]) if files else None
    found = formats.detect_shape(row) if isinstance(row, dict) else None
    if found is None:
        keys = f" (keys {sorted(row)[:8]})" if isinstance(row, dict) else ""
        raise BadRequest(f"cannot tell the shape of {Path(files[0]).name if files else '(no files)'}{keys}: "
                         "expected messages (chat), instruction/output or prompt/response (alpaca) or text",
                         code="invalid_data")
    return found[0]


def resolve_data(session: Session, settings: Settings, principal: Principal, owner_id: str, *,
                 input_type: str | None, dataset: str | None, input_dir: str | None,
                 required: bool) -> tuple[Any, dict[str, Any] | None]:
    """(dataset version or None, {"input_type","shape","train","validate","dir",...}) or (None, None)."""
    input_type = (input_type or ("dataset" if dataset else "local" if (input_dir or required) else "")).lower()
    if not input_type:
        return None, None
    if input_type == "dataset":
        if not dataset:
            raise BadRequest("inputType dataset needs a dataset (datasetVersionId or dataSetName)",
                             code="missing_dataset")
        dv = datasets.resolve_dataset_version(session, principal, dataset)
        splits = getattr(dv, "splits", None) or {}
        train = list((splits.get("train") or {}).get("files") or [])
        validate = list((splits.get("validate") or {}).get("files") or [])
        if not train or not (splits.get("train") or {}).get("rows", 1):
            raise BadRequest(f"dataset version {dv.id} has no train split", code="missing_train_split",
                             details={"splits": sorted(splits)})
        files = train + validate
        common = os.path.commonpath([str(Path(f).parent) for f in files]) if files else ""
        shape = getattr(dv, "shape", None) or detect_shape(train)
        return dv, {"input_type": "dataset", "dataset_version_id": dv.id, "shape": shape, "train": train,
                    "validate": validate, "dir": common}
    if input_type != "local":
        raise BadRequest(f"inputType must be local or dataset, not {input_type!r}", code="invalid_input_type")
    rel = input_dir or "Data"
    base = resolve_user_path(settings, owner_id, rel)
    if base.is_file():
        train, validate = [str(base)], []
    else:
        train = _data_files(base / "train")
        validate = _data_files(base / "validate")
    if not train:
        raise BadRequest(f"no training data in {rel.rstrip('/')}/train (files {', '.join(DATA_SUFFIXES)})",
                         code="missing_train_split")
    return None, {"input_type": "local", "input_dir": rel, "shape": detect_shape(train), "train": train,
                  "validate": validate, "dir": str(base if base.is_dir() else base.parent)}


def resolve_image(session: Session, principal: Principal, ref: str) -> dict[str, Any]:
    """The image version a job names, and the parts of its config that apply to a host process."""
    v = images.resolve_image_version(session, principal, ref)
    env = {}
    for item in getattr(v, "env", None) or []:
        if isinstance(item, str) and "=" in item:
            k, val = item.split("=", 1)
            env[k] = val
    return {"ref": ref, "id": getattr(v, "image_id", None), "version_id": v.id, "tag": getattr(v, "tag", None),
            "env": env, "entrypoint": list(getattr(v, "entrypoint", None) or []) or None,
            "cmd": list(getattr(v, "cmd", None) or []) or None, "working_dir": getattr(v, "working_dir", "") or ""}


def _as_dict(block: Any, where: str = "hyperparameters") -> dict[str, Any]:
    """The seed's [{"name","value"}] list (or a dict, or a JSON string) as {name: value}; blanks dropped."""
    return hparam_dict(block, where)


def load_user_config(settings: Settings, owner_id: str, rel: str) -> dict[str, Any] | None:
    path = resolve_user_path(settings, owner_id, rel)
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{rel} is not valid JSON: {exc}", code="invalid_config") from None
    if not isinstance(cfg, dict):
        raise BadRequest(f"{rel} must hold a JSON object", code="invalid_config")
    return cfg


def resolve_hyperparameters(settings: Settings, owner_id: str, req: JobSubmit, is_pretrain: bool
                            ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(strategy, typed hyperparameters, where the config came from).

    Base config: the request's `config`, else the user's `profile_path`, else
    Config/<Strategy>/config.json in the user's files (when present). Lists in the request body
    override the base config name by name. Validated by modelyard.runtime.hparams."""
    strategy_hint = req.strategy or (req.config or {}).get("fineTuneStrategy")
    strategy = H.normalize_strategy(strategy_hint, is_pretrain)
    source = "defaults"
    cfg = req.config
    if cfg:
        source = "request config"
    elif req.profile_path:
        cfg = load_user_config(settings, owner_id, req.profile_path)
        if cfg is None:
            raise BadRequest(f"profile {req.profile_path} not found in your files", code="invalid_config")
        source = req.profile_path
    else:
        rel = f"Config/{seed_name(strategy)}/config.json"  # the seed's folders: Config/LoRA, Config/FineTune
        cfg = load_user_config(settings, owner_id, rel)
        if cfg is not None:
            source = rel
    cfg = cfg or {}
    if not req.strategy and cfg.get("fineTuneStrategy") and not is_pretrain:
        strategy = H.normalize_strategy(cfg.get("fineTuneStrategy"), is_pretrain)
    common = {**_as_dict(cfg.get("commonHyperParameters"), "commonHyperParameters"),
              **_as_dict(req.common_hyperparameters, "commonHyperParameters")}
    finetune = {**_as_dict(cfg.get("fineTuneHyperParameters"), "fineTuneHyperParameters"),
                **_as_dict(req.finetune_hyperparameters, "fineTuneHyperParameters")}
    typed = H.validate(strategy, common, finetune, is_pretrain)
    given = {"commonHyperParameters": common, "fineTuneHyperParameters": finetune, "fineTuneStrategy": strategy}
    return strategy, typed, {"source": source, "given": given}


def default_output_model(base_name: str | None, strategy: str | None, fallback: str) -> str:
    """`<base model name>-<strategy>`: every fine-tune of one base with one strategy lands in one
    model as versions 1, 2, ... A base that is itself such an output (smollm2-lora) keeps its
    stem: training it again with lora gives smollm2-lora, with full smollm2-full."""
    if not base_name or not strategy:
        return fallback
    stem = base_name
    for s in STRATEGIES:
        if stem.endswith(f"-{s}") and len(stem) > len(s) + 1:
            stem = stem[: -len(s) - 1]
            break
    return f"{stem}-{strategy}"


def qlora_unavailable_reason(session: Session, roles: list[dict[str, Any]]) -> str | None:
    """Why a QLoRA job cannot run here (None: it can). QLoRA quantises the base to 4 bits with
    bitsandbytes, which needs CUDA: a GPU-holding node, bitsandbytes importable by the trainer and
    a GPU in every replica's request. Refused at submit rather than silently run as LoRA."""
    import importlib.util

    from sqlalchemy import func, select

    from modelyard.server.orm import NodeModel

    gpus = session.scalar(select(func.coalesce(func.max(NodeModel.gpu + NodeModel.vgpu + NodeModel.mig), 0))) or 0
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    if not gpus or not has_bnb:
        missing = " and ".join(x for x, ok in (("a CUDA GPU", gpus), ("bitsandbytes", has_bnb)) if not ok)
        return (f"QLoRA needs a CUDA GPU and bitsandbytes; this server's nodes have no {missing}. "
                "Use strategy lora (same adapter, unquantised base) instead")
    if any(int((r.get("gpu") or {}).get("num") or 0) < 1 for r in roles if int(r.get("replicas", 1) or 0) > 0):
        return "QLoRA needs a CUDA GPU in every replica: request gpu num >= 1"
    return None


def _safe_model_name(name: str, job_id: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:100]
    return cleaned or f"job-{job_id[:8]}"
