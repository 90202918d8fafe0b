"""QLoRA in the trainer, as far as a CPU machine can check it: the 4-bit quantisation it would load
the base with, the refusal (never a silent fall-back to LoRA) where CUDA or bitsandbytes is
missing, and that qlora takes the LoRA hyperparameters."""

from __future__ import annotations

import importlib.util

import pytest

from modelyard.runtime import hparams as H
from modelyard.runtime import train


def test_the_quantisation_config_is_nf4_4bit_double_quant():
    import torch

    cfg = train.qlora_quantization({})
    assert cfg.load_in_4bit and not cfg.load_in_8bit
    assert cfg.bnb_4bit_quant_type == "nf4" and cfg.bnb_4bit_use_double_quant
    assert cfg.bnb_4bit_compute_dtype == torch.bfloat16
    assert train.qlora_quantization({"fp16": True}).bnb_4bit_compute_dtype == torch.float16


def test_refused_without_cuda_or_bitsandbytes(tmp_path):
    assert "CUDA GPU" in train.qlora_unavailable(False)
    why = train.qlora_unavailable(True)
    assert (why is None) == (importlib.util.find_spec("bitsandbytes") is not None)
    from types import SimpleNamespace

    from modelyard.runtime import tiny

    # the parts of a TrainingSpec load_model reads
    spec = SimpleNamespace(model_dir=str(tiny.build_model(tmp_path / "m")), model_format="hf", base_model_dir=None)
    with pytest.raises(train.RuntimeFailure, match="QLoRA needs a CUDA GPU"):
        train.load_model(spec, "qlora", H.validate("qlora", {}, None, False), False, "cpu")


def test_qlora_takes_the_lora_hyperparameters():
    hp = H.validate("qlora", None, {"lora_r": "4"}, False)
    assert hp["lora_r"] == 4 and H.split(hp)[H.LORA]["r"] == 4
    assert H.normalize_strategy("QLoRA") == "qlora"
