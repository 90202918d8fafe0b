"""Hyperparameter searches (seed 002 ModelArts: bayes_opt, tpe, anneal; plus random and grid).

A search = a base job (a JobSubmit body) + a space (float / int / categorical, optionally log
scale) + an algorithm + an objective metric and direction + max trials + parallel trials + early
stopping. Every trial is a real job submitted through services.jobs.submit_job with the trial's
hyperparameters merged into the base; its output is registered as a model version like any
training job's (as versions of one model named after the search), and the best trial's version is
recorded on the search.

Optuna does the thinking. Its state is kept in our tables (orm/searches.py explains why) and an
in-memory study is rebuilt from them at every driver step:

    step(search):  ingest finished trial jobs  -> complete (objective value) / failed / cancelled
                   running trial jobs           -> intermediate values from job_metrics; the
                                                   pruner (MedianPruner) may stop them (job cancelled)
                   free parallel slots          -> study.ask() + submit_job, same transaction
                   all trials done              -> best trial, search succeeded / failed

The driver runs as a background component (SearchDriver, woken by every job state change) and
once synchronously at create, so a search whose first trial cannot be submitted is refused with
that error and nothing is left behind.

Algorithms -> samplers:
    random    RandomSampler
    grid      GridSampler (every parameter needs `values`, or an int range / a float step)
    tpe       TPESampler (gamma, n_initial_points -> n_startup_trials, constant liar for parallel trials)
    bayes_opt Optuna's GPSampler when scipy is installed; otherwise GPUCBSampler below, a small
              Gaussian-process sampler (RBF kernel, UCB / EI / PI acquisition with the seed's kind,
              kappa, xi) in numpy
    anneal    AnnealSampler below: hyperopt's annealing (pick one of the best trials, geometric in
              avg_best_idx, and sample around it in a window that shrinks as 1 / (1 + t * shrink_coef))

Code: services/searches_samplers.py (samplers, pruner, request validation), services/searches_driver.py
(trial jobs, the driver step, the background component); both re-exported here.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, ModelyardError
from modelyard.runtime import hparams as H
from modelyard.server.auth import Principal
from modelyard.server.db import advisory_lock, paginate
from modelyard.server.orm.jobs import JobModel
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.schemas.jobs import JobSubmit
from modelyard.server.services import events, jobs
from modelyard.server.services.common import access
from modelyard.server.services.common.filters import enum_filter
from modelyard.server.services.common.refs import resolve_owned_ref, resolve_ref
from modelyard.server.services.searches.driver import (
    _stop,
    _trials,
    step_search,
)
from modelyard.server.services.searches.samplers import (
    ALGO_DEFAULTS,
    ALGO_DESCRIPTIONS,
    ALGORITHMS,
    EARLY_STOPPING_DEFAULTS,
    grid_size,
    make_sampler,
    normalize_algorithm,
    normalize_algorithm_params,
    normalize_space,
)

log = logging.getLogger(__name__)

# --- API-facing operations --------------------------------------------------------------------------

def create_search(session: Session, ctx: Any, *, principal: Principal, req) -> SearchModel:
    """Validate, record and start a search (its first trials are submitted in this transaction)."""
    base = dict(req.base or {})
    base.pop("search_id", None)
    base.pop("resume", None)
    try:
        base_req = JobSubmit.model_validate(base)
    except Exception as exc:
        raise BadRequest(f"base is not a valid job: {exc}", code="invalid_search") from None
    if base_req.kind not in ("finetune", "pretrain"):
        raise BadRequest("a search needs a training job (kind finetune or pretrain) as its base", code="invalid_search")
    is_pretrain = base_req.kind == "pretrain"
    strategy = H.normalize_strategy(base_req.strategy or (base_req.config or {}).get("fineTuneStrategy"), is_pretrain)
    algorithm = normalize_algorithm(req.algorithm)
    aparams = normalize_algorithm_params(algorithm, req.algorithm_params)
    space_raw = req.space_list() if hasattr(req, "space_list") else req.space
    space = normalize_space(space_raw, strategy=strategy, is_pretrain=is_pretrain)
    direction = (req.direction or "minimize").lower()
    if direction in ("min", "minimise"):
        direction = "minimize"
    if direction in ("max", "maximise"):
        direction = "maximize"
    if direction not in ("minimize", "maximize"):
        raise BadRequest("direction must be minimize or maximize", code="invalid_search")
    metric = (req.metric or "").strip()
    metric = {"loss": "train_loss", "training_loss": "train_loss", "val_loss": "eval_loss"}.get(metric, metric)
    if metric and metric not in OBJECTIVES:
        raise BadRequest(f"objective metric {metric!r} is not one the trainer reports; use one of "
                         f"{', '.join(OBJECTIVES)}", code="invalid_objective", details={"valid": list(OBJECTIVES)})
    has_validation = _submit_probe_data(session, ctx, principal, base_req)
    if metric == "eval_loss" and not has_validation:
        raise BadRequest("objective eval_loss needs validation data, and the base job's data has no validate "
                         "split; add one (Data/validate or a dataset with a validate split) or use train_loss",
                         code="objective_unavailable")
    max_trials = req.max_trials or int(aparams.get("num_samples") or 10)
    if algorithm == "grid":
        n = grid_size(space)
        max_trials = min(max_trials, n) if req.max_trials else n
    early = {**EARLY_STOPPING_DEFAULTS}
    if isinstance(req.early_stopping, bool):
        early["enabled"] = req.early_stopping
    elif req.early_stopping:
        unknown = set(req.early_stopping) - set(EARLY_STOPPING_DEFAULTS)
        if unknown:
            raise BadRequest(f"early_stopping has no {sorted(unknown)} (valid: {sorted(EARLY_STOPPING_DEFAULTS)})",
                             code="invalid_search")
        early.update(req.early_stopping)
        for k in ("n_startup_trials", "n_warmup_steps", "interval_steps"):
            if int(early[k]) < (1 if k == "interval_steps" else 0):
                raise BadRequest(f"early_stopping.{k} is out of range", code="invalid_search")
    base["strategy"] = strategy if not is_pretrain else base.get("strategy")
    seed = req.seed if req.seed is not None else int(aparams.get("seed", 1))
    sampler_desc = make_sampler(algorithm, aparams, space, seed=seed)[1]
    search = SearchModel(owner_id=principal.id, name=req.name or f"search-{algorithm}", description=req.description,
                         state="running", algorithm=algorithm, algorithm_params=aparams, sampler=sampler_desc,
                         objective_metric=metric or ("eval_loss" if has_validation else "train_loss"),
                         direction=direction, space=space, base=base,
                         max_trials=max_trials, parallel_trials=req.parallel_trials, early_stopping=early, seed=seed)
    session.add(search)
    session.flush()
    events.record(session, actor_id=principal.id, kind="search.created", object_type="search", object_id=search.id,
                  message=f"{algorithm} search {search.name}: {max_trials} trials, {req.parallel_trials} parallel",
                  data={"algorithm": algorithm, "space": space, "max_trials": max_trials})
    step_search(session, ctx, search)  # the first trials, or the error that refuses the search
    return search


# what a trial's result can report (modelyard_result.json metrics), with what it needs
OBJECTIVES = {"train_loss": "the run's mean training loss (always reported)",
              "eval_loss": "the loss on the validate split (needs validation data)",
              "tokens_per_s": "training throughput (maximize it)"}


def _submit_probe_data(session: Session, ctx: Any, principal: Principal, req) -> bool:
    """Whether the base job's data has a validate split (read-only)."""
    try:
        _dv, data = jobs.resolve_data(session, ctx.settings, principal, principal.id, input_type=req.input_type,
                                         dataset=req.dataset, input_dir=req.input_dir, required=True)
    except ModelyardError:
        return False  # the real submission reports it
    return bool(data and data.get("validate"))


