"""Hyperparameter searches: the driver. Submitting trial jobs, rebuilding the Optuna study from
our tables, the reconcile step (ingest finished trials, prune, ask for new ones, finish) and the
background component (SearchDriver). Described in services/searches.py, which re-exports it."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, ModelyardError, NotFound
from modelyard.core.hparams import hparam_dict
from modelyard.runtime import hparams as H
from modelyard.server.auth import Principal
from modelyard.server.db import advisory_lock, session_scope
from modelyard.server.orm import UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobMetricModel, JobModel
from modelyard.server.orm.models import ModelVersionModel
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.schemas.jobs import JobSubmit
from modelyard.server.services import events, jobs, models
from modelyard.server.services.common.loops import WakeableLoop
from modelyard.server.services.quota import ledger
from modelyard.server.services.searches.samplers import _optuna, grid_size, make_pruner, make_sampler
from modelyard.server.services.searches.states import move_search, move_trial

log = logging.getLogger("modelyard.server.services.searches")  # the name it always logged under

# objective name -> the key in the trainer's result metrics (modelyard_result.json)
RESULT_KEYS = {"loss": "train_loss", "train_loss": "train_loss", "eval_loss": "eval_loss",
               "tokens_per_s": "tokens_per_s"}
# objective name -> the series in job_metrics that carries its intermediate values
SERIES = {"train_loss": "loss"}


# --- the trials' jobs ------------------------------------------------------------------------------

def _principal(session: Session, user_id: str) -> Principal:
    user = session.get(UserModel, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return Principal(user.id, user.name, user.role)


def _block(value: Any) -> dict[str, Any]:
    return hparam_dict(value, "hyperparameters")


def trial_body(search: SearchModel, params: dict[str, Any], number: int) -> dict[str, Any]:
    """The JobSubmit body of a trial: the base with the trial's hyperparameters put in."""
    body = dict(search.base)
    common = _block(body.get("common_hyperparameters"))
    finetune = _block(body.get("finetune_hyperparameters"))
    for name, value in params.items():
        hp = H.BY_NAME[name]
        names = {hp.name, *hp.aliases}
        for blk in (common, finetune):
            for k in [k for k in blk if k in names]:
                del blk[k]
        (finetune if hp.lora_only else common)[name] = value
    body["common_hyperparameters"] = common
    body["finetune_hyperparameters"] = finetune
    body["name"] = f"{search.name}-trial-{number}"[:128]
    body["search_id"] = search.id
    body.setdefault("output_model_name", search.name)
    body["description"] = (f"trial {number} of search {search.name} ({search.id}): "
                           + ", ".join(f"{k}={v}" for k, v in params.items()))[:1024]
    return body


def _submit_trial(session: Session, ctx: Any, search: SearchModel, params: dict[str, Any], number: int) -> JobModel:
    body = trial_body(search, params, number)
    try:
        req = JobSubmit.model_validate(body)
    except Exception as exc:  # pydantic.ValidationError
        raise BadRequest(f"search base job is invalid: {exc}", code="invalid_search") from None
    job = jobs.submit_job(session, ctx, principal=_principal(session, search.owner_id), req=req, origin="search")
    if search.objective_metric == "eval_loss" and not ((job.spec.get("training") or {}).get("data") or {}).get("validate"):
        # it would train, then report no eval_loss: refused before it runs (the transaction rolls back)
        raise BadRequest(f"trial {number} would have no validation data, so it could not report the objective "
                         "eval_loss", code="objective_unavailable")
    return job


def per_trial_parts(search: SearchModel):
    req = JobSubmit.model_validate({k: v for k, v in search.base.items() if k != "search_id"})
    return jobs.parts_for(jobs.normalize_roles(req.roles, req.kind))


def parallel_bound(session: Session, search: SearchModel, active_jobs: list[JobModel]) -> tuple[int, str]:
    """How many trials may be in flight: the requested parallelism, bounded by what the owner's
    remaining quota (job slots and resources, counting what this search's own running trials
    hold) can run at once. Never below 1, so a search always moves (its trial waits in the queue)."""
    per = ledger.Resources()
    for part in per_trial_parts(search):
        per = per + part.resources
    rem_res, rem_jobs = ledger.remaining(session, search.owner_id)
    holding = [j for j in active_jobs if j.state in ("starting", "running")]
    avail = rem_res
    for _ in holding:
        avail = avail + per
    slots = rem_jobs + len(holding)
    fit = slots
    for dim in ledger.DIMS:
        need = getattr(per, dim)
        if need > 0:
            fit = min(fit, int(math.floor(getattr(avail, dim) / need + 1e-9)))
    bound = max(1, min(search.parallel_trials, fit))
    why = "" if bound >= search.parallel_trials else (
        f"parallel trials limited to {bound} of {search.parallel_trials} by the remaining quota")
    return bound, why


