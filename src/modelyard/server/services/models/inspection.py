"""What a model folder really holds: format, architecture, parameter count, dtype, context
length, size and per-file SHA-256. Filesystem only (no database).

- Hugging Face folder: config.json + *.safetensors (or pytorch_model*.bin) + tokenizer files.
  Parameters are counted from the safetensors headers (8-byte little-endian length + JSON), never
  by loading weights; the header is checked against the file size, so a truncated file fails.
- GGUF file: gguf.GGUFReader (memory-mapped): general.architecture, <arch>.context_length,
  block count, embedding length, file type (quantization), parameters from the tensor shapes.
- PEFT adapter: adapter_config.json (+ adapter_model.safetensors|bin): base_model_name_or_path,
  r, alpha, target modules; the registry service resolves the base to a version.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.core.digests import copy_hashing, sha256_file

CHUNK = 8 * 1024 * 1024
_MAX_HEADER = 100 * 1024 * 1024
SKIP_DIRS = {".git", ".cache", "__pycache__", ".ipynb_checkpoints"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "tokenizer_config.json")

# safetensors dtype -> (torch-style name, bytes per element or None when packed/unknown)
_ST_DTYPES: dict[str, tuple[str, float | None]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1), "F8_E8M0": ("float8_e8m0fnu", 1),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1),
    "U64": ("uint64", 8), "U32": ("uint32", 4), "U16": ("uint16", 2), "U8": ("uint8", 1), "BOOL": ("bool", 1),
}
_FLOAT = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu"}


class InspectError(Exception):
    """The files are not an importable model; the message says why (becomes status_reason)."""


@dataclass
class Inspection:
    format: str  # hf | gguf | peft
    architecture: str = ""
    model_type: str = ""
    parameters: int | None = None
    dtype: str = ""
    quantization: str = ""
    context_length: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    peft: dict[str, Any] | None = None

    @property
    def scale(self) -> str:
        return scale_of(self.parameters)

    @property
    def structure(self) -> str:
        return structure_of(self)


# --- layout ------------------------------------------------------------------------------------

def _visible_entries(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if not p.name.startswith(".") and p.name not in SKIP_DIRS)


def _has_full_weights(d: Path) -> bool:
    return any(p.is_file() and (p.suffix == ".safetensors" and not p.name.startswith("adapter_")
                                or p.name.startswith("pytorch_model") and p.suffix == ".bin")
               for p in d.iterdir())


def detect_layout(src: Path, *, shown: str | None = None, _depth: int = 0) -> tuple[str, Path]:
    """(format, what to copy): a directory for hf/peft, the .gguf file itself for gguf.

    A folder holding nothing but one sub-folder is looked into (an uploaded folder often nests one
    more level). `shown` is how the path is named in messages (the user's path, not ours)."""
    shown = shown or src.name
    if src.is_symlink():
        raise InspectError(f"{shown} is a symbolic link")
    if src.is_file():
        if src.suffix.lower() == ".gguf":
            return "gguf", src
        if src.suffix == ".safetensors" or src.suffix == ".bin":
            raise InspectError(f"{shown} is a lone weight file without config.json; import the folder holding "
                               "config.json, the weights and the tokenizer")
        raise InspectError(f"{shown} is neither a model folder nor a .gguf file")
    if not src.is_dir():
        raise InspectError(f"{shown} does not exist")
    names = {p.name for p in src.iterdir()}
    if "adapter_config.json" in names and not ("config.json" in names and _has_full_weights(src)):
        return "peft", src
    if "config.json" in names:
        return "hf", src
    ggufs = [p for p in src.iterdir() if p.suffix.lower() == ".gguf" and p.is_file() and not p.is_symlink()]
    if len(ggufs) == 1:
        return "gguf", ggufs[0]
    if len(ggufs) > 1:
        raise InspectError(f"{shown} holds {len(ggufs)} .gguf files ({', '.join(sorted(p.name for p in ggufs))}); "
                           "point the path at one of them")
    entries = _visible_entries(src)
    subdirs = [p for p in entries if p.is_dir() and not p.is_symlink()]
    if _depth < 2 and len(subdirs) == 1 and len(entries) == 1:
        return detect_layout(subdirs[0], shown=f"{shown.rstrip('/')}/{subdirs[0].name}", _depth=_depth + 1)
    raise InspectError(f"no config.json (Hugging Face folder), adapter_config.json (PEFT adapter) or .gguf file "
                       f"in {shown}")


# --- copying with hashing ----------------------------------------------------------------------

def _walk(src: Path):
    """(relative posix path, absolute path) of every regular file; links and special files refused."""
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        d = Path(dirpath)
        for name in list(dirnames):
            if name in SKIP_DIRS:
                dirnames.remove(name)
            elif (d / name).is_symlink():
                raise InspectError(f"{(d / name).relative_to(src).as_posix()} is a symbolic link; links are not imported")
        dirnames.sort()
        for name in sorted(filenames):
            p = d / name
            st = os.lstat(p)
            rel = p.relative_to(src).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise InspectError(f"{rel} is a symbolic link; links are not imported")
            if not stat.S_ISREG(st.st_mode):
                raise InspectError(f"{rel} is not a regular file")
            yield rel, p


def copy_into(src: Path, dest: Path, *, move: bool = False) -> list[dict[str, Any]]:
    """Copy (or move) a folder's files, or one file, into dest (created; must not hold files yet).

    Returns [{path, size, sha256}] sorted by path. Symbolic links anywhere refuse the import."""
    dest.mkdir(parents=True, exist_ok=True)
    files: list[dict[str, Any]] = []
    if src.is_file():
        pairs = [(src.name, src)]
        if src.is_symlink():
            raise InspectError(f"{src.name} is a symbolic link")
    else:
        pairs = list(_walk(src))
    for rel, p in pairs:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            shutil.move(str(p), str(target))
            files.append({"path": rel, "size": target.stat().st_size, "sha256": sha256_file(target)})
        else:
            size, digest = copy_hashing(p, target, exclusive=True)
            files.append({"path": rel, "size": size, "sha256": digest})
    for f in files:  # registry copies are read-only: versions are immutable
        try:
            os.chmod(dest / f["path"], 0o444)
        except OSError:  # pragma: no cover
            pass
    return sorted(files, key=lambda f: f["path"])


def list_files(root: Path) -> list[dict[str, Any]]:
    return [{"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p)} for rel, p in _walk(root)]


# --- safetensors / torch headers ---------------------------------------------------------------

def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> {dtype, shape, data_offsets}, validated against the file's size."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise InspectError(f"{path.name}: not a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n == 0 or n > _MAX_HEADER or 8 + n > size:
            raise InspectError(f"{path.name}: unreadable safetensors header (declared length {n}, file {size} bytes)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InspectError(f"{path.name}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InspectError(f"{path.name}: safetensors header is not an object")
    header.pop("__metadata__", None)
    end = 0
    for name, t in header.items():
        try:
            dtype, shape, (b, e) = t["dtype"], [int(x) for x in t["shape"]], t["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise InspectError(f"{path.name}: malformed entry for tensor {name!r}") from None
        numel = 1
        for x in shape:
            numel *= x
        item = _ST_DTYPES.get(dtype, (None, None))[1]
        if e < b or (item is not None and (e - b) != numel * item):
            raise InspectError(f"{path.name}: tensor {name!r} has inconsistent offsets for {dtype}{shape}")
        end = max(end, int(e))
    if 8 + n + end > size:
        raise InspectError(f"{path.name}: truncated (tensors need {8 + n + end} bytes, file has {size})")
    return header


def _tally(counts: dict[str, int], dtype: str, numel: int) -> None:
    counts[dtype] = counts.get(dtype, 0) + numel


def _count_safetensors(paths: list[Path]) -> tuple[int, dict[str, int], int]:
    total, by_dtype, tensors = 0, {}, 0
    for p in paths:
        for t in read_safetensors_header(p).values():
            numel = 1
            for x in t["shape"]:
                numel *= int(x)
            total += numel
            tensors += 1
            _tally(by_dtype, _ST_DTYPES.get(t["dtype"], (t["dtype"].lower(), None))[0], numel)
    return total, by_dtype, tensors


def _count_torch_bins(paths: list[Path]) -> tuple[int, dict[str, int], int]:
    """Shapes of pickled state dicts, memory-mapped (tensor data not read) and weights_only (safe)."""
    import torch  # lazy: torch is heavy; only pickled .bin checkpoints need it

    total, by_dtype, tensors = 0, {}, 0
    for p in paths:
        try:
            try:
                sd = torch.load(p, map_location="cpu", mmap=True, weights_only=True)
            except RuntimeError:  # legacy (non-zip) format cannot be memory-mapped
                sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InspectError(f"{p.name}: unreadable PyTorch weights ({type(exc).__name__}: {exc})") from None
        if not isinstance(sd, dict):
            raise InspectError(f"{p.name}: not a state dict")
        for v in sd.values():
            if isinstance(v, torch.Tensor):
                total += v.numel()
                tensors += 1
                _tally(by_dtype, str(v.dtype).removeprefix("torch."), v.numel())
        del sd
    return total, by_dtype, tensors


def _main_dtype(by_dtype: dict[str, int]) -> str:
    floats = {k: v for k, v in by_dtype.items() if k in _FLOAT}
    pool = floats or by_dtype
    return max(pool, key=pool.get) if pool else ""


def _weight_files(root: Path, *, prefix: str = "") -> tuple[str, list[Path]]:
    """('safetensors'|'bin', files) of the checkpoint in root (sharded index honoured)."""
    for kind, index in (("safetensors", f"{prefix or 'model'}.safetensors.index.json"),
                        ("bin", f"{prefix or 'pytorch_model'}.bin.index.json")):
        ip = root / index
        if ip.is_file():
            try:
                weight_map = json.loads(ip.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError) as exc:
                raise InspectError(f"{index}: unreadable ({exc})") from None
            files = sorted({root / v for v in weight_map.values()})
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise InspectError(f"{index} names shards that are missing: {', '.join(missing[:5])}")
            return kind, files
    if prefix:
        st = [root / f"{prefix}.safetensors"] if (root / f"{prefix}.safetensors").is_file() else []
        bins = [root / f"{prefix}.bin"] if (root / f"{prefix}.bin").is_file() else []
    else:
        st = sorted(p for p in root.glob("*.safetensors") if not p.name.startswith("adapter_"))
        named = [p for p in st if p.name.startswith("model")]
        if named and len(named) != len(st):  # e.g. Mistral repos also ship consolidated.safetensors
            st = named
        bins = sorted(p for p in root.glob("*.bin") if p.name.startswith("pytorch_model"))
    if st:
        return "safetensors", st
    if bins:
        return "bin", bins
    return "", []


def _count_weights(root: Path, *, prefix: str = "") -> tuple[int, dict[str, int], int, list[str]] | None:
    kind, files = _weight_files(root, prefix=prefix)
    if not files:
        return None
    total, by_dtype, tensors = (_count_safetensors if kind == "safetensors" else _count_torch_bins)(files)
    return total, by_dtype, tensors, [f.name for f in files]


# --- config.json -------------------------------------------------------------------------------

def _first(cfg: dict, *keys: str) -> Any:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            return v
    return None


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InspectError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InspectError(f"{what} is not a JSON object")
    return data


def _config_facts(cfg: dict) -> dict[str, Any]:
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}
    merged = {**text, **{k: v for k, v in cfg.items() if v is not None}}
    archs = cfg.get("architectures") or []
    return {
        "architecture": archs[0] if archs and isinstance(archs[0], str) else str(cfg.get("model_type") or ""),
        "model_type": str(cfg.get("model_type") or ""),
        "context_length": _int(_first(merged, "max_position_embeddings", "n_positions", "max_sequence_length",
                                      "seq_length", "n_ctx", "max_seq_len")),
        "num_layers": _int(_first(merged, "num_hidden_layers", "n_layer", "num_layers", "n_layers")),
        "hidden_size": _int(_first(merged, "hidden_size", "n_embd", "d_model", "dim")),
        "num_heads": _int(_first(merged, "num_attention_heads", "n_head", "n_heads")),
        "num_kv_heads": _int(_first(merged, "num_key_value_heads")),
        "vocab_size": _int(_first(merged, "vocab_size")),
        "config_dtype": str(_first(cfg, "torch_dtype", "dtype") or ""),
        "quantization": str((cfg.get("quantization_config") or {}).get("quant_method") or "")
        if isinstance(cfg.get("quantization_config"), dict) else "",
    }


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and not isinstance(v, bool) else None
    except (TypeError, ValueError):
        return None


def _has_tokenizer(root: Path) -> bool:
    return any((root / n).is_file() for n in TOKENIZER_FILES)


# --- per format ----------------------------------------------------------------------------------

def inspect_hf(root: Path) -> Inspection:
    cfg = _read_json(root / "config.json", "config.json")
    facts = _config_facts(cfg)
    counted = _count_weights(root)
    if counted is None:
        raise InspectError("config.json found but no weight files (*.safetensors or pytorch_model*.bin)")
    total, by_dtype, tensors, weight_files = counted
    if total == 0:
        raise InspectError("the weight files hold no tensors")
    ins = Inspection(format="hf", architecture=facts["architecture"], model_type=facts["model_type"],
                     parameters=total, dtype=_main_dtype(by_dtype) or facts["config_dtype"],
                     quantization=facts["quantization"], context_length=facts["context_length"])
    ins.details = {k: facts[k] for k in ("num_layers", "hidden_size", "num_heads", "num_kv_heads", "vocab_size")
                   if facts[k] is not None}
    ins.details.update(tensors=tensors, weight_files=weight_files, dtypes=by_dtype,
                       tokenizer=_has_tokenizer(root), generation_config=(root / "generation_config.json").is_file())
    if facts["quantization"]:
        ins.warnings.append(f"weights are quantized ({facts['quantization']}); the parameter count is of stored "
                            "(packed) tensors")
    if not ins.details["tokenizer"]:
        ins.warnings.append("no tokenizer files (tokenizer.json / tokenizer.model / vocab.json)")
    if not ins.architecture:
        ins.warnings.append("config.json names no architectures or model_type")
    return ins


def inspect_peft(root: Path) -> Inspection:
    cfg = _read_json(root / "adapter_config.json", "adapter_config.json")
    counted = _count_weights(root, prefix="adapter_model")
    if counted is None:
        raise InspectError("adapter_config.json found but no adapter_model.safetensors or adapter_model.bin")
    total, by_dtype, tensors, weight_files = counted
    targets = cfg.get("target_modules")
    if isinstance(targets, str):
        targets = [targets]
    peft = {
        "peft_type": str(cfg.get("peft_type") or "LORA"),
        "base_model_name_or_path": str(cfg.get("base_model_name_or_path") or ""),
        "task_type": cfg.get("task_type"),
        "r": _int(cfg.get("r")),
        "lora_alpha": cfg.get("lora_alpha"),
        "lora_dropout": cfg.get("lora_dropout"),
        "target_modules": sorted(targets) if isinstance(targets, list) else targets,
        "modules_to_save": cfg.get("modules_to_save"),
    }
    ins = Inspection(format="peft", parameters=total, dtype=_main_dtype(by_dtype), peft=peft)
    ins.details = {"tensors": tensors, "weight_files": weight_files, "dtypes": by_dtype,
                   "tokenizer": _has_tokenizer(root), "peft": peft}
    if not peft["base_model_name_or_path"]:
        ins.warnings.append("adapter_config.json names no base_model_name_or_path")
    return ins


_GGUF_FILE_TYPES: dict[int, str] | None = None


def _gguf_value(reader, key: str) -> Any:
    f = reader.get_field(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # pragma: no cover - malformed field
        return None


def inspect_gguf(path: Path) -> Inspection:
    import gguf  # lazy: only GGUF files need the gguf reader

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:
        raise InspectError(f"{path.name}: unreadable GGUF file ({type(exc).__name__}: {exc})") from None
    arch = str(_gguf_value(reader, "general.architecture") or "")
    if not arch:
        raise InspectError(f"{path.name}: GGUF metadata has no general.architecture")
    total, by_type = 0, {}
    for t in reader.tensors:
        total += int(t.n_elements)
        _tally(by_type, t.tensor_type.name, int(t.n_elements))
    if total == 0:
        raise InspectError(f"{path.name}: the GGUF file holds no tensors")
    ftype = _gguf_value(reader, "general.file_type")
    quant = ""
    if ftype is not None:
        try:
            quant = gguf.LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_")
        except ValueError:
            quant = f"type{ftype}"
    if not quant:
        quant = max(by_type, key=by_type.get)
    vocab = _gguf_value(reader, f"{arch}.vocab_size")
    if vocab is None:
        tok = reader.get_field("tokenizer.ggml.tokens")
        vocab = len(tok.data) if tok is not None else None
    ins = Inspection(format="gguf", architecture=arch, model_type=arch, parameters=total, dtype=quant,
                     quantization=quant, context_length=_int(_gguf_value(reader, f"{arch}.context_length")))
    details = {
        "num_layers": _int(_gguf_value(reader, f"{arch}.block_count")),
        "hidden_size": _int(_gguf_value(reader, f"{arch}.embedding_length")),
        "num_heads": _int(_gguf_value(reader, f"{arch}.attention.head_count")),
        "num_kv_heads": _int(_gguf_value(reader, f"{arch}.attention.head_count_kv")),
        "vocab_size": _int(vocab),
        "gguf_file": path.name,
        "gguf_version": _int(_gguf_value(reader, "GGUF.version")),
        "tensors": len(reader.tensors),
        "tensor_types": by_type,
        "name": _gguf_value(reader, "general.name"),
        "size_label": _gguf_value(reader, "general.size_label"),
        "tokenizer": reader.get_field("tokenizer.ggml.tokens") is not None,
        "chat_template": reader.get_field("tokenizer.chat_template") is not None,
    }
    ins.details = {k: v for k, v in details.items() if v is not None}
    return ins


def inspect_version_dir(root: Path, fmt: str) -> Inspection:
    """Inspect a registry directory of the given format (for gguf: the one .gguf inside)."""
    if fmt == "hf":
        return inspect_hf(root)
    if fmt == "peft":
        return inspect_peft(root)
    if fmt == "gguf":
        ggufs = sorted(root.glob("*.gguf"))
        if len(ggufs) != 1:
            raise InspectError(f"expected one .gguf file, found {len(ggufs)}")
        return inspect_gguf(ggufs[0])
    raise InspectError(f"unknown format {fmt!r}")


# --- seed presentation ---------------------------------------------------------------------------

def scale_of(n: int | None) -> str:
    """Seed `scale`: 134_515_008 -> '135M', 1_235_814_400 -> '1.2B', 6_738_415_616 -> '6.7B'."""
    if not n:
        return ""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            v = n / div
            text = f"{v:.0f}" if v >= 10 else f"{v:.1f}".rstrip("0").rstrip(".")
            return text + suffix
    return str(n)


def structure_of(ins: Inspection, *, base_architecture: str = "") -> str:
    """Seed `modelStructure`, e.g. 'LlamaForCausalLM, 30 layers, hidden 576'."""
    d = ins.details
    if ins.format == "peft" and ins.peft:
        p = ins.peft
        targets = p.get("target_modules")
        targets = ",".join(targets) if isinstance(targets, list) else (targets or "")
        parts = [p.get("peft_type") or "LORA"]
        if p.get("r") is not None:
            parts.append(f"r={p['r']}")
        if p.get("lora_alpha") is not None:
            parts.append(f"alpha={p['lora_alpha']}")
        text = " ".join(parts)
        if targets:
            text += f" on {targets}"
        base = base_architecture or p.get("base_model_name_or_path") or ""
        return (text + (f" of {base}" if base else ""))[:512]
    head = ins.architecture or "unknown"
    if ins.format == "gguf":
        head += f" (GGUF {ins.quantization})" if ins.quantization else " (GGUF)"
    parts = [head]
    if d.get("num_layers"):
        parts.append(f"{d['num_layers']} layers")
    if d.get("hidden_size"):
        parts.append(f"hidden {d['hidden_size']}")
    return ", ".join(parts)[:512]
