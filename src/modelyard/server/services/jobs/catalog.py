"""The hyperparameter catalogue the API serves (from the trainer's typed table, runtime/hparams.py)."""

from __future__ import annotations

from typing import Any

from modelyard.core.errors import BadRequest
from modelyard.core.strategies import DESCRIPTIONS, STRATEGIES, normalize_strategy


def _table():
    try:
        from modelyard.runtime import hparams
    except ModuleNotFoundError as exc:  # pragma: no cover - the server ships with its trainer
        raise BadRequest("training runtime not installed") from exc
    return hparams


def hparams_catalog(strategy: str | None = None) -> dict[str, Any]:
    """{"strategies": [{name, description}], "hyperparameters": [{name, type, default, range|choices,
    strategies, description, ...}]}, optionally only those of one strategy."""
    items = _table().catalog()
    if strategy:
        s = normalize_strategy(strategy)
        items = [h for h in items if s in h["strategies"]]
    return {"strategies": [{"name": s, "description": DESCRIPTIONS[s]} for s in STRATEGIES],
            "hyperparameters": items}


def hparams_for(strategy: str, is_pretrain: bool = False) -> dict[str, Any]:
    H = _table()
    return {"strategy": normalize_strategy(strategy, is_pretrain), "hyperparameters": H.describe(strategy, is_pretrain)}
