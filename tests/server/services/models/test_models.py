"""Model registry: seed §3 endpoints with the seed's request examples, imports of real tiny models
(HF safetensors + tokenizer, GGUF, PEFT adapter), failures with reasons, cross-user access,
aliases, metrics, lineage and refused deletes."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path

import pytest

# --- tiny real models built in-test ------------------------------------------------------------------

VOCAB_WORDS = "hello world the a model is small tiny registry test".split()


def make_tokenizer(dest: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[PAD]": 1, "<s>": 2, "</s>": 3}
    vocab.update({w: i + 4 for i, w in enumerate(VOCAB_WORDS)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(str(dest))


def make_tiny_hf(dest: Path, *, tokenizer: bool = True, seed: int = 0) -> int:
    """A 2-layer Llama saved as safetensors (+ tokenizer). Returns sum(p.numel())."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg)
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dest))
    if tokenizer:
        make_tokenizer(dest)
    return sum(p.numel() for p in model.parameters())


def make_tiny_adapter(base_dir: Path, dest: Path, *, base_name: str | None = None) -> int:
    """A LoRA adapter on the model in base_dir. Returns the adapter's parameter count."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 task_type="CAUSAL_LM"))
    n = sum(p.numel() for name, p in peft_model.named_parameters() if "lora_" in name)
    peft_model.save_pretrained(str(dest))
    if base_name is not None:
        cfg_path = dest / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base_name
        cfg_path.write_text(json.dumps(cfg))
    return n


def write_tiny_gguf(path: Path) -> int:
    """A small llama-architecture GGUF file (F32 tensors). Returns the element count."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-gguf")
    w.add_context_length(256)
    w.add_block_count(1)
    w.add_embedding_length(16)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tensors = {
        "token_embd.weight": np.random.rand(32, 16).astype(np.float32),
        "blk.0.attn_q.weight": np.random.rand(16, 16).astype(np.float32),
        "blk.0.ffn_up.weight": np.random.rand(32, 16).astype(np.float32),
        "output_norm.weight": np.ones(16, dtype=np.float32),
    }
    for name, t in tensors.items():
        w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sum(t.size for t in tensors.values())


def user_dir(settings, user, rel: str) -> Path:
    return settings.users_root / user.id / rel


