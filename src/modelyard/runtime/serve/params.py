"""A request's sampling parameters (torch-free: the HTTP layer imports it before torch is loaded)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SamplingParams:
    temperature: float = 1.0  # 0 -> greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 -> off
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def passthrough(self) -> bool:
        """Nothing to do: argmax over the raw logits is the answer."""
        return self.greedy and self.repetition_penalty == 1.0