def get_search(session: Session, principal: Principal, search_id: str) -> SearchModel:
    return resolve_ref(session, SearchModel, search_id, principal, what="search", newest=True)


def list_searches(session: Session, principal: Principal, *, states: list[str] | None = None, page: int = 1,
                  page_size: int = 20) -> tuple[list[SearchModel], int]:
    stmt = access.visible(select(SearchModel), SearchModel, principal)
    states = enum_filter(states, ("running", "succeeded", "failed", "cancelled"), what="state")
    if states:
        stmt = stmt.where(SearchModel.state.in_(states))
    return paginate(session, stmt.order_by(SearchModel.created_at.desc(), SearchModel.id.desc()),
                           page=page, page_size=page_size)


def cancel_search(session: Session, ctx: Any, *, principal: Principal, search_id: str) -> SearchModel:
    search = resolve_owned_ref(session, SearchModel, search_id, principal, what="search", newest=True)
    advisory_lock(session, f"search:{search.id}")
    session.refresh(search)
    if search.state != "running":
        raise Conflict(f"search {search.id} already {search.state}", code="search_finished")
    _stop(session, ctx, search, state="cancelled", reason="cancelled by user", actor=principal)
    return search


def delete_search(session: Session, ctx: Any, *, principal: Principal, search_ref: str) -> SearchModel:
    """Remove a finished search and its trial rows. Its trials' jobs stay (each deletable on its
    own); they simply no longer belong to a search. A running search is refused: cancel it first."""
    search = resolve_owned_ref(session, SearchModel, search_ref, principal, what="search", newest=True)
    advisory_lock(session, f"search:{search.id}")
    session.refresh(search)
    if search.state == "running":
        raise Conflict(f"search {search.name} ({search.id}) is running; cancel it first "
                       f"(POST /api/v1/searches/{search.id}/cancel)", code="search_running")
    for job in session.scalars(select(JobModel).where(JobModel.search_id == search.id)):
        job.search_id = None
    n = len(_trials(session, search.id))
    session.execute(delete(SearchTrialModel).where(SearchTrialModel.search_id == search.id))
    events.record(session, actor_id=principal.id, kind="search.deleted", object_type="search", object_id=search.id,
                  message=f"search {search.name} deleted ({n} trials; their jobs stay)",
                  data={"name": search.name, "trials": n})
    session.delete(search)
    session.flush()
    return search