def wait_version(client, version_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/v1/model-versions/{version_id}")
        assert r.status_code == 200, r.text
        v = r.json()
        if v["status"] != "importing":
            return v
        assert time.monotonic() < deadline, f"still importing: {v}"
        time.sleep(0.05)


def import_native(client, name: str, path: str, **kw) -> dict:
    r = client.post("/api/v1/models", json={"name": name, "path": path, **kw})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["versions"][0]["status"] == "importing"
    return wait_version(client, body["versions"][0]["id"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- seed §3 ---------------------------------------------------------------------------------------

SEED_CREATE = {
    "application": {"name": "11", "createUser": "4", "description": "", "userName": "zjm", "type": "LLM",
                    "developer": "", "loginUser": 1},
    "aiApplicationVersionList": [{
        "applicationName": "11", "createUser": "4", "userName": "zjm", "description": "", "version": "0.0.1",
        "source": "3", "trainTaskVersionId": "", "llmFineTuneTaskId": "", "image": "", "imageType": "",
        "framework": 12, "saveType": 2, "savePath": "/lightgbm", "configSaveType": 2, "label": "", "scale": "",
        "modelStructure": "", "loginUser": 1}],
    "hyperParameterList": [],
}
SEED_APPLICATION_KEYS = {"id", "createUser", "name", "description", "createTime", "userName", "modifiedTime",
                         "isDelete", "type", "developer", "loginUser", "aiApplicationVersionsCount",
                         "aiApplicationVersionsSize", "latestVersion", "status"}
SEED_VERSION_KEYS = {"id", "createUser", "createTime", "version", "metrics", "use", "softVersion", "description",
                     "source", "image", "framework", "frameworkStyle", "saveType", "savePath", "trainTaskVersionId",
                     "llmFineTuneTaskId", "size", "applicationId", "applicationName", "userName", "modifiedTime",
                     "hideSourcePath", "status", "deployJson", "label", "parameters", "originalParameters",
                     "fromMarket", "configPath", "configSaveType", "preDeployLabel", "parameterStatus", "isDelete",
                     "scale", "hyperParameterList", "modelStructure", "imageType", "loginUser", "absolutePath"}
TIMESTAMP_KEYS = {"date", "day", "hours", "minutes", "month", "nanos", "seconds", "time", "timezoneOffset", "year"}


def seed_body(user_id: str, **version_changes) -> dict:
    body = copy.deepcopy(SEED_CREATE)
    body["application"]["createUser"] = user_id
    body["aiApplicationVersionList"][0]["createUser"] = user_id
    body["aiApplicationVersionList"][0].update(version_changes)
    return body


def assert_envelope(r, code: int = 200) -> object:
    body = r.json()
    assert set(body) >= {"code", "success", "message", "data"}, body
    assert body["code"] == code and r.status_code == code, body
    assert body["success"] is (code == 200)
    return body["data"]


def wait_seed_version(client, vid: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/model/aiApplicationVersion/getAiApplicationVersionDetail",
                       params={"aiApplicationVersionId": vid})
        data = assert_envelope(r)
        if data["status"] != 1:
            return data
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_seed_endpoints_with_the_seed_examples(alice, settings):
    src = user_dir(settings, alice, "lightgbm")
    n_params = make_tiny_hf(src)

    # §3.1 the seed's example, with createUser = the caller
    r = alice.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id))
    data = assert_envelope(r)
    assert set(data) == {"application", "aiApplicationVersionList", "hyperParameterList"}
    app, [ver] = data["application"], data["aiApplicationVersionList"]
    assert set(app) >= SEED_APPLICATION_KEYS and set(ver) >= SEED_VERSION_KEYS
    assert app["name"] == "11" and app["createUser"] == alice.id and app["userName"] == "alice"
    assert app["type"] == "LLM" and app["loginUser"] == 1 and app["isDelete"] == 0 and len(app["id"]) == 32
    assert ver["applicationId"] == app["id"] and ver["applicationName"] == "11"
    assert ver["version"] == "0.0.1" and ver["source"] == 3 and ver["saveType"] == 2
    assert ver["savePath"] == "/lightgbm" and ver["framework"] == 12 and ver["configSaveType"] == 2
    assert ver["status"] == 1  # importing
    assert data["hyperParameterList"] == []

    done = wait_seed_version(alice, ver["id"])
    assert done["status"] == 2 and done["parameterStatus"] == 2, done
    assert done["parameterCount"] == n_params and done["format"] == "hf"
    assert done["scale"] == f"{n_params / 1000:.0f}K"
    assert done["modelStructure"] == "LlamaForCausalLM, 2 layers, hidden 32"
    assert done["architecture"] == "LlamaForCausalLM" and done["contextLength"] == 128
    on_disk = {f["path"]: f for f in done["files"]}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(on_disk)
    assert on_disk["model.safetensors"]["sha256"] == sha256(src / "model.safetensors")
    assert done["size"] == pytest.approx(sum(f["size"] for f in done["files"]) / 1024, rel=1e-6)
    assert set(done["createTime"]) == TIMESTAMP_KEYS and done["createTime"]["year"] > 100
    assert json.loads(done["parameters"])["parameters"] == n_params

    # §3.2 the seed's example body (pageNum 0, pageSize 0, queryInfo {})
    data = assert_envelope(alice.post("/model/aiApplication/getAiApplicationList",
                                      json={"pageNum": 0, "pageSize": 0, "queryInfo": {}}))
    assert data["total"] == 1 and data["pageNum"] == 1 and data["pages"] == 1
    [row] = data["list"]
    assert set(row) >= SEED_APPLICATION_KEYS and row["id"] == app["id"]
    assert row["aiApplicationVersionsCount"] == 1 and row["latestVersion"] == "0.0.1" and row["status"] == 2
    data = assert_envelope(alice.post("/model/aiApplication/getAiApplicationList",
                                      json={"pageNum": 1, "pageSize": 10, "queryInfo": {"name": "nomatch"}}))
    assert data["total"] == 0 and data["list"] == []

    # §3.3
    detail = assert_envelope(alice.get("/model/aiApplication/getAiApplicationDetail",
                                       params={"aiApplicationId": app["id"]}))
    assert set(detail) >= SEED_APPLICATION_KEYS and detail["latestVersion"] == "0.0.1"
    assert detail["aiApplicationVersionsSize"] == pytest.approx(done["size"])

    # §3.4
    versions = assert_envelope(alice.get("/model/aiApplicationVersion/getAiApplicationVersionList",
                                         params={"aiApplicationId": app["id"]}))
    assert [v["id"] for v in versions] == [ver["id"]] and set(versions[0]) >= SEED_VERSION_KEYS
    assert versions[0]["status"] == 2

    # §3.5 unknown ids and missing parameters answer in the envelope
    assert_envelope(alice.get("/model/aiApplicationVersion/getAiApplicationVersionDetail",
                              params={"aiApplicationVersionId": "0" * 32}), 404)
    assert_envelope(alice.get("/model/aiApplication/getAiApplicationDetail"), 400)


def test_seed_create_adds_versions_and_keeps_hyperparameters(alice, settings):
    make_tiny_hf(user_dir(settings, alice, "Model/a"))
    make_tiny_hf(user_dir(settings, alice, "Model/b"), seed=1)
    body = seed_body(alice.id, savePath="/Model/a")
    body["hyperParameterList"] = [{"paramName": "temperature", "type": "float", "value": "0.7",
                                   "valueRange": [0, 2], "edit": True}]
    data = assert_envelope(alice.post("/model/aiApplication/createAiApplication", json=body))
    assert data["hyperParameterList"][0]["paramName"] == "temperature"
    first = wait_seed_version(alice, data["aiApplicationVersionList"][0]["id"])
    assert json.loads(first["hyperParameterList"])[0]["value"] == "0.7"
    # same application name again: a second version of the same application
    data2 = assert_envelope(alice.post("/model/aiApplication/createAiApplication",
                                       json=seed_body(alice.id, savePath="/Model/b", version="0.0.2")))
    assert data2["application"]["id"] == data["application"]["id"]
    wait_seed_version(alice, data2["aiApplicationVersionList"][0]["id"])
    # the same version string again is a conflict
    r = alice.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id, savePath="/Model/b"))
    assert_envelope(r, 409)
    assert r.json()["reason"] == "version_exists"
    versions = assert_envelope(alice.get("/model/aiApplicationVersion/getAiApplicationVersionList",
                                         params={"aiApplicationId": data["application"]["id"]}))
    assert [v["version"] for v in versions] == ["0.0.1", "0.0.2"]


