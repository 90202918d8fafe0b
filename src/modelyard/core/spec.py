"""The server ↔ runtime contract of a training job: `TrainingSpec`, the job's `spec.json`.

The server builds it at submit (services/jobs: `TrainingSpec(...).model_dump()` is stored as the
job spec's `training` block and written to `<job dir>/spec.json`); the trainer
(`python -m modelyard.runtime.train`) reads the file named by $MODELYARD_SPEC with
`parse_training_spec`, which refuses a malformed spec with a message naming the field. Both sides
import this module only, so a field added here is added to both.

The rest of a replica's contract is its environment (set by services/jobs `replica_env`):
MODELYARD_JOB_ID, MODELYARD_OUTPUT_DIR, MODELYARD_CHECKPOINT_DIR, MODELYARD_METRICS_FILE, RANK,
WORLD_SIZE, MASTER_ADDR/PORT, ... A spec.json written by hand (the benchmarks) may leave the paths
named in ENV_FALLBACKS out; the trainer then takes them from those variables.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

SPEC_FILE = "spec.json"  # in the job's folder
SPEC_ENV = "MODELYARD_SPEC"  # the replica's env var naming it
# spec field -> env var that fills it when the spec leaves it out (spec values win)
ENV_FALLBACKS = {"output_dir": "MODELYARD_OUTPUT_DIR", "checkpoint_dir": "MODELYARD_CHECKPOINT_DIR",
                 "metrics_file": "MODELYARD_METRICS_FILE", "model_dir": "MODELYARD_MODEL_DIR",
                 "job_id": "MODELYARD_JOB_ID"}

NonEmptyPath = Annotated[str, StringConstraints(min_length=1)]


class SpecError(ValueError):
    """A spec that does not fit the contract; the message names the offending field(s)."""


class _Strict(BaseModel):
    # an unknown key is a typo or a version skew between server and runtime: refused, not ignored
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)


class TrainingData(_Strict):
    """The training files, already resolved by the server (absolute paths, read with core.formats)."""

    shape: Literal["alpaca", "chat", "text"] | None = None  # None: text for pre-training, chat otherwise
    train: list[str] = Field(default_factory=list)  # the trainer refuses an empty list with its own message
    # "validate" in spec.json (the attribute name would shadow BaseModel.validate)
    validation: list[str] = Field(default_factory=list, alias="validate")


class TrainingSpec(_Strict):
    """What `python -m modelyard.runtime.train` trains: every field the trainer reads."""

    job_id: str | None = None
    kind: Literal["finetune", "pretrain"] = "finetune"
    # LoRA / QLoRA / FineTune ...; normalized (and refused if unknown) by runtime.hparams
    strategy: str | None = None
    model_dir: NonEmptyPath  # the base model (Hugging Face folder) or a PEFT adapter
    model_format: Literal["hf", "peft"] = "hf"
    base_model_dir: str | None = None  # a PEFT adapter's base model
    data: TrainingData = Field(default_factory=TrainingData)
    # typed and merged with defaults by the server (runtime.hparams.validate); validated again by
    # the trainer against the same table
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    output_dir: NonEmptyPath  # the output model and modelyard_result.json / modelyard_error.json
    checkpoint_dir: NonEmptyPath  # checkpoint-<step> folders; `resume` continues from the newest
    metrics_file: str | None = None  # JSON lines: loss, learning rate, grad norm, tokens/s, eval loss
    resume: bool = False
    # set by the platform, they win over the hyperparameters' values; None: the hyperparameters decide
    packing: bool | None = None
    max_seq_length: int | None = Field(default=None, gt=0)


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(the whole spec)"


def parse_training_spec(raw: Any, source: str = SPEC_FILE) -> TrainingSpec:
    """A TrainingSpec from spec.json's decoded content; SpecError naming every bad field."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source} must hold a JSON object, got {type(raw).__name__}")
    try:
        return TrainingSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise SpecError(f"{source} is malformed: {problems}") from None


__all__ = ["ENV_FALLBACKS", "SPEC_ENV", "SPEC_FILE", "SpecError", "TrainingData", "TrainingSpec",
           "parse_training_spec"]
