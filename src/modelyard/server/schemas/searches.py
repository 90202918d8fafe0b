"""Hyperparameter search bodies (/api/v1/searches)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import UTCDateTime


class ParamSpace(BaseModel):
    """One dimension: float / int (low, high, log, step) or categorical (choices)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="a hyperparameter name (GET /jobs/hyperparameters)")
    type: str | None = Field(None, description="float | int | categorical (default: categorical when choices "
                                               "are given, else the hyperparameter's own type)")
    low: float | None = None
    """lower bound (float / int)"""
    high: float | None = None
    """upper bound (float / int)"""
    log: bool = False
    """sample on a log scale (e.g. learning rates)"""
    step: float | None = None
    """grid or quantisation step"""
    choices: list[Any] | None = None
    """the values of a categorical dimension"""


class SearchCreate(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    name: str | None = Field(None, max_length=100)
    """a name to find the search by; its trials' model is named after it"""
    description: str = Field("", max_length=1024)
    """free text shown with the search"""
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
    """how many trials in all (grid: at most the grid's size)"""
    parallel_trials: int = Field(1, ge=1, le=64, description="upper bound; also bounded by your remaining quota")
    early_stopping: bool | dict[str, Any] | None = Field(
        None, description="MedianPruner on intermediate values: {enabled, n_startup_trials, n_warmup_steps, "
                          "interval_steps} (default enabled, 3, 0, 1)")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    """the sampler's random seed, for a reproducible search"""

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
    model_config = ConfigDict(use_attribute_docstrings=True)

    metric: str
    """what the trials report and the search optimises: train_loss, eval_loss or tokens_per_s"""
    direction: str
    """minimize or maximize"""


class SearchResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the search's id (any unique prefix of 4+ also names it)"""
    name: str
    """the search's name"""
    description: str
    """free text given at creation"""
    owner_id: str
    """the user it belongs to"""
    state: str
    """running, succeeded, failed or cancelled"""
    algorithm: str
    """random, grid, tpe, bayes_opt or anneal"""
    algorithm_params: dict[str, Any]
    """the algorithm's parameters after defaults"""
    sampler: str
    """the sampler actually used"""
    objective: SearchObjective
    """the metric optimised and its direction"""
    space: list[dict[str, Any]]
    """the dimensions searched"""
    max_trials: int
    """how many trials in all"""
    parallel_trials: int
    """trials asked to run at once"""
    parallel_bound: int | None
    """trials allowed at once by your quota"""
    early_stopping: dict[str, Any]
    """the pruner's settings"""
    seed: int
    """the sampler's seed"""
    best_trial_id: str | None
    """the best trial so far"""
    best_value: float | None
    """its objective value"""
    best_model_version_id: str | None
    """the model version the best trial produced"""
    note: str
    """remarks, e.g. why parallelism is bounded"""
    error: str | None
    """why the search failed"""
    trials: dict[str, int] = Field(description="trial counts by state")
    created_at: UTCDateTime
    """when it was created (UTC)"""
    updated_at: UTCDateTime
    """when it last changed"""
    finished_at: UTCDateTime | None
    """when it ended"""


class TrialResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the trial's id"""
    number: int
    """0, 1, 2... in order of creation"""
    state: str = Field(description="running | complete | pruned | failed | cancelled")
    params: dict[str, Any]
    """the hyperparameters it tried"""
    value: float | None
    """its objective value, once complete"""
    job_id: str | None
    """the job that ran it (null once that job is deleted)"""
    job_state: str | None
    """that job's state"""
    model_version_id: str | None
    """the model version it produced"""
    last_step: int | None
    """the last step with an intermediate value"""
    last_intermediate: float | None
    """the objective at that step"""
    intermediate: dict[str, float]
    """objective by step, as the pruner saw it"""
    message: str
    """why it ended as it did"""
    is_best: bool
    """whether it is the best trial"""
    created_at: UTCDateTime
    """when it started"""
    finished_at: UTCDateTime | None
    """when it ended"""


class BestTrial(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    trial_id: str
    """the best trial's id"""
    number: int
    """its number"""
    params: dict[str, Any]
    """its hyperparameters"""
    value: float | None
    """its objective value"""
    job_id: str | None
    """the job that ran it"""
    model_version_id: str | None
    """the model version it produced"""


class SearchDetail(SearchResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    base: dict[str, Any]
    """the job every trial starts from"""
    trials_detail: list[TrialResponse]
    """every trial"""
    best: BestTrial | None
    """the best trial, once there is one"""