def trial_counts(session: Session, search_ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {sid: {} for sid in search_ids}
    if not search_ids:
        return out
    for sid, state, n in session.execute(select(SearchTrialModel.search_id, SearchTrialModel.state, func.count())
                                         .where(SearchTrialModel.search_id.in_(search_ids))
                                         .group_by(SearchTrialModel.search_id, SearchTrialModel.state)):
        out[sid][state] = int(n)
    return out


def summary(search: SearchModel, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": search.id, "name": search.name, "description": search.description, "owner_id": search.owner_id,
        "state": search.state, "algorithm": search.algorithm, "algorithm_params": search.algorithm_params,
        "sampler": search.sampler, "objective": {"metric": search.objective_metric, "direction": search.direction},
        "space": search.space, "max_trials": search.max_trials, "parallel_trials": search.parallel_trials,
        "parallel_bound": search.parallel_bound, "early_stopping": search.early_stopping, "seed": search.seed,
        "best_trial_id": search.best_trial_id, "best_value": search.best_value,
        "best_model_version_id": search.best_model_version_id, "note": search.note, "error": search.error,
        "trials": dict(counts or {}), "created_at": search.created_at, "updated_at": search.updated_at,
        "finished_at": search.finished_at,
    }


def detail(session: Session, search: SearchModel) -> dict[str, Any]:
    trials = _trials(session, search.id)
    jobs_by_id = {j.id: j for j in session.scalars(select(JobModel).where(
        JobModel.id.in_([t.job_id for t in trials if t.job_id])))} if trials else {}
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    out = summary(search, counts)
    out["base"] = search.base
    rows = []
    for t in trials:
        job = jobs_by_id.get(t.job_id or "")
        inter = t.intermediate or {}
        last = max(inter, key=int) if inter else None
        rows.append({"id": t.id, "number": t.number, "state": t.state, "params": t.params, "value": t.value,
                     "job_id": t.job_id, "job_state": job.state if job else None,
                     "model_version_id": t.model_version_id, "last_step": int(last) if last else None,
                     "last_intermediate": inter[last] if last else None, "intermediate": inter,
                     "message": t.message, "is_best": t.id == search.best_trial_id,
                     "created_at": t.created_at, "finished_at": t.finished_at})
    out["trials_detail"] = rows
    best = next((t for t in trials if t.id == search.best_trial_id), None)
    out["best"] = None if best is None else {
        "trial_id": best.id, "number": best.number, "params": best.params, "value": best.value,
        "job_id": best.job_id, "model_version_id": best.model_version_id}
    return out


def algorithms() -> dict[str, Any]:
    """The seed's search-algorithm listing (search_algo_count / search_algo_list)."""
    def typ(v):
        return "Integer" if isinstance(v, int) else "Float" if isinstance(v, float) else "String"

    items = []
    for a in ALGORITHMS:
        params = [{"key": k, "value": str(v), "type": typ(v)} for k, v in ALGO_DEFAULTS[a].items()]
        items.append({"name": f"{a}_search" if a in ("bayes_opt", "tpe", "anneal") else a, "params": params,
                      "description": ALGO_DESCRIPTIONS[a]})
    return {"search_algo_count": len(items), "search_algo_list": items}