# --- rebuilding the study ---------------------------------------------------------------------------

_OPTUNA_STATE = {"running": "RUNNING", "complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL",
                 "cancelled": "FAIL"}


def _frozen(trial: SearchTrialModel):
    optuna = _optuna()
    # optuna is imported on first use (about a second; only a running search needs it)
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState

    state = getattr(TrialState, _OPTUNA_STATE[trial.state])
    inter = {int(k): float(v) for k, v in (trial.intermediate or {}).items()}
    value = trial.value if state == TrialState.COMPLETE else None
    return optuna.trial.create_trial(
        state=state, value=value, params=dict(trial.params),
        distributions={k: json_to_distribution(v) for k, v in trial.distributions.items()},
        system_attrs=dict(trial.system_attrs or {}), intermediate_values=inter)


def build_study(search: SearchModel, trials: list[SearchTrialModel], *, with_sampler: bool = True):
    optuna = _optuna()
    # a fresh random stream at every step, still reproducible; the grid sampler's order of the grid
    # depends on its seed, so it keeps the search's
    seed = int(search.seed) + (0 if search.algorithm == "grid" else len(trials))
    sampler = make_sampler(search.algorithm, search.algorithm_params or {}, search.space, seed=seed)[0] \
        if with_sampler else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), sampler=sampler,
                                pruner=make_pruner(search.early_stopping or {}), direction=search.direction)
    for t in sorted(trials, key=lambda t: t.number):
        study.add_trial(_frozen(t))
    return study


def _suggest(trial, entry: dict[str, Any]):
    if entry["type"] == "categorical":
        return trial.suggest_categorical(entry["name"], entry["choices"])
    if entry["type"] == "int":
        return trial.suggest_int(entry["name"], entry["low"], entry["high"], step=entry.get("step") or 1,
                                 log=entry.get("log", False))
    return trial.suggest_float(entry["name"], entry["low"], entry["high"], step=entry.get("step"),
                               log=entry.get("log", False))


# --- the driver step ---------------------------------------------------------------------------------

def _trials(session: Session, search_id: str) -> list[SearchTrialModel]:
    return list(session.scalars(select(SearchTrialModel).where(SearchTrialModel.search_id == search_id)
                                .order_by(SearchTrialModel.number)))


def _series_name(metric: str) -> str:
    return SERIES.get(metric, metric)


def _objective_of(session: Session, search: SearchModel, job: JobModel) -> float | None:
    metrics = (job.result or {}).get("metrics") or {}
    key = RESULT_KEYS.get(search.objective_metric, search.objective_metric)
    v = metrics.get(key, metrics.get(search.objective_metric))
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    row = session.execute(select(JobMetricModel.value).where(
        JobMetricModel.job_id == job.id, JobMetricModel.name == _series_name(search.objective_metric),
        JobMetricModel.attempt == job.attempt).order_by(JobMetricModel.step.desc(), JobMetricModel.id.desc())
        .limit(1)).scalar()
    return float(row) if row is not None else None


def _intermediate(session: Session, search: SearchModel, job: JobModel) -> dict[str, float]:
    rows = session.execute(select(JobMetricModel.step, JobMetricModel.value).where(
        JobMetricModel.job_id == job.id, JobMetricModel.name == _series_name(search.objective_metric),
        JobMetricModel.attempt == job.attempt).order_by(JobMetricModel.id)).all()
    out: dict[str, float] = {}
    for step, value in rows:
        if math.isfinite(value):
            out[str(int(step))] = float(value)
    return out


def _finish_trial(session: Session, trial: SearchTrialModel, state: str, *, value: float | None = None,
                  message: str = "") -> None:
    move_trial(session, trial, state, reason=message, values={"value": value})