def test_seed_create_user_must_be_the_caller_unless_admin(alice, bob, admin, settings):
    make_tiny_hf(user_dir(settings, alice, "lightgbm"))
    r = bob.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id))
    assert_envelope(r, 403)
    r = bob.post("/model/aiApplication/createAiApplication", json={**seed_body(bob.id), "aiApplicationVersionList": [
        {**SEED_CREATE["aiApplicationVersionList"][0], "createUser": alice.id}]})
    assert_envelope(r, 403)
    # the seed's literal example names user "4", which does not exist here
    r = admin.post("/model/aiApplication/createAiApplication", json=SEED_CREATE)
    assert_envelope(r, 404)
    # an admin may act for alice: the model is alice's, imported from alice's files
    data = assert_envelope(admin.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id)))
    assert data["application"]["createUser"] == alice.id
    assert wait_seed_version(alice, data["aiApplicationVersionList"][0]["id"])["status"] == 2
    # nothing was created for bob
    assert assert_envelope(bob.post("/model/aiApplication/getAiApplicationList", json={}))["total"] == 0


def test_seed_invalid_paths_answer_400_and_create_nothing(alice):
    for bad in ("/../etc", "a/../../b", "x\\y"):
        r = alice.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id, savePath=bad))
        assert_envelope(r, 400)
    r = alice.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id, savePath="/missing"))
    assert_envelope(r, 400)
    assert r.json()["reason"] == "path_not_found"
    r = alice.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id, saveType=1))
    assert_envelope(r, 400)
    assert assert_envelope(alice.post("/model/aiApplication/getAiApplicationList", json={}))["total"] == 0


# --- native import ---------------------------------------------------------------------------------

