"""Hyperparameter search bodies (/api/v1/searches)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import UTCDateTime


class ParamSpace(BaseModel):
    """One dimension: float / int (low, high, log, step) or categorical (choices)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="a hyperparameter name (GET /jobs/hyperparameters)")
    type: str | None = Field(None, description="float | int | categorical (default: categorical when choices "
                                               "are given, else the hyperparameter's own type)")
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None


class SearchCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=100)
    description: str = Field("", max_length=1024)
    base: dict[str, Any] = Field(description="the job every trial starts from: a POST /jobs body (kind finetune or "
                                             "pretrain, model, dataset or input_dir, strategy, hyperparameters, roles)")
    space: list[ParamSpace] | dict[str, Any] = Field(description="the dimensions searched; a dict maps a name to "
                                                                "{type, low, high, log, step} or to a list of choices")
    algorithm: str = Field("tpe", description="random | grid | tpe | bayes_opt | anneal (seed names *_search accepted)")
    algorithm_params: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="tpe: gamma, n_initial_points, seed; bayes_opt: kind, kappa, xi, n_initial_points, seed; "
                          "anneal: avg_best_idx, shrink_coef, seed; num_samples = default max_trials")
    metric: str | None = Field(None, max_length=64, description="objective: eval_loss (the default when the data has "
                                                                "a validate split; refused without one), train_loss (the "
                                                                "run's mean training loss; the default otherwise) or "
                                                                "tokens_per_s")
    direction: str = Field("minimize", description="minimize | maximize")
    max_trials: int | None = Field(None, ge=1, le=1000)
    parallel_trials: int = Field(1, ge=1, le=64, description="upper bound; also bounded by your remaining quota")
    early_stopping: bool | dict[str, Any] | None = Field(
        None, description="MedianPruner on intermediate values: {enabled, n_startup_trials, n_warmup_steps, "
                          "interval_steps} (default enabled, 3, 0, 1)")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)

    @model_validator(mode="before")
    @classmethod
    def _objective(cls, data: Any) -> Any:
        # also accept {"objective": {"metric", "direction"}} and the seed's "job" for the base
        if isinstance(data, dict):
            data = dict(data)
            obj = data.pop("objective", None)
            if isinstance(obj, dict):
                data.setdefault("metric", obj.get("metric"))
                if obj.get("direction"):
                    data.setdefault("direction", obj["direction"])
            if "job" in data and "base" not in data:
                data["base"] = data.pop("job")
            if isinstance(data.get("space"), list):
                data["space"] = [dict(p, choices=p.pop("values")) if isinstance(p, dict) and "values" in p else p
                                 for p in data["space"]]
        return data

    def space_list(self) -> list[dict[str, Any]] | dict[str, Any]:
        if isinstance(self.space, dict):
            return self.space
        return [p.model_dump(exclude_none=True) for p in self.space]


class SearchObjective(BaseModel):
    metric: str
    direction: str


class SearchResponse(BaseModel):
    id: str
    name: str
    description: str
    owner_id: str
    state: str
    algorithm: str
    algorithm_params: dict[str, Any]
    sampler: str
    objective: SearchObjective
    space: list[dict[str, Any]]
    max_trials: int
    parallel_trials: int
    parallel_bound: int | None
    early_stopping: dict[str, Any]
    seed: int
    best_trial_id: str | None
    best_value: float | None
    best_model_version_id: str | None
    note: str
    error: str | None
    trials: dict[str, int] = Field(description="trial counts by state")
    created_at: UTCDateTime
    updated_at: UTCDateTime
    finished_at: UTCDateTime | None


class TrialResponse(BaseModel):
    id: str
    number: int
    state: str = Field(description="running | complete | pruned | failed | cancelled")
    params: dict[str, Any]
    value: float | None
    job_id: str | None
    job_state: str | None
    model_version_id: str | None
    last_step: int | None
    last_intermediate: float | None
    intermediate: dict[str, float]
    message: str
    is_best: bool
    created_at: UTCDateTime
    finished_at: UTCDateTime | None


class BestTrial(BaseModel):
    trial_id: str
    number: int
    params: dict[str, Any]
    value: float | None
    job_id: str | None
    model_version_id: str | None


class SearchDetail(SearchResponse):
    base: dict[str, Any]
    trials_detail: list[TrialResponse]
    best: BestTrial | None