def step_search(session: Session, ctx: Any, search: SearchModel) -> bool:
    """One reconcile of a running search inside the caller's transaction. Returns True when
    something changed."""
    advisory_lock(session, f"search:{search.id}")
    session.refresh(search)
    if search.state != "running":
        return False
    changed = False
    trials = _trials(session, search.id)
    jobs_by_id = {j.id: j for j in session.scalars(select(JobModel).where(
        JobModel.id.in_([t.job_id for t in trials if t.job_id])))} if trials else {}
    owner = _principal(session, search.owner_id)

    # 1. trials whose job finished
    for t in trials:
        if t.state != "running":
            continue
        job = jobs_by_id.get(t.job_id or "")
        if job is None:
            _finish_trial(session, t, "failed", message="its job disappeared")
            changed = True
        elif job.state == "succeeded":
            value = _objective_of(session, search, job)
            t.model_version_id = job.output_model_version_id
            t.intermediate = {**(t.intermediate or {}), **_intermediate(session, search, job)}
            if value is None:
                _finish_trial(session, t, "failed", message=f"the job reported no {search.objective_metric}")
            else:
                _finish_trial(session, t, "complete", value=value)
            changed = True
        elif job.state in ("failed", "cancelled"):
            _finish_trial(session, t, "failed" if job.state == "failed" else "cancelled",
                          message=(job.error or job.state)[:1024])
            changed = True

    # 2. early stopping of running trials from their intermediate values
    early = search.early_stopping or {}
    running = [t for t in trials if t.state == "running" and jobs_by_id.get(t.job_id or "") is not None
               and jobs_by_id[t.job_id].state == "running"]
    if running:
        updated = []
        for t in running:
            inter = _intermediate(session, search, jobs_by_id[t.job_id])
            if inter and inter != (t.intermediate or {}):
                t.intermediate = inter
                updated.append(t)
        if updated and early.get("enabled", True):
            study = build_study(search, trials, with_sampler=False)
            by_number = {ft.number: ft for ft in study.get_trials(deepcopy=False)}
            for t in updated:
                ft = by_number.get(t.number)
                if ft is None or not ft.intermediate_values:
                    continue
                if study.pruner.prune(study, ft):
                    step = max(ft.intermediate_values)
                    try:
                        jobs.cancel_job(session, ctx, principal=owner, job_id=t.job_id,
                                        reason=f"pruned by search {search.name} at step {step}")
                    except Conflict:
                        pass  # it finished meanwhile; the next step ingests it
                    else:
                        _finish_trial(session, t, "pruned", value=None,
                                      message=f"pruned at step {step}: {search.objective_metric}="
                                              f"{ft.intermediate_values[step]:.5g} worse than the median")
                        events.record(session, actor_id=None, kind="search.trial_pruned", object_type="search",
                                      object_id=search.id, message=f"trial {t.number} pruned at step {step}",
                                      data={"trial": t.number, "job_id": t.job_id, "step": step})
            changed = changed or bool(updated)

    # 3. new trials up to the parallel bound
    n_total = len(trials)
    limit = search.max_trials
    if search.algorithm == "grid":
        limit = min(limit, grid_size(search.space))
    active = [t for t in trials if t.state == "running"]
    if search.cancel_requested_at is None and n_total < limit:
        active_jobs = [jobs_by_id[t.job_id] for t in active if t.job_id in jobs_by_id]
        bound, why = parallel_bound(session, search, active_jobs)
        if bound != search.parallel_bound:
            search.parallel_bound = bound
            search.note = why
        free = min(bound - len(active), limit - n_total)
        if free > 0:
            from optuna.distributions import distribution_to_json  # optuna on first use (heavy)

            study = build_study(search, trials)
            for _ in range(free):
                ot = study.ask()
                params = {e["name"]: _suggest(ot, e) for e in search.space}
                frozen = study._storage.get_trial(ot._trial_id)
                job = _submit_trial(session, ctx, search, params, ot.number)
                row = SearchTrialModel(search_id=search.id, number=ot.number, job_id=job.id, state="running",
                                       params=params,
                                       distributions={k: distribution_to_json(d) for k, d in frozen.distributions.items()},
                                       system_attrs=_jsonable(frozen.system_attrs))
                session.add(row)
                trials.append(row)
                n_total += 1
                changed = True
            session.flush()

    # 4. done?
    if n_total >= limit and all(t.state != "running" for t in trials):
        _complete(session, search, trials)
        changed = True
    if changed:
        _update_best(session, search, trials)
    return changed


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(attrs, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _best(search: SearchModel, trials: list[SearchTrialModel]) -> SearchTrialModel | None:
    done = [t for t in trials if t.state == "complete" and t.value is not None]
    if not done:
        return None
    sign = 1.0 if search.direction == "minimize" else -1.0
    return min(done, key=lambda t: (sign * t.value, t.number))


def _update_best(session: Session, search: SearchModel, trials: list[SearchTrialModel]) -> None:
    best = _best(search, trials)
    if best is None:
        return
    if best.id != search.best_trial_id:
        search.best_trial_id = best.id
        events.record(session, actor_id=None, kind="search.best_changed", object_type="search", object_id=search.id,
                      message=f"best: trial {best.number} {search.objective_metric}={best.value:.6g}",
                      data={"trial": best.number, "value": best.value, "params": best.params,
                            "model_version_id": best.model_version_id})
    search.best_value = best.value
    search.best_model_version_id = best.model_version_id


def _complete(session: Session, search: SearchModel, trials: list[SearchTrialModel]) -> None:
    best = _best(search, trials)
    if best is None:
        state = "failed"
        reason = "no trial completed: " + "; ".join(
            f"trial {t.number} {t.state}: {t.message}" for t in trials[:5] if t.message)
    else:
        state, reason = "succeeded", ""
    move_search(session, search, state, reason=reason, event_kind="search.finished", message=f"search {state}",
                data={"state": state, "trials": len(trials), "best_trial": best.number if best else None})
    if best is not None:
        _alias_best(session, search, best)


BEST_ALIAS = "best"


def _alias_best(session: Session, search: SearchModel, best: SearchTrialModel) -> None:
    """Point the alias `best` of the trials' model at the best trial's version, so
    "<model>:best" names it wherever a model reference is taken."""
    if not best.model_version_id:
        return
    try:
        v = session.get(ModelVersionModel, best.model_version_id)
        if v is None:
            return
        model = models.model_of(session, v)
        models.set_alias(session, _principal(session, search.owner_id), model, BEST_ALIAS, v.version)
        search.note = (f"{model.name}:{BEST_ALIAS} = version {v.version} (trial {best.number})")[:1024]
    except ModelyardError as exc:  # the model was changed meanwhile: the search still has best_model_version_id
        search.note = f"could not set alias {BEST_ALIAS}: {exc.message}"[:1024]


def step(ctx: Any, search_id: str) -> bool:
    """Drive one search in a transaction of its own. A permanent error (a trial job that can no
    longer be submitted) fails the search; its running trials are cancelled."""
    try:
        with session_scope(ctx.sessions) as session:
            search = session.get(SearchModel, search_id)
            if search is None:
                return False
            return step_search(session, ctx, search)
    except ModelyardError as exc:
        log.warning("search %s failed: %s", search_id, exc.message)
        with session_scope(ctx.sessions) as session:
            search = session.get(SearchModel, search_id)
            if search is not None and search.state == "running":
                _stop(session, ctx, search, state="failed", reason=f"submitting a trial failed: {exc.message}")
        return True


def step_all(ctx: Any) -> int:
    """One pass over every running search. Returns how many changed."""
    with session_scope(ctx.sessions, readonly=True) as session:
        ids = list(session.scalars(select(SearchModel.id).where(SearchModel.state == "running")
                                   .order_by(SearchModel.created_at)))
    n = 0
    for sid in ids:
        try:
            n += bool(step(ctx, sid))
        except Exception:  # noqa: BLE001 - one bad search must not stop the others
            log.exception("search %s: driver step failed", sid)
    return n


def _stop(session: Session, ctx: Any, search: SearchModel, *, state: str, reason: str,
          actor: Principal | None = None) -> None:
    owner = actor or _principal(session, search.owner_id)
    for t in _trials(session, search.id):
        if t.state != "running":
            continue
        if t.job_id:
            try:
                jobs.cancel_job(session, ctx, principal=owner, job_id=t.job_id, reason=f"search {state}: {reason}")
            except (Conflict, NotFound):
                pass
        _finish_trial(session, t, "cancelled", message=reason)
    _update_best(session, search, _trials(session, search.id))
    move_search(session, search, state, reason=reason, actor_id=actor.id if actor else None,
                values={"cancel_requested_at": search.cancel_requested_at or utcnow()},
                event_kind=f"search.{state}", message=reason)


# --- background component ------------------------------------------------------------------------

class SearchDriver(WakeableLoop):
    """Drives running searches: woken by every job state change (common.wake.wake_all) and at
    least every settings.scheduler.poll_interval_s (metrics for early stopping arrive without a
    state change). Registered in server/background.py COMPONENTS."""

    thread_name = "modelyard-searches"

    def __init__(self, ctx: Any):
        super().__init__(ctx)
        self.passes = 0

    def step(self) -> None:
        self.passes += 1
        step_all(self.ctx)


def component(ctx: Any) -> SearchDriver:
    return SearchDriver(ctx)