def test_import_tiny_hf_counts_parameters_and_hashes(alice, settings):
    src = user_dir(settings, alice, "Model/tiny")
    n_params = make_tiny_hf(src)
    v = import_native(alice, "tiny", "Model/tiny", description="a tiny llama")
    assert v["status"] == "done", v
    assert v["format"] == "hf" and v["parameters"] == n_params and v["dtype"] == "float32"
    assert v["architecture"] == "LlamaForCausalLM" and v["model_type"] == "llama" and v["context_length"] == 128
    assert v["details"]["tokenizer"] is True and v["details"]["num_layers"] == 2
    assert v["version"] == "1" and v["source"] == 3 and v["save_path"] == "Model/tiny"
    reg = Path(v["path"])
    assert reg.is_dir() and reg.is_relative_to(settings.registry_dir.resolve())
    for f in v["files"]:
        assert sha256(reg / f["path"]) == f["sha256"] == sha256(src / f["path"])
        assert f["size"] == (reg / f["path"]).stat().st_size
    assert v["size_bytes"] == sum(f["size"] for f in v["files"])
    # immutable copy: changing the user's files changes nothing in the registry
    (src / "model.safetensors").write_bytes(b"changed")
    assert sha256(reg / "model.safetensors") == {f["path"]: f for f in v["files"]}["model.safetensors"]["sha256"]
    # the registry copy loads
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(v["path"])
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert AutoTokenizer.from_pretrained(v["path"])("hello world")["input_ids"]
    # a second version gets the next number; the model lists both
    make_tiny_hf(user_dir(settings, alice, "Model/tiny2"), seed=3)
    r = alice.post("/api/v1/models/tiny/versions", json={"path": "Model/tiny2"})
    assert r.status_code == 202 and r.json()["version"] == "2"
    assert wait_version(alice, r.json()["id"])["status"] == "done"
    m = alice.get("/api/v1/models/tiny").json()
    assert [x["version"] for x in m["versions"]] == ["1", "2"] and m["latest_version"] == "2"
    # events were written for the import
    ev = alice.get(f"/api/v1/events/model_version/{v['id']}")
    assert ev.status_code == 200, ev.text
    kinds = [e["kind"] for e in ev.json()["items"]]
    assert kinds[:2] == ["model_version.import_started", "model_version.imported"]


def test_import_nested_folder_and_bin_weights(alice, settings):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    # an uploaded folder nesting one more level is looked into
    n = make_tiny_hf(user_dir(settings, alice, "Model/upload/inner"))
    v = import_native(alice, "nested", "Model/upload")
    assert v["status"] == "done" and v["parameters"] == n
    # pytorch_model.bin checkpoints are counted too (memory-mapped, weights_only)
    d = user_dir(settings, alice, "Model/binckpt")
    model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=32, max_position_embeddings=64))
    d.mkdir(parents=True)
    model.config.save_pretrained(str(d))
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    v = import_native(alice, "bin", "Model/binckpt")
    assert v["status"] == "done" and v["parameters"] == sum(t.numel() for t in model.state_dict().values())


def test_import_gguf_file(alice, settings):
    n = write_tiny_gguf(user_dir(settings, alice, "Model/gguf/tiny.gguf"))
    v = import_native(alice, "tiny-gguf", "Model/gguf/tiny.gguf")
    assert v["status"] == "done", v
    assert v["format"] == "gguf" and v["architecture"] == "llama" and v["parameters"] == n
    assert v["context_length"] == 256 and v["quantization"] == "ALL_F32"
    assert v["model_structure"] == "llama (GGUF ALL_F32), 1 layers, hidden 16"
    assert [f["path"] for f in v["files"]] == ["tiny.gguf"]
    assert (Path(v["path"]) / "tiny.gguf").is_file()
    # a folder holding one .gguf works too
    v2 = alice.post("/api/v1/models/tiny-gguf/versions", json={"path": "Model/gguf"}).json()
    assert wait_version(alice, v2["id"])["format"] == "gguf"


def test_import_peft_adapter_resolves_its_base(alice, settings):
    make_tiny_hf(user_dir(settings, alice, "Model/base"))
    base = import_native(alice, "base", "Model/base")
    # an adapter trained from the registry copy names that directory as its base
    n_lora = make_tiny_adapter(Path(base["path"]), user_dir(settings, alice, "Model/adapter"))
    ad = import_native(alice, "adapter", "Model/adapter")
    assert ad["status"] == "done", ad
    assert ad["format"] == "peft" and ad["base_version_id"] == base["id"] and ad["parameters"] == n_lora
    assert ad["architecture"] == "LlamaForCausalLM" and ad["context_length"] == 128
    assert ad["details"]["peft"]["r"] == 4 and ad["details"]["peft"]["target_modules"] == ["q_proj", "v_proj"]
    assert ad["model_structure"] == "LORA r=4 alpha=8 on q_proj,v_proj of LlamaForCausalLM"
    # one named as '<model>:<version>' resolves too; an unknown base is kept as a warning
    make_tiny_adapter(Path(base["path"]), user_dir(settings, alice, "Model/adapter2"), base_name="base:1")
    ad2 = import_native(alice, "adapter2", "Model/adapter2")
    assert ad2["base_version_id"] == base["id"]
    make_tiny_adapter(Path(base["path"]), user_dir(settings, alice, "Model/adapter3"), base_name="org/unknown")
    ad3 = import_native(alice, "adapter3", "Model/adapter3")
    assert ad3["status"] == "done" and ad3["base_version_id"] is None
    assert "not a registry version" in " ".join(ad3["details"]["warnings"])
    # the adapter loads on its base from the registry
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base["path"]), ad["path"])
    # the base cannot go while adapters are built on it
    r = alice.delete("/api/v1/models/base/versions/1")
    assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
    assert "adapter" in r.json()["error"]["message"]
    assert alice.delete("/api/v1/models/adapter").status_code == 204
    assert alice.delete("/api/v1/models/adapter2").status_code == 204
    assert alice.delete("/api/v1/models/base/versions/1").status_code == 204
    assert not Path(base["path"]).exists()


