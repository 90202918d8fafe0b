"""THE parser for the seed's hyperparameter blocks: a [{"name", "value", "description"?}] list, a
{name: value} object, or either as a JSON string. Entries with a blank name are dropped (the
seed's request example carries an empty placeholder entry). Problems raise BadRequest with code
"invalid_hyperparameter"."""

from __future__ import annotations

import json
from typing import Any

from modelyard.core.errors import BadRequest


def hparam_items(block: Any, where: str = "hyperparameters") -> list[tuple[str, Any]]:
    """[(name, value)] in the given order; `where` names the block in messages."""
    if block is None or block == "" or block == [] or block == {}:
        return []
    if isinstance(block, str):
        try:
            block = json.loads(block)
        except ValueError:
            raise BadRequest(f"{where} is not valid JSON", code="invalid_hyperparameter") from None
    if isinstance(block, dict):
        return [(str(k), v) for k, v in block.items()]
    if isinstance(block, list):
        out = []
        for i, item in enumerate(block):
            if item == {}:
                continue  # an empty placeholder
            if not isinstance(item, dict) or "name" not in item:
                raise BadRequest(f"{where}[{i}] must be an object with name and value",
                                 code="invalid_hyperparameter")
            name = str(item.get("name") or "").strip()
            if name:
                out.append((name, item.get("value")))
        return out
    raise BadRequest(f"{where} must be a list of {{name, value}} or an object", code="invalid_hyperparameter")


def hparam_dict(block: Any, where: str = "hyperparameters") -> dict[str, Any]:
    """{name: value}; a later entry of the same name wins."""
    return dict(hparam_items(block, where))
