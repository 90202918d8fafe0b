"""The hyperparameters a fine-tuning / pre-training job accepts, typed, with their defaults and
where each one goes (TrainingArguments, LoraConfig, the data pipeline).

`validate()` is called twice: by the server at submit (so a bad body is refused before anything
is queued) and by the runtime on the spec's already-typed values (idempotent). It must stay
import-light: no torch / transformers here.

Values arrive as the seed's strings ("1e-4", "true", "q_proj,v_proj") or already typed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from modelyard.core.errors import BadRequest
from modelyard.core.hparams import hparam_items
from modelyard.core.strategies import ADAPTER_STRATEGIES, STRATEGIES, normalize_strategy  # noqa: F401 (re-exported)

# where a value goes
ARGS = "args"  # transformers.TrainingArguments(<target>=value)
LORA = "lora"  # peft.LoraConfig(<target>=value)
DATA = "data"  # tokenisation / packing
RUN = "runtime"  # handled by modelyard.runtime.train itself

SCHEDULERS = ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay"]
# optimizers that need nothing beyond torch (the 8-bit / galore / apollo ones need extra packages)
OPTIMIZERS = ["adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop", "ademamix"]


@dataclass(frozen=True)
class HParam:
    name: str
    type: str  # float | int | bool | str | choice | list
    default: Any = None
    where: str = ARGS
    target: str | None = None  # the name at its destination (default: same name)
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo excluded
    hi_open: bool = False  # hi excluded
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    lora_only: bool = False
    pretrain_only: bool = False
    description: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.target or self.name

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default, "where": self.where,
                             "description": self.description}
        if self.lo is not None or self.hi is not None:
            d["range"] = [self.lo, self.hi]
        if self.choices:
            d["choices"] = list(self.choices)
        if self.aliases:
            d["aliases"] = list(self.aliases)
        return d


def _p(*a, **kw) -> HParam:
    return HParam(*a, **kw)


TABLE: list[HParam] = [
    # --- optimisation -------------------------------------------------------------------------
    _p("learning_rate", "float", 1e-4, lo=0, hi=10, lo_open=True, description="peak learning rate"),
    _p("per_device_train_batch_size", "int", 1, lo=1, hi=65536, aliases=("batch_size",),
       description="training batch per replica"),
    _p("per_device_eval_batch_size", "int", 8, lo=1, hi=65536, description="evaluation batch per replica"),
    _p("gradient_accumulation_steps", "int", 1, lo=1, hi=65536, description="micro-batches per optimizer step"),
    _p("num_train_epochs", "float", 1.0, lo=0, hi=1e6, lo_open=True, aliases=("epochs",),
       description="passes over the training data (ignored when max_steps > 0)"),
    _p("max_steps", "int", -1, lo=-1, hi=1e12, description="total optimizer steps; -1: from num_train_epochs"),
    _p("warmup_steps", "float", 0, lo=0, hi=1e12,
       description="linear warmup: steps (>= 1) or a ratio of the total steps (< 1)"),
    _p("warmup_ratio", "float", None, lo=0, hi=1, hi_open=True, target="warmup_steps",
       description="warmup as a ratio of total steps (written to warmup_steps)"),
    _p("weight_decay", "float", 0.0, lo=0, hi=10, description="AdamW weight decay"),
    _p("lr_scheduler_type", "choice", "linear", choices=tuple(SCHEDULERS), description="learning-rate schedule"),
    _p("optim", "choice", "adamw_torch", choices=tuple(OPTIMIZERS), aliases=("optimizer",), description="the optimizer (8-bit and other extra-package optimizers are not offered)"),
    _p("adam_beta1", "float", 0.9, lo=0, hi=1, hi_open=True, description="Adam decay rate of the gradient mean"),
    _p("adam_beta2", "float", 0.999, lo=0, hi=1, hi_open=True,
       description="Adam decay rate of the squared-gradient mean"),
    _p("adam_epsilon", "float", 1e-8, lo=0, hi=1, lo_open=True,
       description="Adam denominator term for numerical stability"),
    _p("max_grad_norm", "float", 1.0, lo=0, hi=1e6, description="gradient clipping (0: off)"),
    _p("label_smoothing_factor", "float", 0.0, lo=0, hi=1, hi_open=True,
       description="spread this share of the target probability over all tokens (0: off)"),
    _p("neftune_noise_alpha", "float", None, lo=0, hi=1e3, description="NEFTune embedding noise"),
    _p("seed", "int", 42, lo=0, hi=2**32 - 1, description="random seed for initialisation and shuffling"),
    _p("data_seed", "int", None, lo=0, hi=2**32 - 1,
       description="separate seed for the data order (default: seed)"),
    # --- precision / memory --------------------------------------------------------------------
    _p("bf16", "bool", False, description="bfloat16 mixed precision"),
    _p("fp16", "bool", False, description="float16 mixed precision (GPU)"),
    _p("gradient_checkpointing", "bool", False, description="recompute activations to save memory"),
    _p("torch_compile", "bool", False, description="compile the model with torch.compile (slower start)"),
    _p("dataloader_num_workers", "int", 0, lo=0, hi=64,
       description="worker processes loading batches (0: in the training process)"),
    # --- logging / checkpoints / evaluation -------------------------------------------------
    _p("logging_strategy", "choice", "steps", choices=("no", "steps", "epoch"),
       description="when metrics (loss, learning rate) are reported"),
    _p("logging_steps", "float", 10, lo=0, hi=1e12, lo_open=True,
       description="metrics every N steps (a float < 1: ratio of total steps)"),
    _p("save_strategy", "choice", "steps", choices=("no", "steps", "epoch"),
       description="when checkpoints are written into checkPointDir"),
    _p("save_steps", "float", 200, lo=0, hi=1e12, lo_open=True, description="checkpoint every N steps"),
    _p("save_total_limit", "int", 3, lo=1, hi=1e6, description="checkpoints kept (older ones are deleted)"),
    _p("eval_strategy", "choice", "no", choices=("no", "steps", "epoch"), aliases=("evaluation_strategy",),
       description="periodic evaluation on the validate split (a final one always runs when it exists)"),
    _p("eval_steps", "float", None, lo=0, hi=1e12, lo_open=True,
       description="evaluate every N steps when eval_strategy is steps (default: logging_steps)"),
    # --- data ----------------------------------------------------------------------------------
    _p("max_seq_length", "int", 1024, lo=8, hi=1 << 20, where=DATA, aliases=("cutoff_len", "max_length"),
       description="tokens per sample (longer samples are truncated)"),
    _p("packing", "bool", False, where=DATA,
       description="concatenate samples into full max_seq_length blocks (no padding)"),
    _p("train_on_inputs", "bool", False, where=DATA,
       description="also compute the loss on prompts / user turns (default: answers only)"),
    _p("from_scratch", "bool", False, where=RUN, pretrain_only=True,
       description="pre-training: start from randomly initialised weights of the model's config"),
    # --- LoRA ----------------------------------------------------------------------------------
    _p("lora_r", "int", 8, lo=1, hi=4096, where=LORA, target="r", lora_only=True, aliases=("lora_rank",),
       description="LoRA rank"),
    _p("lora_alpha", "float", 16, lo=0, hi=1e6, lo_open=True, where=LORA, lora_only=True,
       description="LoRA scaling numerator (scale = alpha / r)"),
    _p("lora_dropout", "float", 0.05, lo=0, hi=1, hi_open=True, where=LORA, lora_only=True,
       description="dropout on the LoRA layers' input"),
    _p("lora_target", "list", None, where=LORA, target="target_modules", lora_only=True,
       aliases=("target_modules", "lora_target_modules"),
       description="module names to adapt, comma-separated, or all-linear (default: PEFT's choice per architecture)"),
    _p("lora_bias", "choice", "none", choices=("none", "all", "lora_only"), where=LORA, target="bias",
       lora_only=True, description="which bias terms are trained with the adapter"),
    _p("use_rslora", "bool", False, where=LORA, lora_only=True, description="rank-stabilised scaling"),
    _p("use_dora", "bool", False, where=LORA, lora_only=True, description="weight-decomposed LoRA"),
    _p("modules_to_save", "list", None, where=LORA, lora_only=True,
       description="extra modules trained fully and saved with the adapter (e.g. lm_head)"),
]

BY_NAME: dict[str, HParam] = {}
for _hp in TABLE:
    BY_NAME[_hp.name] = _hp
    for _a in _hp.aliases:
        BY_NAME[_a] = _hp

_TRUE = {"1", "true", "yes", "y", "on", "t"}
_FALSE = {"0", "false", "no", "n", "off", "f", ""}


def valid_names(strategy: str, is_pretrain: bool) -> list[str]:
    strategy = normalize_strategy(strategy, is_pretrain)
    is_pretrain = is_pretrain or strategy == "pretrain"
    return sorted(hp.name for hp in TABLE if _applies(hp, strategy, is_pretrain))


def _applies(hp: HParam, strategy: str, is_pretrain: bool) -> bool:
    if hp.lora_only and (strategy not in ADAPTER_STRATEGIES or is_pretrain):
        return False
    if hp.pretrain_only and not is_pretrain:
        return False
    return True


def describe(strategy: str = "lora", is_pretrain: bool = False) -> list[dict[str, Any]]:
    """The table, for docs / the API: what each name means, its type, range and default."""
    strategy = normalize_strategy(strategy, is_pretrain)
    is_pretrain = is_pretrain or strategy == "pretrain"
    return [hp.describe() for hp in TABLE if _applies(hp, strategy, is_pretrain)]


def strategies_of(hp: HParam) -> list[str]:
    """The strategies (lora, full, qlora, pretrain) a hyperparameter applies to."""
    return [s for s in STRATEGIES if _applies(hp, s, s == "pretrain")]


def catalog() -> list[dict[str, Any]]:
    """Every hyperparameter a training job accepts, with the strategies it applies to (GET /api/v1/hparams)."""
    return [{**hp.describe(), "strategies": strategies_of(hp)} for hp in TABLE]


def _items(block: Any, where: str) -> list[tuple[str, Any]]:
    """The seed's [{"name","value","description"}] list, a {name: value} dict, or None
    (modelyard.core.hparams, the one parser)."""
    return hparam_items(block, where)


class _Bad(Exception):
    pass


def _num(raw: Any, kind: str) -> float | int:
    if isinstance(raw, bool):
        raise _Bad("expected a number")
    if isinstance(raw, int | float):
        v = raw
    else:
        s = str(raw).strip()
        try:
            v = float(s) if kind == "float" or any(c in s.lower() for c in ".e") else int(s)
        except ValueError:
            raise _Bad("expected a number") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise _Bad("expected a finite number")
    if kind == "int":
        if isinstance(v, float):
            if not v.is_integer():
                raise _Bad("expected an integer")
            v = int(v)
        return int(v)
    return float(v)


def _coerce(hp: HParam, raw: Any) -> Any:
    if raw is None:
        if hp.default is None:
            return None
        raise _Bad("a value is required")
    if hp.type in ("float", "int"):
        v = _num(raw, hp.type)
        if hp.lo is not None and (v < hp.lo or (hp.lo_open and v == hp.lo)):
            raise _Bad(f"must be {'>' if hp.lo_open else '>='} {hp.lo:g}")
        if hp.hi is not None and (v > hp.hi or (hp.hi_open and v == hp.hi)):
            raise _Bad(f"must be {'<' if hp.hi_open else '<='} {hp.hi:g}")
        if hp.name == "max_steps" and v == 0:
            raise _Bad("must be -1 or >= 1")
        return v
    if hp.type == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int | float) and raw in (0, 1):
            return bool(raw)
        s = str(raw).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise _Bad("expected true or false")
    if hp.type == "choice":
        s = str(raw).strip()
        for c in hp.choices:
            if s.lower() == c.lower():
                return c
        raise _Bad(f"must be one of {', '.join(hp.choices)}")
    if hp.type == "list":
        if isinstance(raw, list | tuple):
            items = [str(x).strip() for x in raw]
        else:
            s = str(raw).strip()
            if s.startswith("["):
                try:
                    items = [str(x).strip() for x in json.loads(s)]
                except ValueError:
                    raise _Bad("expected a comma-separated list or a JSON list") from None
            else:
                items = [x.strip() for x in s.split(",")]
        items = [x for x in items if x]
        if not items:
            raise _Bad("expected at least one name")
        if any(not all(c.isalnum() or c in "._-*" for c in x) for x in items):
            raise _Bad("module names may hold letters, digits and . _ - *")
        return items
    return str(raw)


def validate(strategy: str | None, common: Any = None, finetune: Any = None, is_pretrain: bool = False,
             *, with_defaults: bool = True) -> dict[str, Any]:
    """Typed hyperparameters for a job, merged with defaults.

    Raises BadRequest(code="invalid_hyperparameter", details={"valid": [...]}) naming the first
    offending name or value."""
    strategy = normalize_strategy(strategy, bool(is_pretrain))
    is_pretrain = bool(is_pretrain) or strategy == "pretrain"
    valid = valid_names(strategy, is_pretrain)

    def refuse(msg: str, name: str | None = None, value: Any = None) -> BadRequest:
        details: dict[str, Any] = {"valid": valid}
        if name is not None:
            details["name"] = name
            details["value"] = value
        return BadRequest(f"{msg}; valid hyperparameters for {'pre-training' if is_pretrain else strategy}: "
                          f"{', '.join(valid)}", code="invalid_hyperparameter", details=details)

    given: dict[str, Any] = {}
    seen_as: dict[str, str] = {}
    for where, block in (("commonHyperParameters", common), ("fineTuneHyperParameters", finetune)):
        for name, raw in _items(block, where):
            key = name.strip()
            hp = BY_NAME.get(key) or BY_NAME.get(key.lower())
            if hp is None:
                raise refuse(f"unknown hyperparameter {key!r} (in {where})", key, raw)
            if not _applies(hp, strategy, bool(is_pretrain)):
                why = "pre-training" if is_pretrain and hp.lora_only else (
                    f"the {strategy} strategy" if hp.lora_only else "fine-tuning (pre-training only)")
                raise refuse(f"hyperparameter {key!r} does not apply to {why}", key, raw)
            try:
                value = _coerce(hp, raw)
            except _Bad as exc:
                raise refuse(f"invalid value {raw!r} for hyperparameter {key!r}: {exc}", key, raw) from None
            if hp.name in given and seen_as[hp.name] != key and given[hp.name] != value:
                raise refuse(f"hyperparameter {hp.name!r} given twice with different values "
                             f"({seen_as[hp.name]}, {key})", key, raw)
            given[hp.name] = value
            seen_as[hp.name] = key

    if given.get("bf16") and given.get("fp16"):
        raise refuse("bf16 and fp16 cannot both be true", "fp16", True)
    if "warmup_ratio" in given and "warmup_steps" in given:
        raise refuse("give warmup_steps or warmup_ratio, not both", "warmup_ratio", given["warmup_ratio"])

    out: dict[str, Any] = {}
    if with_defaults:
        for hp in TABLE:
            if _applies(hp, strategy, bool(is_pretrain)) and hp.default is not None:
                out[hp.name] = hp.default
    out.update({k: v for k, v in given.items() if v is not None})
    if "warmup_ratio" in out:  # TrainingArguments takes a ratio as a float warmup_steps < 1
        out["warmup_steps"] = out.pop("warmup_ratio")
    return out


def split(hparams: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"args": {...TrainingArguments kwargs}, "lora": {...LoraConfig kwargs}, "data": {...}, "runtime": {...}}."""
    out: dict[str, dict[str, Any]] = {ARGS: {}, LORA: {}, DATA: {}, RUN: {}}
    for name, value in hparams.items():
        hp = BY_NAME.get(name)
        if hp is None or value is None:
            continue
        out[hp.where][hp.dest] = value
    return out
