"""(owned by the files domain) Storage roots and paths."""

from __future__ import annotations

from modelyard.server.settings import Settings

LAYOUT = ["Image", "Model", "Data/train", "Data/validate", "Data/test", "Code", "Config/LoRA", "Config/FineTune"]


def ensure_user_layout(settings: Settings, user_id: str) -> None:
    root = settings.users_root / user_id
    for rel in LAYOUT:
        (root / rel).mkdir(parents=True, exist_ok=True)
