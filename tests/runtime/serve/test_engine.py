"""The engine in-process: an adapter's merged copy shares every tensor the adapter did not change
with its base, and the dtype rule."""

from __future__ import annotations

import pytest
import torch

from modelyard.runtime.serve import engine as E

pytestmark = pytest.mark.slow


def test_adapter_copy_shares_the_unchanged_tensors(tiny_dirs):
    base_dir, adapter_dir = tiny_dirs
    eng = E.load_engine(str(base_dir), served_names=["tiny"], adapters={"lora": str(adapter_dir)}, dtype="float32",
                        device="cpu", max_batch_tokens=None, max_model_len=None, timings={})
    try:
        base, merged = eng.models["tiny"].manager.model, eng.models["lora"].manager.model
        assert eng.models["tiny"].manager is not eng.models["lora"].manager
        b, m = dict(base.named_parameters()), dict(merged.named_parameters())
        assert set(b) == set(m)
        shared = {n for n in b if m[n] is b[n]}
        changed = {n for n in b if m[n] is not b[n]}
        assert "model.embed_tokens.weight" in shared and "lm_head.weight" in shared
        # exactly the LoRA-targeted projections got their own (merged) copy
        assert changed and all(n.endswith(("q_proj.weight", "v_proj.weight", "o_proj.weight")) for n in changed)
        assert all(not torch.equal(m[n], b[n]) for n in changed)
    finally:
        eng.stop()


def test_auto_dtype(monkeypatch):
    monkeypatch.setattr(E, "cpu_has_bf16", lambda: True)
    assert E.pick_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(E, "cpu_has_bf16", lambda: False)
    assert E.pick_dtype("auto", "cpu") == torch.float32
    assert E.pick_dtype("auto", "cuda") == torch.bfloat16
    assert E.pick_dtype("float16", "cpu") == torch.float16
