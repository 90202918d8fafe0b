"""THE training-strategy vocabulary of the native API: lora, full, qlora, pretrain.

The seed speaks `LoRA` / `FineTune` (fineTuneStrategy) and an `isPretrain` flag; those map here
both ways, so seed routes keep their words and everything else uses one set."""

from __future__ import annotations

from modelyard.core.errors import BadRequest

STRATEGIES = ("lora", "full", "qlora", "pretrain")
DESCRIPTIONS = {
    "lora": "LoRA: a low-rank adapter trained on a frozen base (saved as a PEFT adapter)",
    "full": "full fine-tuning: every weight of the model is trained (saved as a full model)",
    "qlora": "QLoRA: LoRA on a 4-bit quantised base (bitsandbytes; needs a CUDA GPU)",
    "pretrain": "pre-training on plain text: every weight trained, optionally from scratch",
}
ADAPTER_STRATEGIES = ("lora", "qlora")
_ALIASES = {"lora": "lora", "qlora": "qlora", "full": "full", "finetune": "full", "fullfinetune": "full",
            "fullfinetuning": "full", "sft": "full", "pretrain": "pretrain", "pretraining": "pretrain"}
# the seed's folder and field names for each strategy (Config/<seed name>/config.json)
SEED_NAMES = {"lora": "LoRA", "qlora": "LoRA", "full": "FineTune", "pretrain": "FineTune"}


def normalize_strategy(strategy: str | None, is_pretrain: bool = False) -> str:
    """lora | full | qlora | pretrain from any accepted spelling (LoRA, FineTune, QLoRA, full, ...).
    Pre-training (is_pretrain) is always `pretrain`; no strategy means lora. Anything else: 400
    with the list."""
    if is_pretrain:
        return "pretrain"
    key = (strategy or "lora").strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in _ALIASES:
        return _ALIASES[key]
    raise BadRequest(f"strategy {strategy!r} is not supported; use one of {', '.join(STRATEGIES)}",
                     code="invalid_strategy",
                     details={"valid": list(STRATEGIES)})


def canonical(strategy: str | None, is_pretrain: bool = False) -> str | None:
    """A stored value (old rows hold LoRA / FineTune) in the native vocabulary, never raising."""
    if strategy is None and not is_pretrain:
        return None
    try:
        return normalize_strategy(strategy, is_pretrain)
    except BadRequest:
        return strategy


def seed_name(strategy: str | None, is_pretrain: bool = False) -> str | None:
    """The seed's fineTuneStrategy word (LoRA | FineTune) for a native strategy."""
    c = canonical(strategy, is_pretrain)
    return SEED_NAMES.get(c or "", strategy)
