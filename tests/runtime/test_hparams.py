"""runtime.hparams.validate: the seed's config.json lists, typing, defaults and refusals."""

from __future__ import annotations

import pytest

from modelyard.core.errors import BadRequest
from modelyard.runtime import hparams as H

SEED_LORA = {
    "commonHyperParameters": [
        {"description": "学习率", "name": "learning_rate", "value": "1e-4"},
        {"description": "训练批次", "name": "per_device_train_batch_size", "value": "1"},
        {"description": "训练轮数", "name": "num_train_epochs", "value": "1"},
        {"description": "checkPoint必选参数,保存策略", "name": "save_strategy", "value": "steps"},
        {"description": "checkPoint必选参数,保存步数", "name": "save_steps", "value": "200"},
    ],
    "fineTuneHyperParameters": [
        {"description": "LoRA微调的缩放系数", "name": "lora_alpha", "value": "16"},
        {"description": "LoRA微调的秩大小", "name": "lora_r", "value": "8"},
        {"description": "LoRA微调的dropout系数", "name": "lora_dropout", "value": "0.05"},
    ],
    "fineTuneStrategy": "LoRA",
}


def test_seed_config_is_typed_and_merged_with_defaults():
    hp = H.validate(SEED_LORA["fineTuneStrategy"], SEED_LORA["commonHyperParameters"],
                    SEED_LORA["fineTuneHyperParameters"], False)
    assert hp["learning_rate"] == 1e-4 and isinstance(hp["learning_rate"], float)
    assert hp["per_device_train_batch_size"] == 1 and isinstance(hp["per_device_train_batch_size"], int)
    assert hp["save_strategy"] == "steps" and hp["save_steps"] == 200
    assert hp["lora_r"] == 8 and isinstance(hp["lora_r"], int)
    assert hp["lora_alpha"] == 16.0 and hp["lora_dropout"] == 0.05
    assert hp["lr_scheduler_type"] == "linear" and hp["max_steps"] == -1  # defaults filled in
    # idempotent: the runtime re-validates the typed values of the spec
    assert H.validate("LoRA", hp, None, False) == hp
    parts = H.split(hp)
    assert parts["lora"]["r"] == 8 and parts["args"]["learning_rate"] == 1e-4
    assert "lora_r" not in parts["args"] and parts["data"]["max_seq_length"] == 1024


def test_dict_form_aliases_and_strings():
    hp = H.validate("lora", {"evaluation_strategy": "STEPS", "cutoff_len": "256", "target_modules": "q_proj, v_proj",
                             "bf16": "true", "warmup_ratio": "0.1", "max_steps": "1e2"}, {}, False)
    assert hp["eval_strategy"] == "steps" and hp["max_seq_length"] == 256
    assert hp["lora_target"] == ["q_proj", "v_proj"] and hp["bf16"] is True
    assert hp["warmup_steps"] == 0.1 and "warmup_ratio" not in hp and hp["max_steps"] == 100
    # the seed's request example carries an empty placeholder entry: ignored
    assert H.validate("LoRA", [{"name": "", "value": "", "description": ""}], None, False)["lora_r"] == 8


@pytest.mark.parametrize("common,finetune,strategy,pretrain,offender", [
    ([{"name": "lora_r", "value": "-1"}], None, "LoRA", False, "lora_r"),
    (None, [{"name": "lora_r", "value": "-1"}], "LoRA", False, "lora_r"),
    ([{"name": "learning_rate", "value": "abc"}], None, "LoRA", False, "learning_rate"),
    ([{"name": "save_strategy", "value": "weekly"}], None, "FineTune", False, "save_strategy"),
    ([{"name": "no_such_thing", "value": "1"}], None, "LoRA", False, "no_such_thing"),
    ([{"name": "per_device_train_batch_size", "value": "1.5"}], None, "LoRA", False, "per_device_train_batch_size"),
    ([{"name": "lora_dropout", "value": "1"}], None, "LoRA", False, "lora_dropout"),
    ([{"name": "learning_rate", "value": "nan"}], None, "LoRA", False, "learning_rate"),
    ([{"name": "max_steps", "value": "0"}], None, "LoRA", False, "max_steps"),
    (None, [{"name": "lora_alpha", "value": "16"}], "FineTune", False, "lora_alpha"),  # LoRA name, full FT
    (None, [{"name": "lora_r", "value": "8"}], "LoRA", True, "lora_r"),  # LoRA name, pre-training
    ([{"name": "from_scratch", "value": "true"}], None, "LoRA", False, "from_scratch"),  # pre-training only
    ([{"name": "bf16", "value": "maybe"}], None, "LoRA", False, "bf16"),
    ([{"name": "lora_target", "value": "q_proj;rm -rf"}], None, "LoRA", False, "lora_target"),
])
def test_refusals_name_the_offender_and_list_valid_names(common, finetune, strategy, pretrain, offender):
    with pytest.raises(BadRequest) as ei:
        H.validate(strategy, common, finetune, pretrain)
    err = ei.value
    assert err.code == "invalid_hyperparameter" and err.status == 400
    assert offender in err.message
    valid = err.details["valid"]
    assert valid == sorted(valid) and "learning_rate" in valid and "learning_rate" in err.message
    assert ("lora_r" in valid) == (strategy == "LoRA" and not pretrain)
    assert err.details["name"] == offender


def test_other_refusals():
    with pytest.raises(BadRequest) as ei:
        H.validate("LoRA", {"bf16": "1", "fp16": "1"}, None, False)
    assert ei.value.code == "invalid_hyperparameter"
    with pytest.raises(BadRequest) as ei:
        H.validate("QLoRA-9000", None, None, False)
    assert ei.value.code == "invalid_strategy"
    with pytest.raises(BadRequest):
        H.validate("LoRA", "not json", None, False)
    with pytest.raises(BadRequest):
        H.validate("LoRA", [{"value": "1"}], None, False)


def test_pretrain_and_finetune_tables():
    pre = H.validate("LoRA", {"from_scratch": "1"}, None, True)  # pre-training is full training
    assert pre["from_scratch"] is True and not any(k.startswith("lora_") for k in pre)
    full = H.validate("FineTune", {"learning_rate": "2e-5"}, None, False)
    assert not any(k.startswith("lora_") for k in full)
    names = {d["name"] for d in H.describe("LoRA")}
    assert {"lora_r", "lora_alpha", "lora_dropout", "learning_rate", "save_steps"} <= names