def test_failed_imports_say_why(alice, settings):
    root = settings.users_root / alice.id
    (root / "Data/notamodel").mkdir(parents=True)
    (root / "Data/notamodel/readme.txt").write_text("hi")
    make_tiny_hf(root / "Model/trunc")
    st = root / "Model/trunc/model.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    (root / "Model/noweights").mkdir(parents=True)
    (root / "Model/noweights/config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (root / "Model/badjson").mkdir(parents=True)
    (root / "Model/badjson/config.json").write_text("{nope")
    (root / "Model/badjson/model.safetensors").write_bytes(b"\x00" * 16)
    (root / "Model/garbage.gguf").write_bytes(b"not a gguf at all" * 10)
    make_tiny_hf(root / "Model/linked", tokenizer=False)
    os.symlink("/etc/passwd", root / "Model/linked/tokenizer.json")
    cases = {"Data/notamodel": "no config.json", "Model/trunc": "truncated",
             "Model/noweights": "no weight files", "Model/badjson": "not valid JSON",
             "Model/garbage.gguf": "unreadable GGUF", "Model/linked": "symbolic link"}
    for i, (path, why) in enumerate(cases.items()):
        r = alice.post("/api/v1/models", json={"name": f"bad{i}", "path": path})
        assert r.status_code == 201, r.text
        v = wait_version(alice, r.json()["versions"][0]["id"])
        assert v["status"] == "failed" and why in v["status_reason"], (path, v["status_reason"])
        assert str(settings.home) not in v["status_reason"]
        assert not Path(v["path"]).exists()  # partial copies are removed
    # seed view of a failed version
    seed = assert_envelope(alice.get("/model/aiApplicationVersion/getAiApplicationVersionDetail",
                                     params={"aiApplicationVersionId": v["id"]}))
    assert seed["status"] == 3 and "symbolic link" in seed["statusReason"]
    # a failed version is not resolvable, and cannot carry an alias
    r = alice.get("/api/v1/model-versions/resolve", params={"ref": "bad0:1"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_version_not_ready"
    assert alice.get("/api/v1/model-versions/resolve", params={"ref": "bad0"}).status_code == 404
    assert alice.put("/api/v1/models/bad0/aliases/production", json={"version": "1"}).status_code == 409
    # paths outside the user's root never get that far
    for bad in ("../x", "/../../etc", "a\\b", "a\x00b"):
        r = alice.post("/api/v1/models", json={"name": "evil", "path": bad})
        assert r.status_code == 400, (bad, r.text)
    assert alice.get("/api/v1/models/evil").status_code == 404


# --- access ----------------------------------------------------------------------------------------

def test_cross_user_access(alice, bob, admin, settings):
    make_tiny_hf(user_dir(settings, alice, "Model/private"))
    v = import_native(alice, "secret", "Model/private")
    mid = v["model_id"]
    # bob cannot read, list, resolve, change or delete alice's private model
    assert bob.get(f"/api/v1/models/{mid}").status_code == 404
    assert bob.get("/api/v1/models/secret").status_code == 404
    assert bob.get(f"/api/v1/models/{mid}/versions").status_code == 404
    assert bob.get(f"/api/v1/model-versions/{v['id']}").status_code == 404
    assert bob.get("/api/v1/model-versions/resolve", params={"ref": v["id"]}).status_code == 404
    assert bob.get("/api/v1/models").json()["total"] == 0
    assert bob.delete(f"/api/v1/models/{mid}").status_code == 404
    assert bob.delete(f"/api/v1/models/{mid}/versions/1").status_code == 404
    assert bob.put(f"/api/v1/models/{mid}/aliases/prod", json={"version": "1"}).status_code == 404
    assert bob.patch(f"/api/v1/models/{mid}", json={"is_public": True}).status_code == 404
    assert_envelope(bob.get("/model/aiApplication/getAiApplicationDetail", params={"aiApplicationId": mid}), 404)
    assert_envelope(bob.get("/model/aiApplicationVersion/getAiApplicationVersionList",
                            params={"aiApplicationId": mid}), 404)
    assert_envelope(bob.get("/model/aiApplicationVersion/getAiApplicationVersionDetail",
                            params={"aiApplicationVersionId": v["id"]}), 404)
    assert assert_envelope(bob.post("/model/aiApplication/getAiApplicationList", json={}))["total"] == 0
    # bob cannot import from alice's files either: paths are relative to his own root
    r = bob.post("/api/v1/models", json={"name": "steal", "path": f"../{alice.id}/Model/private"})
    assert r.status_code == 400
    # admin sees everything
    assert admin.get(f"/api/v1/models/{mid}").status_code == 200
    assert admin.get("/api/v1/models").json()["total"] == 1
    # made public: bob reads, lists and resolves it, but cannot change or delete it
    assert alice.patch(f"/api/v1/models/{mid}", json={"is_public": True}).json()["is_public"] is True
    assert bob.get("/api/v1/models/secret").status_code == 200
    assert bob.get("/api/v1/model-versions/resolve", params={"ref": "secret:1"}).json()["id"] == v["id"]
    assert bob.get("/api/v1/models").json()["total"] == 1
    assert bob.delete(f"/api/v1/models/{mid}").status_code == 403
    assert bob.delete(f"/api/v1/models/{mid}/versions/1").status_code == 403
    assert bob.put(f"/api/v1/models/{mid}/aliases/prod", json={"version": "1"}).status_code == 403
    assert bob.post(f"/api/v1/models/{mid}/versions/1/metrics", json={"metrics": {"x": 1}}).status_code == 403
    assert bob.post(f"/api/v1/models/{mid}/versions", json={"path": "Model"}).status_code == 403
    # bob's own model of the same name is what 'secret' means to bob from then on
    make_tiny_hf(user_dir(settings, bob, "Model/mine"))
    bv = import_native(bob, "secret", "Model/mine")
    assert bob.get("/api/v1/model-versions/resolve", params={"ref": "secret"}).json()["id"] == bv["id"]
    assert alice.get("/api/v1/model-versions/resolve", params={"ref": "secret"}).json()["id"] == v["id"]
    assert admin.get("/api/v1/model-versions/resolve", params={"ref": "bob/secret"}).json()["id"] == bv["id"]


# --- aliases, metrics, deletes ------------------------------------------------------------------------

def test_aliases_move_and_resolve(alice, settings):
    make_tiny_hf(user_dir(settings, alice, "Model/a"))
    make_tiny_hf(user_dir(settings, alice, "Model/b"), seed=1)
    v1 = import_native(alice, "m", "Model/a")
    v2 = wait_version(alice, alice.post("/api/v1/models/m/versions", json={"path": "Model/b"}).json()["id"])
    r = alice.put("/api/v1/models/m/aliases/production", json={"version": "1"})
    assert r.status_code == 200 and r.json()["version_id"] == v1["id"]

    def resolve(ref):
        return alice.get("/api/v1/model-versions/resolve", params={"ref": ref}).json()["id"]

    assert resolve("m:production") == v1["id"]
    assert resolve("m") == v2["id"] and resolve("m:latest") == v2["id"] and resolve("m:1") == v1["id"]
    assert resolve(v1["id"]) == v1["id"] and resolve(f"{v1['model_id']}:2") == v2["id"]
    assert alice.get("/api/v1/models/m/versions/production").json()["id"] == v1["id"]
    # the alias moves
    assert alice.put("/api/v1/models/m/aliases/production", json={"version": v2["id"]}).json()["version"] == "2"
    assert resolve("m:production") == v2["id"]
    assert alice.get("/api/v1/models/m").json()["aliases"][0]["version"] == "2"
    assert alice.get("/api/v1/models/m/versions/2").json()["aliases"] == ["production"]
    # invalid aliases
    assert alice.put("/api/v1/models/m/aliases/latest", json={"version": "1"}).status_code == 400
    assert alice.put("/api/v1/models/m/aliases/1", json={"version": "2"}).status_code == 400
    assert alice.put("/api/v1/models/m/aliases/x", json={"version": "9"}).status_code == 404
    # a version an alias points to cannot be deleted; once the alias is gone it can
    r = alice.delete("/api/v1/models/m/versions/2")
    assert r.status_code == 409 and "production" in r.json()["error"]["message"]
    assert alice.delete("/api/v1/models/m/versions/1").status_code == 204
    assert alice.delete("/api/v1/models/m/aliases/production").status_code == 204
    assert alice.delete("/api/v1/models/m/versions/2").status_code == 204
    assert alice.get("/api/v1/model-versions/resolve", params={"ref": "m"}).status_code == 404


def test_metrics_are_appended(alice, settings):
    make_tiny_hf(user_dir(settings, alice, "Model/a"))
    v = import_native(alice, "m", "Model/a")
    r = alice.post("/api/v1/models/m/versions/1/metrics", json={"metrics": {"bleu": 20.5, "rouge_l": 0.4}, "step": 1})
    assert r.status_code == 201 and len(r.json()) == 2
    alice.post("/api/v1/models/m/versions/1/metrics", json={"items": [{"name": "bleu", "value": 22, "step": 2}]})
    rows = alice.get("/api/v1/models/m/versions/1/metrics").json()
    assert [(x["name"], x["value"], x["step"]) for x in rows] == [("bleu", 20.5, 1), ("rouge_l", 0.4, 1),
                                                                 ("bleu", 22.0, 2)]
    assert alice.get("/api/v1/models/m/versions/1/metrics", params={"name": "bleu"}).json()[-1]["value"] == 22
    assert alice.get(f"/api/v1/model-versions/{v['id']}").json()["metrics"] == {"bleu": 22.0, "rouge_l": 0.4}
    seed = assert_envelope(alice.get("/model/aiApplicationVersion/getAiApplicationVersionDetail",
                                     params={"aiApplicationVersionId": v["id"]}))
    assert json.loads(seed["metrics"]) == {"bleu": 22.0, "rouge_l": 0.4}
    assert alice.post("/api/v1/models/m/versions/1/metrics", json={}).status_code == 400


def test_delete_refused_while_something_uses_the_version(alice, settings, app_client):
    from modelyard.server.services.common import references

    make_tiny_hf(user_dir(settings, alice, "Model/a"))
    v = import_native(alice, "m", "Model/a")

    def job_uses(session, version_id):
        return "job j1 (running)" if version_id == v["id"] else None

    references.checker("model_version")(job_uses)
    try:
        r = alice.delete("/api/v1/models/m/versions/1")
        assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
        assert r.json()["error"]["details"]["used_by"] == ["job j1 (running)"]
        assert alice.delete("/api/v1/models/m").status_code == 409
        assert Path(v["path"]).is_dir()
        assert alice.get("/api/v1/models/m").json()["versions_count"] == 1
    finally:
        references.remove_checker("model_version", job_uses)
    assert alice.delete("/api/v1/models/m").status_code == 204
    assert not Path(v["path"]).exists()
    assert alice.get("/api/v1/models/m").status_code == 404


# --- the service contract (jobs, restart) ------------------------------------------------------------

def test_register_version_contract(alice, settings, app_client):
    from modelyard.core.errors import Unprocessable
    from modelyard.server.auth import Principal
    from modelyard.server.db import session_scope
    from modelyard.server.orm.models import ModelVersionMetricModel
    from modelyard.server.services import models as svc

    ctx = app_client.app.state.ctx
    make_tiny_hf(user_dir(settings, alice, "Model/base"))
    base = import_native(alice, "base", "Model/base")
    job_out = settings.jobs_dir / "j1" / "output"
    n_lora = make_tiny_adapter(Path(base["path"]), job_out)
    job_id = "a" * 32
    with session_scope(ctx.sessions) as s:
        v = svc.register_version(s, settings, owner_id=alice.id, model_name="base-ft", source_dir=job_out,
                                 job_id=job_id, base_version_id=base["id"], dataset_version_id="d" * 32,
                                 hyperparameters={"learning_rate": 1e-4, "lora_r": 4},
                                 metrics={"train_loss": 1.5, "eval_loss": 1.7})
        assert v.status == "done" and v.format == "peft" and v.parameters == n_lora
        vid, path = v.id, Path(v.path)
    assert job_out.is_dir()  # copied, not moved
    got = alice.get(f"/api/v1/model-versions/{vid}").json()
    assert got["job_id"] == job_id and got["base_version_id"] == base["id"] and got["dataset_version_id"] == "d" * 32
    assert got["hyperparameters"] == {"learning_rate": 1e-4, "lora_r": 4} and got["source"] == 1
    assert got["metrics"] == {"train_loss": 1.5, "eval_loss": 1.7} and got["version"] == "1"
    with session_scope(ctx.sessions, readonly=True) as s:
        alice_p = Principal(alice.id, "alice", "user")
        assert svc.resolve_model_version(s, alice_p, "base-ft").id == vid
        assert svc.resolve_model_version(s, alice_p, "base-ft:1").path == str(path)
        assert s.query(ModelVersionMetricModel).filter_by(version_id=vid).count() == 2
        bob_like = Principal("b" * 32, "nobody", "user")
        with pytest.raises(Exception) as exc:
            svc.resolve_model_version(s, bob_like, vid)
        assert getattr(exc.value, "status", None) == 404
    # a second registration numbers itself; full weights register as hf
    with session_scope(ctx.sessions) as s:
        v2 = svc.register_version(s, settings, owner_id=alice.id, model_name="base-ft", source_dir=Path(base["path"]))
        assert (v2.version, v2.format) == ("2", "hf")
    # a broken directory registers nothing
    broken = settings.jobs_dir / "j2" / "output"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text("{}")
    with session_scope(ctx.sessions) as s, pytest.raises(Unprocessable):
        svc.register_version(s, settings, owner_id=alice.id, model_name="base-ft", source_dir=broken)
    assert len(alice.get("/api/v1/models/base-ft/versions").json()) == 2
    assert not list((settings.registry_dir / ".staging").glob("*"))


def test_interrupted_imports_are_marked_failed_on_start(alice, settings, app_client):
    from modelyard.server.db import session_scope
    from modelyard.server.orm.models import ModelVersionModel
    from modelyard.server.services import models as svc

    ctx = app_client.app.state.ctx
    make_tiny_hf(user_dir(settings, alice, "Model/a"))
    v = import_native(alice, "m", "Model/a")
    with session_scope(ctx.sessions) as s:
        stuck = ModelVersionModel(model_id=v["model_id"], owner_id=alice.id, version="9", status="importing",
                                  path=str(settings.registry_dir / v["model_id"] / "partial"))
        s.add(stuck)
        s.flush()
        stuck_id = stuck.id
    Path(settings.registry_dir / v["model_id"] / "partial").mkdir(parents=True)
    assert svc.reconcile_interrupted(ctx.sessions, settings) == 1
    got = alice.get(f"/api/v1/model-versions/{stuck_id}").json()
    assert got["status"] == "failed" and got["status_reason"].startswith("interrupted")
    assert not (settings.registry_dir / v["model_id"] / "partial").exists()
    assert alice.get(f"/api/v1/model-versions/{v['id']}").json()["status"] == "done"
    # the reconcile is a background component started with the app
    from modelyard.server import background

    assert "modelyard.server.services.models:reconcile_component" in background.COMPONENTS


def test_registry_on_both_databases(any_db_make_user, any_db_settings):
    alice = any_db_make_user("alice")
    n = make_tiny_hf(user_dir(any_db_settings, alice, "Model/a"))
    v = import_native(alice, "m", "Model/a")
    assert v["status"] == "done" and v["parameters"] == n
    assert alice.put("/api/v1/models/m/aliases/production", json={"version": "1"}).status_code == 200
    assert alice.post("/api/v1/models/m/versions/1/metrics", json={"metrics": {"acc": 0.5}}).status_code == 201
    data = assert_envelope(alice.post("/model/aiApplication/getAiApplicationList",
                                      json={"pageNum": 1, "pageSize": 5, "queryInfo": {"name": "m"}}))
    assert data["total"] == 1 and data["list"][0]["aiApplicationVersionsCount"] == 1
    assert alice.get("/api/v1/models", params={"page_size": 1}).json()["total"] == 1
    assert alice.delete("/api/v1/models/m/versions/1").status_code == 409
    assert alice.delete("/api/v1/models/m").status_code == 204


def test_seed_custom_image_version_needs_no_files(alice):
    body = seed_body(alice.id, source=2, image="registry.local/team/llm-server:1.0", imageType=1, savePath="")
    data = assert_envelope(alice.post("/model/aiApplication/createAiApplication", json=body))
    [ver] = data["aiApplicationVersionList"]
    assert ver["source"] == 2 and ver["status"] == 2 and ver["image"] == "registry.local/team/llm-server:1.0"
    assert ver["imageType"] == 1 and ver["format"] == "image" and ver["size"] == 0
    r = alice.post("/model/aiApplication/createAiApplication", json=seed_body(alice.id, source=2, savePath="",
                                                                               version="0.0.2"))
    assert_envelope(r, 400)
    assert r.json()["reason"] == "image_required"
